"""The library face: ``import jacnb`` gives the public API (jacnb/__init__.py), lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import jacnb


def test_every_public_name_resolves_to_its_core_object():
    import importlib

    for name in jacnb.__all__:
        if name == "__version__":
            continue
        obj = getattr(jacnb, name)
        home = importlib.import_module(jacnb._EXPORTS[name])
        assert obj is getattr(home, name), name
        assert obj.__doc__, f"{name} has no docstring (the API page is made from them)"


def test_the_brief_s_names_are_public():
    wanted = {
        "JacobianRegularizer",
        "PerLayerJacobianRegularizer",
        "WeightDecay",
        "make_regularizer",
        "input_jacobian",
        "frobenius_sq",
        "spectral_norm",
        "gamma3",
        "gamma4",
        "measured_margin",
        "score",
        "top_singular",
        "information_split",
        "ParameterJacobian",
    }
    assert wanted <= set(jacnb.__all__)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        jacnb.nonsense  # noqa: B018


def test_import_is_light():
    """``import jacnb`` imports no submodule; a public name pulls in jacnb.core only (never the
    book's lab or chapters)."""
    code = (
        "import sys, jacnb\n"
        "print(sorted(m for m in sys.modules if m.startswith('jacnb.')))\n"
        "jacnb.JacobianRegularizer; jacnb.top_singular; jacnb.gamma3\n"
        "print(sorted({'.'.join(m.split('.')[:2]) for m in sys.modules if m.startswith('jacnb.')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == "['jacnb.core']"
