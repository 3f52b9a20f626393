"""jacnb: Jacobian regularizers, margin bounds and Jacobian spectra, with the executable book
that reproduces

* Sokolić, Giryes, Sapiro, Rodrigues, "Robust Large Margin Deep Neural Networks", IEEE TSP 2017
  (arXiv 1605.08254): the input-output Jacobian, its regularizers and the margin bounds;
* Oymak, Fabian, Li, Soltanolkotabi, "Generalization Guarantees for Neural Networks via
  Harnessing the Low-rank Structure of the Jacobian", 2019 (arXiv 1906.05392): the parameter
  Jacobian's spectrum and its information / nuisance split.

The public API is this module's :data:`__all__`: thin re-exports of :mod:`jacnb.core` (the
functions live there; their docstrings cite the papers' equations). ``import jacnb`` is light:
each name is imported from its module on first use, and nothing here imports the book's
chapters or lab. The book's page "Use the regularizers in your own training loop" shows them in
a plain PyTorch loop; the "API reference" page lists every name.

>>> import jacnb
>>> reg = jacnb.JacobianRegularizer()                     # R_F of eq. 49  # doctest: +SKIP
>>> loss = criterion(model(x), y) + lam * reg(model, x)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module of :mod:`jacnb.core` that defines it.
_EXPORTS: dict[str, str] = {
    # regularizers (Sokolić et al. eqs. 49, 52; weight decay)
    "JacobianRegularizer": "jacnb.core.regularizers",
    "PerLayerJacobianRegularizer": "jacnb.core.regularizers",
    "WeightDecay": "jacnb.core.regularizers",
    "make_regularizer": "jacnb.core.regularizers",
    # the input-output Jacobian (eq. 17 output, eq. 23)
    "input_jacobian": "jacnb.core.jacobian",
    "frobenius_sq": "jacnb.core.jacobian",
    "spectral_norm": "jacnb.core.jacobian",
    "max_spectral_norm": "jacnb.core.jacobian",
    "average_jacobian": "jacnb.core.jacobian",
    # scores, margins and bounds (eqs. 8, 10, 12, 13, 33-38)
    "score": "jacnb.core.bounds",
    "scores_of": "jacnb.core.bounds",
    "measured_margin": "jacnb.core.bounds",
    "margin_bound": "jacnb.core.bounds",
    "gamma2_estimate": "jacnb.core.bounds",
    "gamma3": "jacnb.core.bounds",
    "gamma4": "jacnb.core.bounds",
    "local_sup_spectral_norm": "jacnb.core.bounds",
    "weight_norms": "jacnb.core.bounds",
    "ge_bound_robust": "jacnb.core.bounds",
    "ge_bound_margin": "jacnb.core.bounds",
    "ge_bound_manifold": "jacnb.core.bounds",
    # the parameter Jacobian's low-rank spectrum and split (Oymak et al. Def. 1.1)
    "ParameterJacobian": "jacnb.core.lowrank",
    "Spectrum": "jacnb.core.lowrank",
    "top_singular": "jacnb.core.lowrank",
    "information_split": "jacnb.core.lowrank",
    "one_hot_stacked": "jacnb.core.lowrank",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (PEP 562), then cache it here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jacnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # static checkers and IDEs see the real objects
    from jacnb.core.bounds import (  # noqa: F401
        gamma2_estimate,
        gamma3,
        gamma4,
        ge_bound_manifold,
        ge_bound_margin,
        ge_bound_robust,
        local_sup_spectral_norm,
        margin_bound,
        measured_margin,
        score,
        scores_of,
        weight_norms,
    )
    from jacnb.core.jacobian import (  # noqa: F401
        average_jacobian,
        frobenius_sq,
        input_jacobian,
        max_spectral_norm,
        spectral_norm,
    )
    from jacnb.core.lowrank import (  # noqa: F401
        ParameterJacobian,
        Spectrum,
        information_split,
        one_hot_stacked,
        top_singular,
    )
    from jacnb.core.regularizers import (  # noqa: F401
        JacobianRegularizer,
        PerLayerJacobianRegularizer,
        WeightDecay,
        make_regularizer,
    )
