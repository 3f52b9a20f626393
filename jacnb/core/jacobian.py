"""Input-output Jacobians of a network and their norms (Sokolic et al. 2017, Sec. III).

``J(x) = df(x)/dx`` (eq. 20) is the C x N Jacobian of the network output ``f(x)`` with respect to
the (flattened) input. The paper's ``f`` ends in a softmax (eq. 17), so every function here takes
``output="softmax"`` by default; ``output="logits"`` uses the raw last layer (eq. 16).

Samples are never looped over in Python: the per-sample Jacobians come from batched
vector-Jacobian products. A model whose samples interact in the forward pass (batch norm in
training mode) has no per-sample Jacobian as it stands: every output depends on the whole batch
through the batch mean and variance. Eq. (49) needs ``J(x_i)`` per sample, so
:func:`logits_and_frobenius_sq` (hence the Jacobian regularizer) takes it with the batch
statistics held fixed by default (:func:`fixed_batch_statistics`, Sec. VI-B2); for evaluation put
the model in ``eval()`` mode (running statistics), where the samples are independent anyway.

Strategy for the exact Frobenius norm (eq. 49): ``"class_loop"`` runs C backward passes, one per
output; ``"vmap"`` runs one batched backward (``is_grads_batched``). Which is faster depends on
the net; ``benchmarks/regularizer_cost.py`` measures both. On this project's 2-core CPU the
class loop won on conv nets and vmap on fully connected nets, so ``"auto"`` picks by that rule.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Output = Literal["softmax", "logits"]
OUTPUTS = ("softmax", "logits")
BatchNormMode = Literal["fixed", "coupled"]
BATCH_NORM_MODES = ("fixed", "coupled")


def network_output(model: nn.Module, x: Tensor, output: Output = "softmax") -> Tensor:
    """``f(x)``: the model's logits, or their softmax (eq. 17), shape ``[B, C]``."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    logits = _apply(model, x)
    return torch.softmax(logits, dim=-1) if output == "softmax" else logits


def expected_input_shape(model: nn.Module) -> str:
    """The input shape the model's first linear or convolutional layer (in registration order)
    expects, as text for error messages: ``[B, 6]`` or ``[B, 3, H, W]``."""
    for m in model.modules():
        if isinstance(getattr(m, "in_features", None), int):
            return f"[B, {m.in_features}] (or [B, ...] that flattens to {m.in_features} features)"
        if isinstance(getattr(m, "in_channels", None), int) and hasattr(m, "kernel_size"):
            n_spatial = len(m.kernel_size) if isinstance(m.kernel_size, tuple) else 2
            spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(n_spatial, "...")
            return f"[B, {m.in_channels}, {spatial}]"
    return "[B, ...]"


def check_input(model: nn.Module, x: Tensor, where: str) -> None:
    """Refuse a non-batch or empty input with a message naming the expected shape, and warn
    about batch norm in training mode on a batch of one sample (see
    :func:`warn_single_sample_batch_norm`)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{where}: x must be a tensor, got {type(x).__name__}")
    expected = expected_input_shape(model)
    if x.dim() < 2:
        raise ValueError(
            f"{where}: expected a batch of inputs of shape {expected}, got shape "
            f"{tuple(x.shape)} (no batch axis? use x[None] for one sample)"
        )
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(
            f"{where}: empty input of shape {tuple(x.shape)}; expected {expected} with B >= 1"
        )
    warn_single_sample_batch_norm(model, x)


def _apply(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)``, with torch's shape errors turned into a ValueError naming the shape."""
    try:
        return model(x)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as err:
        raise ValueError(
            f"the model cannot be applied to an input of shape {tuple(x.shape)} "
            f"({x.dtype}); expected {expected_input_shape(model)}. torch: {err}"
        ) from err


def warn_single_sample_batch_norm(model: nn.Module, x: Tensor) -> None:
    """Warn when batch norm in training mode sees a batch of one sample.

    Its "batch statistics" are then that sample's own (BatchNorm2d: over the pixels), so the
    output and the Jacobian have nothing to do with the trained net's (orders of magnitude off
    eval mode); BatchNorm1d raises. Use ``model.eval()`` for per-sample evaluation.
    """
    if x.dim() >= 1 and x.shape[0] == 1 and training_batch_norms(model):
        warnings.warn(
            "batch norm in training mode with batch size 1: the batch statistics are this "
            "sample's own and the Jacobian is not the net's; call model.eval() to use the "
            "running statistics, or pass a larger batch",
            RuntimeWarning,
            stacklevel=3,
        )


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def auto_strategy(model: nn.Module) -> str:
    """The strategy ``strategy="auto"`` picks for ``model``: ``"class_loop"`` for a net with a
    convolution (batched vector-Jacobian products are slow there), ``"vmap"`` otherwise."""
    return "class_loop" if has_conv(model) else "vmap"


def _output_grads(
    f: Tensor,
    x: Tensor,
    create_graph: bool,
    strategy: str,
    model: nn.Module,
    sums_to_one: bool = False,
) -> Tensor:
    """All C rows of J for every sample: ``[B, C, *x.shape[1:]]`` via vector-Jacobian products.

    ``sums_to_one``: the outputs sum to one (softmax, eq. 17), so the rows of J sum to zero and
    the last row is minus the sum of the others -- exactly; C - 1 products instead of C.
    """
    if sums_to_one and f.shape[1] > 1:
        head = _output_grads(f[:, :-1], x, create_graph, strategy, model)
        return torch.cat([head, -head.sum(dim=1, keepdim=True)], dim=1)
    n_out = f.shape[1]
    if strategy == "auto":
        strategy = auto_strategy(model)
    if strategy == "vmap":
        eye = torch.eye(n_out, dtype=f.dtype, device=f.device)
        grad_outputs = eye[:, None, :].expand(n_out, f.shape[0], n_out)
        (g,) = torch.autograd.grad(
            f, x, grad_outputs=grad_outputs, is_grads_batched=True, create_graph=create_graph
        )
        return g.transpose(0, 1)
    if strategy == "class_loop":
        rows = []
        for k in range(n_out):
            (g,) = torch.autograd.grad(
                f[:, k].sum(), x, retain_graph=True, create_graph=create_graph
            )
            rows.append(g)
        return torch.stack(rows, dim=1)
    raise ValueError(f"strategy must be 'auto', 'vmap' or 'class_loop', got {strategy!r}")


def _prepared_input(x: Tensor) -> Tensor:
    return x.detach().clone().requires_grad_(True)


def input_jacobian(
    model: nn.Module, x: Tensor, output: Output = "softmax", strategy: str = "auto"
) -> Tensor:
    """Per-sample input-output Jacobian ``J(x_i)`` (eq. 20), shape ``[B, C, N]`` (input flattened).

    Detached: for a differentiable penalty use :func:`frobenius_sq`.
    """
    check_input(model, x, "input_jacobian")
    xg = _prepared_input(x)
    with torch.enable_grad():
        f = network_output(model, xg, output)
    return _jacobian_of(f, xg, output, strategy, model)


def _jacobian_of(f: Tensor, xg: Tensor, output: Output, strategy: str, model: nn.Module) -> Tensor:
    """``J`` as ``[B, C, N]`` (detached) from the output ``f`` of the input ``xg``."""
    with torch.enable_grad():
        g = _output_grads(
            f,
            xg,
            create_graph=False,
            strategy=strategy,
            model=model,
            sums_to_one=output == "softmax",
        )
    return g.reshape(g.shape[0], g.shape[1], -1).detach()


def input_jacobian_functional(model: nn.Module, x: Tensor, output: Output = "softmax") -> Tensor:
    """The same Jacobian via ``torch.func.vmap(jacrev(...))`` (a cross-check; eval mode only)."""

    def f_single(xi: Tensor) -> Tensor:
        return network_output(model, xi.unsqueeze(0), output).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(f_single))(x.detach())
    return jac.reshape(x.shape[0], jac.shape[1], -1)


def training_batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model`` that are in training mode (they couple the samples)."""
    return [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]


@contextlib.contextmanager
def fixed_batch_statistics(model: nn.Module) -> Iterator[None]:
    """Batch norm with the current batch's statistics held fixed (Sec. VI-B2, Table III).

    In training mode a batch-norm layer normalizes ``z`` by the mean and variance of the whole
    batch, so ``f(x_i)`` depends on every ``x_j`` of the batch and autograd's input gradient of
    ``sum_i f_k(x_i)`` mixes the samples. Inside this context every batch-norm layer in
    training mode computes the mean and (biased) variance of its input over the batch as
    usual, but *detached*: the net becomes, for this batch, a fixed per-sample map
    ``x -> f(x; mu_B, sigma_B^2)``, whose Jacobian ``J(x_i)`` is what eq. (49) penalizes. The
    gradient of the penalty with respect to the weights then treats ``mu_B, sigma_B^2`` as
    constants. The running statistics are not updated inside the context (the ordinary forward
    pass of the training step does that once). Layers in ``eval()`` mode are left alone.
    """
    layers = training_batch_norms(model)

    def make_forward(bn: nn.modules.batchnorm._BatchNorm):
        def forward(z: Tensor) -> Tensor:
            dims = [0, *range(2, z.dim())]
            # statistics in the parameters' dtype: under bf16 autocast z is bf16, and the
            # eval-mode kernel wants weight, bias, mean and var in one dtype
            dtype = bn.weight.dtype if bn.weight is not None else z.dtype
            zs = z.detach().to(dtype)
            mean = zs.mean(dims)
            var = zs.var(dims, unbiased=False)
            return F.batch_norm(z, mean, var, bn.weight, bn.bias, training=False, eps=bn.eps)

        return forward

    for bn in layers:
        bn.forward = make_forward(bn)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for bn in layers:
            del bn.forward


def frobenius_sq(
    model: nn.Module,
    x: Tensor,
    method: Literal["exact", "projection"] = "exact",
    n_proj: int = 1,
    output: Output = "softmax",
    strategy: str = "auto",
    generator: torch.Generator | None = None,
    batch_norm: BatchNormMode = "fixed",
) -> Tensor:
    """``||J(x_i)||_F^2`` per sample, shape ``[B]``, differentiable w.r.t. the model parameters.

    ``method="exact"``: the sum of the C squared rows ``g_k(x_i)`` (eq. 50).
    ``method="projection"``: the unbiased estimator ``C * mean_p ||v_p^T J(x_i)||^2`` with
    ``v_p`` uniform on the unit sphere of R^C (``E[v v^T] = I / C``), ``n_proj`` draws per sample,
    each one backward pass. ``batch_norm``: see :func:`logits_and_frobenius_sq`.
    """
    return logits_and_frobenius_sq(
        model, x, method, n_proj, output, strategy, generator, batch_norm
    )[1]


def logits_and_frobenius_sq(
    model: nn.Module,
    x: Tensor,
    method: Literal["exact", "projection"] = "exact",
    n_proj: int = 1,
    output: Output = "softmax",
    strategy: str = "auto",
    generator: torch.Generator | None = None,
    batch_norm: BatchNormMode = "fixed",
) -> tuple[Tensor, Tensor]:
    """``(model(x), ||J(x_i)||_F^2)`` from one forward pass, for a training step that needs both.

    The logits keep their graph (through an input that requires grad), so a loss built on them
    and the penalty share the forward pass; see :func:`frobenius_sq` for ``method``.

    Batch norm in training mode (Sec. VI-B2): with ``batch_norm="fixed"`` (the default) the
    logits come from the ordinary training forward pass (batch statistics with their gradients,
    running statistics updated once), and the penalty from a second forward pass under
    :func:`fixed_batch_statistics`, i.e. the per-sample ``J(x_i)`` of the net with this batch's
    mean and variance as constants. ``batch_norm="coupled"`` differentiates the training
    forward pass as it is: the "Jacobian" of sample i then also collects the derivatives of the
    other samples' outputs through the batch statistics -- not eq. (49); kept to show the
    difference. Without batch norm in training mode both modes are the same single pass.
    """
    if method not in ("exact", "projection"):
        raise ValueError(f"method must be 'exact' or 'projection', got {method!r}")
    if n_proj < 1:
        raise ValueError(f"n_proj must be >= 1, got {n_proj}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if batch_norm not in BATCH_NORM_MODES:
        raise ValueError(f"batch_norm must be one of {BATCH_NORM_MODES}, got {batch_norm!r}")
    check_input(model, x, "frobenius_sq")
    if batch_norm == "fixed" and training_batch_norms(model):
        logits = _apply(model, x)
        with fixed_batch_statistics(model):
            _, fro = _logits_and_frobenius_sq(model, x, method, n_proj, output, strategy, generator)
        return logits, fro
    return _logits_and_frobenius_sq(model, x, method, n_proj, output, strategy, generator)


def _logits_and_frobenius_sq(
    model: nn.Module,
    x: Tensor,
    method: Literal["exact", "projection"],
    n_proj: int,
    output: Output,
    strategy: str,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """One forward pass giving the logits and ``||J(x_i)||_F^2`` (arguments checked)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = _apply(model, xg)
        f = torch.softmax(logits, dim=-1) if output == "softmax" else logits
        if method == "exact":
            g = _output_grads(f, xg, True, strategy, model, sums_to_one=output == "softmax")
            return logits, g.pow(2).flatten(2).sum(dim=(1, 2))
        n_out = f.shape[1]
        v = torch.randn(n_proj, *f.shape, dtype=f.dtype, device=f.device, generator=generator)
        v = v / v.norm(dim=-1, keepdim=True)
        if n_proj == 1:
            (g,) = torch.autograd.grad(f, xg, grad_outputs=v[0], create_graph=True)
            g = g.unsqueeze(0)
        else:
            (g,) = torch.autograd.grad(
                f, xg, grad_outputs=v, is_grads_batched=True, create_graph=True
            )
        return logits, n_out * g.pow(2).flatten(2).sum(-1).mean(0)


def spectral_norm(
    model: nn.Module,
    x: Tensor,
    output: Output = "softmax",
    method: Literal["auto", "gram", "power"] = "auto",
    n_iter: int = 50,
    strategy: str = "auto",
) -> Tensor:
    """``||J(x_i)||_2`` per sample, shape ``[B]`` (detached).

    ``"gram"``: the C rows of J, then the largest eigenvalue of the C x C Gram ``J J^T``
    (``eigvalsh``) -- exact, and the fast route whenever the output dimension C is small.
    ``"power"``: power iteration with jvp/vjp on ``J^T J``, for nets where both C and N are large.
    ``"auto"`` uses the Gram route for C <= 64 (deciding from the forward pass of the whole
    batch, which the Gram route then reuses: no single-sample probe, which batch norm in
    training mode would refuse).
    """
    check_input(model, x, "spectral_norm")
    if method == "auto":
        xg = _prepared_input(x)
        with torch.enable_grad():
            f = network_output(model, xg, output)
        if f.shape[1] <= 64:
            return _gram_spectral(_jacobian_of(f, xg, output, strategy, model), x.dtype)
        method = "power"
    if method == "gram":
        return _gram_spectral(input_jacobian(model, x, output, strategy=strategy), x.dtype)
    if method == "power":
        return _power_spectral_norm(model, x, output, n_iter)
    raise ValueError(f"method must be 'auto', 'gram' or 'power', got {method!r}")


def _gram_spectral(jac: Tensor, dtype: torch.dtype) -> Tensor:
    """Largest singular value of each ``[C, N]`` slice of ``jac`` via the ``C x C`` Gram."""
    jac = jac.double()
    gram = jac @ jac.transpose(1, 2)
    return torch.linalg.eigvalsh(gram)[:, -1].clamp_min(0).sqrt().to(dtype)


def _power_spectral_norm(model: nn.Module, x: Tensor, output: Output, n_iter: int) -> Tensor:
    def f(inp: Tensor) -> Tensor:
        return network_output(model, inp, output)

    x = x.detach()
    v = torch.randn_like(x)
    v = v / v.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    sigma = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    _, vjp_fn = torch.func.vjp(f, x)
    for _ in range(n_iter):
        _, u = torch.func.jvp(f, (x,), (v,))
        (w,) = vjp_fn(u)
        norm_w = w.flatten(1).norm(dim=1)
        sigma = norm_w.sqrt()
        v = w / norm_w.clamp_min(1e-30).view(-1, *([1] * (x.dim() - 1)))
    return sigma.detach()


def max_spectral_norm(
    model: nn.Module, x: Tensor, batch_size: int = 256, output: Output = "softmax"
) -> float:
    """``max_i ||J(x_i)||_2`` over a whole data set, in batches (Fig. 4 (c), (d))."""
    best = 0.0
    for start in range(0, x.shape[0], batch_size):
        best = max(best, float(spectral_norm(model, x[start : start + batch_size], output).max()))
    return best


def average_jacobian(
    model: nn.Module, x: Tensor, x_prime: Tensor, n_points: int = 256, output: Output = "softmax"
) -> Tensor:
    """``J_{x,x'} = int_0^1 J(x + t(x' - x)) dt`` (eq. 23) by the midpoint rule, ``[C, N]``.

    ``x`` and ``x_prime`` are single samples (no batch axis). The midpoints are evaluated as one
    batch of ``n_points`` inputs.
    """
    t = (torch.arange(n_points, dtype=x.dtype, device=x.device) + 0.5) / n_points
    path = x.unsqueeze(0) + t.view(-1, *([1] * x.dim())) * (x_prime - x).unsqueeze(0)
    return input_jacobian(model, path, output).mean(0)


def average_jacobian_times(
    model: nn.Module, x: Tensor, x_prime: Tensor, n_points: int = 4096, output: Output = "softmax"
) -> Tensor:
    """``J_{x,x'} (x' - x)`` (eqs. 22-23) without forming ``J``: the midpoint-rule mean of the
    Jacobian-vector products ``J(x + t(x'-x)) (x'-x)``, one batched ``torch.func.jvp``; ``[C]``.

    Cheap enough for thousands of points, which a ReLU net needs: along the segment the
    integrand is piecewise smooth with many kinks, and the midpoint rule converges as 1/n there.
    """
    t = (torch.arange(n_points, dtype=x.dtype, device=x.device) + 0.5) / n_points
    d = (x_prime - x).unsqueeze(0)
    path = x.unsqueeze(0) + t.view(-1, *([1] * x.dim())) * d
    _, tangent = torch.func.jvp(
        lambda inp: network_output(model, inp, output), (path,), (d.expand_as(path),)
    )
    return tangent.mean(0).detach()


def residual_expansion(
    block_jacobians: Sequence[Tensor],
) -> Tensor:
    """``prod_l (I + J_l)`` written as the sum over all sub-networks (eq. 55).

    ``block_jacobians[l]`` is the Jacobian of the residual branch of block l (applied in order);
    the result sums, over every subset of blocks, the product of the chosen branch Jacobians --
    the identity paths skipping the others. Exponential in depth: for checks on tiny nets.
    """
    dim = block_jacobians[0].shape[0]
    total = torch.zeros(dim, dim, dtype=block_jacobians[0].dtype)
    for chosen in itertools.product((False, True), repeat=len(block_jacobians)):
        term = torch.eye(dim, dtype=block_jacobians[0].dtype)
        for use, jac in zip(chosen, block_jacobians, strict=True):
            if use:
                term = jac @ term
        total = total + term
    return total


def projection_standard_error(samples: Tensor) -> float:
    """Standard error of the mean of a 1-D tensor of estimator draws."""
    return float(samples.std(unbiased=True) / math.sqrt(samples.numel()))


__all__: list[str] = [
    "average_jacobian",
    "average_jacobian_times",
    "check_input",
    "expected_input_shape",
    "fixed_batch_statistics",
    "frobenius_sq",
    "input_jacobian",
    "input_jacobian_functional",
    "logits_and_frobenius_sq",
    "max_spectral_norm",
    "network_output",
    "projection_standard_error",
    "residual_expansion",
    "spectral_norm",
    "training_batch_norms",
    "warn_single_sample_batch_norm",
]
