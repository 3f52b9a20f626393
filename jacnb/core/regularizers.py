"""Regularizers compared in Sokolic et al. 2017, Sec. IV-A and VI.

Each regularizer is a callable ``reg(model, x) -> Tensor`` returning a scalar to be added to the
training loss as ``loss + lam * reg(model, x)``:

* :class:`WeightDecay` -- ``sum_l ||W_l||_F^2`` over weight matrices/kernels (the baseline),
* :class:`JacobianRegularizer` -- ``R_F = 1/m sum_i ||J(x_i)||_F^2`` (eq. 49), exact or by the
  random-projection estimator,
* :class:`PerLayerJacobianRegularizer` -- the per-layer variant of eq. (52).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from jacnb.core.jacobian import (
    BATCH_NORM_MODES,
    OUTPUTS,
    BatchNormMode,
    Output,
    fixed_batch_statistics,
    logits_and_frobenius_sq,
    training_batch_norms,
    warn_single_sample_batch_norm,
)
from jacnb.core.models import WeightNormConv2d, WeightNormLinear

#: Layers whose weight the per-layer regularizer (eq. 52) acts on.
LINEAR_LAYERS = (nn.Linear, WeightNormLinear)
CONV_LAYERS = (nn.Conv2d, WeightNormConv2d)


def weight_matrices(model: nn.Module) -> list[Tensor]:
    """The weights ``W_l`` of every linear and convolutional layer (biases and norms excluded)."""
    mats = []
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
            mats.append(module.weight)
        elif hasattr(module, "weight_raw"):
            mats.append(module.weight_raw)
    return mats


@dataclass
class WeightDecay:
    """``sum_l ||W_l||_F^2`` -- the baseline regularizer (weight decay / L2 on weights).

    Over the weights of :func:`weight_matrices`: linear and convolutional kernels; biases and
    batch-norm scales are not decayed. **Weight-normalized layers** (eq. 45; notebook
    ``03_weight_norm``): the penalty takes their free parameter ``weight_raw`` (``W^`` of
    eq. 45), the only weight they have. The net is invariant to the scale of each row of
    ``weight_raw``, so this term changes nothing the net computes; it shrinks ``||W^||``, which
    raises the effective step size of the row directions (the gradient scales as ``1/||w^_r||``).
    The effective operator's ``||W||_F^2`` equals the number of rows, a constant with no
    gradient, so decaying it instead would be no regularization at all.
    """

    def __call__(self, model: nn.Module, x: Tensor | None = None) -> Tensor:
        mats = weight_matrices(model)
        if not mats:
            raise ValueError("model has no linear or convolutional weights to decay")
        return sum(w.pow(2).sum() for w in mats)

    def logits_and_penalty(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(model(x), penalty)``; the interface the training step uses."""
        return model(x), self(model)


@dataclass
class JacobianRegularizer:
    """``R_F(W) = 1/m sum_i ||J(x_i)||_F^2`` (eq. 49) over the batch ``x``.

    ``method="exact"`` sums the C squared input gradients (eq. 50); ``method="projection"`` uses
    ``n_proj`` random unit projections per sample (unbiased, cheaper). ``batch_norm``: how a net
    with batch norm in training mode is differentiated; ``"fixed"`` (default) takes ``J(x_i)``
    per sample with the batch's mean and variance held fixed (Sec. VI-B2, see
    :func:`jacnb.core.jacobian.fixed_batch_statistics`), ``"coupled"`` the naive batch gradient.
    ``generator``: the source of the projection draws (default: torch's global RNG).
    """

    method: Literal["exact", "projection"] = "exact"
    n_proj: int = 1
    output: Output = "softmax"
    strategy: str = "auto"
    batch_norm: BatchNormMode = "fixed"
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_choice("JacobianRegularizer.method", self.method, JR_METHODS)
        if isinstance(self.n_proj, bool) or not isinstance(self.n_proj, int) or self.n_proj < 1:
            raise ValueError(
                f"JacobianRegularizer.n_proj must be an integer >= 1, got {self.n_proj!r}"
            )
        _check_choice("JacobianRegularizer.output", self.output, OUTPUTS)
        _check_choice("JacobianRegularizer.strategy", self.strategy, STRATEGIES)
        _check_choice("JacobianRegularizer.batch_norm", self.batch_norm, BATCH_NORM_MODES)

    def __call__(self, model: nn.Module, x: Tensor) -> Tensor:
        return self.logits_and_penalty(model, x)[1]

    def logits_and_penalty(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(model(x), R_F)`` from one shared forward pass."""
        logits, fro = logits_and_frobenius_sq(
            model,
            x,
            self.method,
            self.n_proj,
            self.output,
            self.strategy,
            self.generator,
            self.batch_norm,
        )
        return logits, fro.mean()


@dataclass
class PerLayerJacobianRegularizer:
    """Per-layer Jacobian regularizer, eq. (52), summed over layers ``l``.

    For each sample one random output index ``pi(i)`` is drawn; one backward pass gives
    ``g^l = d f_pi(i) / d zhat^l`` at the output ``zhat^l`` of every linear/conv layer. The input
    of layer l is treated as fixed (so is ``g^l``), and the penalty is
    ``R^l_F = 1/m sum_i ||g^l_i W_l||^2`` with ``g~^{l-1} = g^l W_l`` the gradient with respect
    to the layer input. Its gradient is ``grad_{W_l} = 2 g^T g W_l``, as in the paper.
    ``layers``: the modules to regularize (default: every ``nn.Linear``/``nn.Conv2d``).

    **Batch norm in training mode** (ResNets, notebooks ``05_resnet`` and ``06_timing``): eq. (52)
    is a sum over samples of one sample's gradient ``g~_pi(i)(x_i)``, but a batch-norm layer in
    training mode normalizes with the batch's mean and variance, so an autograd gradient of
    ``sum_i f_pi(i)(x_i)`` through the training forward pass mixes the samples (sample j's
    ``g`` collects the other samples' outputs through the batch statistics). ``batch_norm``
    chooses the convention, as for :class:`JacobianRegularizer`:

    * ``"fixed"`` (default): per sample, with this batch's statistics held fixed -- ``g^l_i``
      of the net in which every batch-norm layer is the eval-mode map whose running mean and
      variance are the batch's mean and biased variance
      (:func:`jacnb.core.jacobian.fixed_batch_statistics`). The logits come from the ordinary
      training forward pass (running statistics updated once); the ``g`` come from a second
      forward pass with the statistics detached. Extra cost: that forward pass.
    * ``"coupled"``: the gradient through the training forward pass as it is (one forward
      pass; not eq. (52) per sample). Without batch norm in training mode both are the same.

    The hooks capture each layer's output tensor; a module that later modifies it in place
    (``nn.ReLU(inplace=True)``, ``out += skip``) would turn ``g^l`` into the gradient with
    respect to the modified tensor, so that case raises ``ValueError``.
    """

    output: Output = "softmax"
    layers: list[nn.Module] | None = None
    generator: torch.Generator | None = field(default=None, repr=False)
    batch_norm: BatchNormMode = "fixed"

    def __post_init__(self) -> None:
        _check_choice("PerLayerJacobianRegularizer.output", self.output, OUTPUTS)
        _check_choice("PerLayerJacobianRegularizer.batch_norm", self.batch_norm, BATCH_NORM_MODES)

    def _layers(self, model: nn.Module) -> list[nn.Module]:
        if self.layers is not None:
            return self.layers
        return [m for m in model.modules() if isinstance(m, LINEAR_LAYERS + CONV_LAYERS)]

    def __call__(self, model: nn.Module, x: Tensor) -> Tensor:
        return self.logits_and_penalty(model, x)[1]

    def logits_and_penalty(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(model(x), R_per-layer)`` from one shared forward pass (two with ``"fixed"`` batch
        norm in training mode: the ordinary one for the logits, one for the ``g``)."""
        if self.batch_norm not in BATCH_NORM_MODES:
            raise ValueError(
                f"batch_norm must be one of {BATCH_NORM_MODES}, got {self.batch_norm!r}"
            )
        layers = self._layers(model)
        if not layers:
            raise ValueError(
                "model has no nn.Linear / nn.Conv2d layers for the per-layer regularizer"
            )
        warn_single_sample_batch_norm(model, x)
        if self.batch_norm == "fixed" and training_batch_norms(model):
            logits = model(x)
            with fixed_batch_statistics(model):
                _, total = self._logits_and_penalty(model, x, layers)
            return logits, total
        return self._logits_and_penalty(model, x, layers)

    def _logits_and_penalty(
        self, model: nn.Module, x: Tensor, layers: list[nn.Module]
    ) -> tuple[Tensor, Tensor]:
        # Keyed by layer: the execution order may differ from the registration order (e.g. a
        # ResNet block that applies its shortcut conv before conv1).
        captured: dict[int, tuple[torch.Size, Tensor, int]] = {}

        def make_hook(i: int):
            def hook(_module: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
                captured[i] = (inp[0].shape, out, out._version)

            return hook

        handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
        try:
            logits = model(x)
        finally:
            for h in handles:
                h.remove()
        for i, (_, out, version) in captured.items():
            if out._version != version:
                raise ValueError(
                    f"the output of {type(layers[i]).__name__} layer {i} was modified in place "
                    "after the layer (e.g. nn.ReLU(inplace=True) or 'out += skip'), so the "
                    "per-layer regularizer (eq. 52) would differentiate with respect to the "
                    "modified tensor; use out-of-place modules (nn.ReLU(), out = out + skip) "
                    "after the regularized layers"
                )
        f = torch.softmax(logits, dim=-1) if self.output == "softmax" else logits
        pi = torch.randint(f.shape[1], (f.shape[0],), device=f.device, generator=self.generator)
        picked = f.gather(1, pi[:, None]).sum()
        used = sorted(captured)
        outs = [captured[i][1] for i in used]
        grads = torch.autograd.grad(picked, outs, retain_graph=True, allow_unused=True)
        total = x.new_zeros(())
        for i, g in zip(used, grads, strict=True):
            layer, shape = layers[i], captured[i][0]
            if g is None:
                continue
            g = g.detach().to(layer.weight.dtype)  # bf16 autocast: penalty in weight dtype
            total = total + _layer_input_grad(layer, g, shape).pow(2).sum() / x.shape[0]
        return logits, total


def _layer_input_grad(layer: nn.Module, g: Tensor, in_shape: torch.Size) -> Tensor:
    """``g W_l``: the transpose of the layer's linear map applied to ``g`` (differentiable in W)."""
    if isinstance(layer, LINEAR_LAYERS):
        return g @ layer.weight
    if isinstance(layer, CONV_LAYERS):
        return torch.nn.grad.conv2d_input(
            in_shape,
            layer.weight,
            g,
            layer.stride,
            layer.padding,
            getattr(layer, "dilation", 1),
            getattr(layer, "groups", 1),
        )
    raise TypeError(f"per-layer regularizer supports nn.Linear and nn.Conv2d, got {type(layer)}")


Regularizer = WeightDecay | JacobianRegularizer | PerLayerJacobianRegularizer


def make_regularizer(name: str, **kwargs: object) -> Regularizer | None:
    """Build a regularizer by name: ``none``, ``weight_decay``, ``jacobian``, ``per_layer``.

    Every argument is checked here, at construction (a mistyped name or field is an error
    naming the valid ones, not a failure at the first training step)."""
    builders = {
        "weight_decay": WeightDecay,
        "jacobian": JacobianRegularizer,
        "per_layer": PerLayerJacobianRegularizer,
    }
    _check_choice("regularizer", name, ("none", *builders))
    if name == "none":
        if kwargs:
            raise ValueError(f"regularizer 'none' takes no arguments, got {sorted(kwargs)}")
        return None
    fields = set(builders[name].__dataclass_fields__)
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        hints = [h for k in unknown for h in difflib.get_close_matches(k, fields, n=1)]
        raise ValueError(
            f"unknown argument(s) {unknown} for regularizer {name!r}; valid: {sorted(fields)}"
            + (f" (did you mean {hints}?)" if hints else "")
        )
    return builders[name](**kwargs)


#: The estimators of eq. (49): all C rows (eq. 50) or random projections.
JR_METHODS = ("exact", "projection")
#: How the C rows of the input Jacobian are taken (:func:`jacnb.core.jacobian.input_jacobian`).
STRATEGIES = ("auto", "vmap", "class_loop")


def _check_choice(what: str, value: object, valid: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the valid values (and the closest one) unless ``value`` is
    one of ``valid``."""
    if isinstance(value, str) and value in valid:
        return
    close = difflib.get_close_matches(str(value), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {what} {value!r}; valid: {list(valid)}{hint}")


def regularizer_from_config(config: Mapping[str, Any]) -> Regularizer | None:
    """The regularizer of an experiment config: ``config["regularizer"]`` names it (see
    :func:`make_regularizer`); for ``"jacobian"`` the estimator comes from ``config["jr_method"]``
    (``"exact"`` or ``"projection"``) and ``config["n_proj"]`` (eq. 49; with batch norm the
    batch statistics are held fixed, the default). Used by every chapter and the benchmarks."""
    if config["regularizer"] == "jacobian":
        return make_regularizer("jacobian", method=config["jr_method"], n_proj=config["n_proj"])
    return make_regularizer(config["regularizer"])
