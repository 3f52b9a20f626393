"""Scores, classification-margin bounds and generalization-error bounds (Sokolic et al. 2017).

Notation: ``f`` is the network output (softmax, eq. 17), ``o(s_i)`` the score (eq. 33),
``gamma^d(s_i)`` the classification margin (eq. 10), ``gamma_1..gamma_4`` its lower bounds of
Theorem 4 (eqs. 34-37), ``N(X; d, rho)`` covering numbers (Sec. II-B), GE bounds eqs. (8), (12),
(13), (38).

**The score's constant.** The extracted text prints eq. (33) as ``min_j sqrt(2) (d_y - d_j)^T f``,
but the proof of Theorem 4 (Appendix D) uses ``v_ij = (d_i - d_j)/sqrt(2)`` with ``||v_ij||_2 = 1``:
only with unit-norm ``v_ij`` is ``o(s_i)`` the Euclidean distance of ``f(x_i)`` to the nearest
decision hyperplane ``{z : z_y = z_j}``, and only then do the bounds (34)-(37) hold. :func:`score`
therefore returns ``min_j (f_y - f_j) / sqrt(2)``; :func:`score` with ``scale="printed"`` returns
the printed ``sqrt(2)`` version (twice the unit one), for comparison with the values the paper
plots in Fig. 4 (b) ("close to sqrt(2)" for a softmax output is only possible on that scale).
``tests/test_bounds.py`` shows the printed constant can violate
Theorem 4 on a linear classifier.

**Where gamma_3, gamma_4 hold.** Eqs. (36)-(37) bound ``||J(x)||_2`` by the product of the
layers' norms, which Lemma 1 justifies for a feed-forward chain of linear/convolutional layers,
element-wise non-linearities with slopes in [0, 1] and pooling. :func:`weight_norms` accepts such
chains (nested ``nn.Sequential``) and accounts for two layers outside the lemma's letter: batch
norm in eval mode (the diagonal ``gamma / sqrt(running_var + eps)``, folded into the adjacent
linear/conv operator, or a factor ``max |gamma / sqrt(running_var + eps)|`` where no weight layer
is adjacent) and overlapping pooling (max-pooling: ``sqrt`` of the largest number of windows an
input lies in, ``<= prod_d ceil(k_d / s_d)``; average pooling: ``sqrt(||A||_1 ||A||_inf)``).
Residual blocks, batch norm in training mode and unknown layers are refused with a
``ValueError`` -- for those nets use the Jacobian-based estimates (eqs. 34, 35) or the measured
margin.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from jacnb.core.jacobian import Output, network_output, spectral_norm
from jacnb.core.regularizers import CONV_LAYERS, LINEAR_LAYERS

SQRT2 = math.sqrt(2.0)


def score(f_x: Tensor, y: Tensor, scale: Literal["unit", "printed"] = "unit") -> Tensor:
    """Score ``o(s_i)`` of eq. (33): ``min_{j != y_i} v_{y_i j}^T f(x_i)``, shape ``[B]``.

    ``scale="unit"`` (default): ``v = (d_y - d_j)/sqrt(2)``, the distance of ``f(x_i)`` to the
    closest decision boundary in the output space (what Theorem 4's proof uses).
    ``scale="printed"``: ``v = sqrt(2)(d_y - d_j)``, as the extracted eq. (33) prints it
    (2x the unit score). Negative for misclassified samples.
    """
    f_y = f_x.gather(1, y[:, None]).squeeze(1)
    others = f_x.scatter(1, y[:, None], float("-inf"))
    gap = f_y - others.max(dim=1).values
    return gap / SQRT2 if scale == "unit" else gap * SQRT2


@dataclass(frozen=True)
class LayerNorms:
    """Spectral and Frobenius norm of one layer's linear operator (Lemma 1, eq. 30)."""

    name: str
    kind: str
    spectral: float
    frobenius: float


#: Convolutions with at most this many input entries get their exact spectral norm from the
#: dense matrix; larger ones the circular-convolution upper bound (:func:`_circular_conv_bound`).
DENSE_CONV_LIMIT = 2048


def _conv_operator_norms(
    conv: nn.Module, in_shape: tuple[int, ...], n_iter: int, weight: Tensor | None = None
) -> tuple[float, float]:
    """Spectral and exact Frobenius norm of a conv layer as a linear map (``weight``: the
    filters to use instead of the layer's, e.g. with batch norm folded in).

    Spectral norm: exact (SVD of the dense matrix) for at most :data:`DENSE_CONV_LIMIT` input
    entries; otherwise the certified upper bound of :func:`_circular_conv_bound`; power
    iteration (``n_iter`` steps, an estimate from below) only where that bound does not apply
    (grouped convolutions, string padding).
    """
    weight = conv.weight.detach() if weight is None else weight.detach()

    def apply(z: Tensor) -> Tensor:
        return nn.functional.conv2d(
            z,
            weight,
            None,
            conv.stride,
            conv.padding,
            getattr(conv, "dilation", 1),
            getattr(conv, "groups", 1),
        )

    ones = torch.ones((1, *in_shape), dtype=weight.dtype, device=weight.device)
    frob_sq = nn.functional.conv2d(
        ones,
        weight.pow(2),
        None,
        conv.stride,
        conv.padding,
        getattr(conv, "dilation", 1),
        getattr(conv, "groups", 1),
    ).sum()
    if ones.numel() <= DENSE_CONV_LIMIT:
        basis = torch.eye(ones.numel(), dtype=weight.dtype, device=weight.device)
        transposed = apply(basis.view(-1, *in_shape)).flatten(1)  # row j: A e_j
        return float(torch.linalg.matrix_norm(transposed.double(), 2)), float(frob_sq.sqrt())
    bound = _circular_conv_bound(
        weight,
        in_shape,
        conv.padding,
        getattr(conv, "dilation", 1),
        getattr(conv, "groups", 1),
    )
    if bound is not None:
        return bound, float(frob_sq.sqrt())
    v = torch.randn_like(ones)
    v = v / v.norm()
    sigma = torch.zeros(())
    for _ in range(n_iter):
        out, vjp_fn = torch.func.vjp(apply, v)
        (w,) = vjp_fn(out)
        sigma = w.norm().sqrt()
        v = w / w.norm().clamp_min(1e-30)
    return float(sigma), float(frob_sq.sqrt())


def _circular_conv_bound(
    weight: Tensor,
    in_shape: tuple[int, ...],
    padding: int | tuple[int, int] | str,
    dilation: int | tuple[int, int],
    groups: int,
) -> float | None:
    """Upper bound on the spectral norm of a zero-padded (strided) convolution.

    Pad the input with the layer's zeros (an isometry) and view the padded ``H' x W'`` domain
    as a torus: the stride-1 outputs the layer computes never wrap around, and striding keeps a
    subset of them, so the layer's matrix is a submatrix of the circular convolution on
    ``H' x W'``. The 2-D DFT block-diagonalizes that one into the ``C_out x C_in`` matrices
    ``K^(u, v)`` (Sedghi et al. 2019), so ``||A||_2 <= max_{u,v} ||K^(u, v)||_2`` -- certified,
    and close to exact for maps much larger than the kernel. ``None`` for grouped convolutions
    and string padding.
    """
    if groups != 1 or isinstance(padding, str):
        return None
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    c_out, c_in, kh, kw = weight.shape
    keh, kew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    nh, nw = max(in_shape[-2] + 2 * ph, keh), max(in_shape[-1] + 2 * pw, kew)
    kernel = torch.zeros(c_out, c_in, nh, nw, dtype=torch.float64, device=weight.device)
    kernel[:, :, :keh:dh, :kew:dw] = weight.double()
    symbol = torch.fft.fft2(kernel).permute(2, 3, 0, 1)  # [nh, nw, C_out, C_in]
    return float(torch.linalg.matrix_norm(symbol, 2).max())


#: Element-wise non-linearities of Lemma 1 (slopes in [0, 1]); shape-only modules.
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid)
SHAPE_ONLY = (nn.Flatten, nn.Identity)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
WEIGHT_LAYERS = LINEAR_LAYERS + CONV_LAYERS

_OUTSIDE = (
    "gamma_3 and gamma_4 (eqs. 36, 37) bound ||J(x)||_2 by a product of layer norms, which "
    "Lemma 1 proves for a feed-forward chain (nested nn.Sequential) of linear/conv layers, "
    "ReLU/sigmoid/tanh, pooling and eval-mode batch norm; for other nets use the Jacobian-based "
    "estimates (eqs. 34, 35) or the measured margin"
)


def lemma1_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model`` as the list of ``(name, layer)`` it applies in order, if Lemma 1 covers it.

    Raises ``ValueError`` naming the first layer outside it: a module with its own ``forward``
    and sub-modules (e.g. a residual block, whose Jacobian ``I + J_l`` (eq. 54) is not bounded
    by its weights' norms alone), batch norm in training mode (it couples the samples) or
    without running statistics, dropout in training mode, or an unknown layer.
    """
    chain: list[tuple[str, nn.Module]] = []

    def walk(name: str, module: nn.Module) -> None:
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            for child_name, child in module.named_children():
                walk(f"{name}.{child_name}" if name else child_name, child)
            return
        label = f"layer {name or '<model>'} ({type(module).__name__})"
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.training or module.running_var is None:
                raise ValueError(
                    f"{label} is batch norm in training mode (or without running statistics): "
                    "it normalizes with the batch's statistics, so f(x_i) depends on the other "
                    "samples and no per-sample bound applies; call model.eval(). " + _OUTSIDE
                )
        elif isinstance(module, nn.Dropout):
            if module.training and module.p > 0:
                raise ValueError(
                    f"{label} is dropout in training mode (random, scales by 1/(1-p)); call "
                    "model.eval(). " + _OUTSIDE
                )
        elif isinstance(module, nn.LeakyReLU):
            if not 0 <= module.negative_slope <= 1:
                raise ValueError(f"{label} has a slope outside [0, 1]. " + _OUTSIDE)
        elif not isinstance(module, WEIGHT_LAYERS + ELEMENTWISE + SHAPE_ONLY + POOLS):
            kind = "has sub-modules and its own forward" if any(module.children()) else "unknown"
            raise ValueError(f"{label} is not covered by Lemma 1 ({kind}). " + _OUTSIDE)
        chain.append((name, module))

    walk("", model)
    return chain


def batch_norm_scale(bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    """The diagonal ``gamma / sqrt(running_var + eps)`` of an eval-mode batch norm (its
    Jacobian; the shift ``beta - gamma mu / sqrt(var + eps)`` does not enter it)."""
    scale = (bn.running_var.detach().double() + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    return scale


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def max_pool_bound(pool: nn.MaxPool2d) -> float:
    """``sup_x ||J(x)||_2 <= sqrt(prod_d ceil(span_d / s_d))`` for max-pooling.

    ``J(x)`` selects one input per output window: its rows are unit vectors, so ``J J^T``... more
    usefully ``J^T J`` is diagonal with entry j the number of windows whose maximum is input j,
    and ``||J||_2^2`` is the largest such count -- at most the number of windows that contain
    an input. Along one axis the windows start every ``s`` positions and span
    ``dilation (k - 1) + 1``, so at most ``ceil(span / s)`` of them contain a position
    (``= 1`` for non-overlapping windows: eq. (31)). Attained by an input whose one large entry
    lies in that many windows.
    """
    k, s, d = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.dilation)
    count = 1
    for kk, ss, dd in zip(k, s, d, strict=True):
        count *= math.ceil((dd * (kk - 1) + 1) / ss)
    return math.sqrt(count)


def _adaptive_coverage(size: int, out: int) -> int:
    """Largest number of adaptive-pooling windows (torch's start/end rule) containing an index."""
    counts = [0] * size
    for i in range(out):
        for j in range(math.floor(i * size / out), math.ceil((i + 1) * size / out)):
            counts[j] += 1
    return max(counts)


def _nonnegative_operator_bound(apply, in_shape: tuple[int, ...], dtype: torch.dtype) -> float:
    """``sqrt(||A||_1 ||A||_inf) >= ||A||_2`` for a linear map with non-negative entries (Schur
    test): the largest row sum ``max A 1`` times the largest column sum ``max A^T 1``."""
    ones = torch.ones((1, *in_shape), dtype=dtype)
    out, vjp_fn = torch.func.vjp(apply, ones)
    (col,) = vjp_fn(torch.ones_like(out))
    return math.sqrt(float(out.max()) * float(col.max()))


def _pool_bound(pool: nn.Module, in_shape: tuple[int, ...] | None) -> float:
    if isinstance(pool, nn.MaxPool2d):
        return max_pool_bound(pool)
    if in_shape is None:
        raise ValueError("pooling layers need example_input to define their operator")
    if isinstance(pool, nn.AdaptiveMaxPool2d):
        out = _pair(pool.output_size)
        count = 1
        for size, o in zip(in_shape[-2:], out, strict=True):
            count *= _adaptive_coverage(size, size if o is None else o)
        return math.sqrt(count)
    return _nonnegative_operator_bound(pool, in_shape, torch.float64)  # average pooling


def _bn_matches(bn: nn.Module, weight_layer: nn.Module, side: str) -> bool:
    """Can batch norm be folded into ``weight_layer`` on its ``side`` ("out" or "in")?"""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return False
    if isinstance(weight_layer, LINEAR_LAYERS):
        size = weight_layer.weight.shape[0 if side == "out" else 1]
        return isinstance(bn, nn.BatchNorm1d) and bn.num_features == size
    if side == "in" and getattr(weight_layer, "groups", 1) != 1:
        return False
    size = weight_layer.weight.shape[0 if side == "out" else 1]
    return isinstance(bn, nn.BatchNorm2d) and bn.num_features == size


def weight_norms(
    model: nn.Module, example_input: Tensor | None = None, n_iter: int = 100
) -> list[LayerNorms]:
    """``||W_l||_2`` and ``||W_l||_F`` of every weight layer, in forward order (eqs. 36, 37).

    Linear layers use the weight matrix (exact SVD). Convolutions are taken as the linear
    operator they apply to an input of the shape seen on ``example_input`` (required for conv
    nets): spectral norm by power iteration, Frobenius norm exactly.

    Only for nets Lemma 1 covers (:func:`lemma1_chain`; others raise ``ValueError``). An
    eval-mode batch norm directly after (before) a weight layer multiplies that layer's output
    (input) by its diagonal :func:`batch_norm_scale` ``D``; the entry is then the norm of
    ``D W`` (``W D``), named ``"<layer>+<bn>"``. Batch norm with no adjacent weight layer is an
    entry of its own, ``max |D|`` in both columns. Pooling layers are entries with their
    Jacobian bound in both columns (:func:`max_pool_bound`; average pooling
    ``sqrt(||A||_1 ||A||_inf)``, which needs ``example_input``); non-overlapping max-pooling gives
    1 (eq. 31). The products of :func:`norm_products` then bound ``||J(x)||_2`` everywhere.
    """
    chain = lemma1_chain(model)
    shapes: dict[nn.Module, tuple[int, ...]] = {}
    if example_input is not None:

        def record(mod: nn.Module, inp: tuple[Tensor, ...], _out: Tensor) -> None:
            shapes.setdefault(mod, tuple(inp[0].shape[1:]))

        handles = [
            m.register_forward_hook(record) for _, m in chain if isinstance(m, CONV_LAYERS + POOLS)
        ]
        with torch.no_grad():
            model(example_input[:1])
        for h in handles:
            h.remove()
    norms = []
    folded: set[int] = set()
    for i, (name, module) in enumerate(chain):
        if i in folded:
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            nxt = chain[i + 1][1] if i + 1 < len(chain) else None
            if (
                nxt is not None
                and isinstance(nxt, WEIGHT_LAYERS)
                and _bn_matches(module, nxt, "in")
            ):
                continue  # folded into the next weight layer's input side
            d = float(batch_norm_scale(module).abs().max())
            norms.append(LayerNorms(name, "batchnorm", d, d))
        elif isinstance(module, POOLS):
            b = _pool_bound(module, shapes.get(module))
            norms.append(LayerNorms(name, type(module).__name__, b, b))
        elif isinstance(module, WEIGHT_LAYERS):
            names, kind = [name], "conv" if isinstance(module, CONV_LAYERS) else "linear"
            d_in = d_out = None
            prev = chain[i - 1][1] if i > 0 else None
            if prev is not None and _bn_matches(prev, module, "in"):
                d_in = batch_norm_scale(prev)
                names.insert(0, chain[i - 1][0])
                kind = "bn+" + kind
            nxt = chain[i + 1][1] if i + 1 < len(chain) else None
            if nxt is not None and _bn_matches(nxt, module, "out"):
                d_out = batch_norm_scale(nxt)
                names.append(chain[i + 1][0])
                folded.add(i + 1)
                kind = kind + "+bn"
            w = module.weight.detach().double()
            if d_out is not None:
                w = w * d_out.view(-1, *([1] * (w.dim() - 1)))
            if d_in is not None:
                w = w * d_in.view(1, -1, *([1] * (w.dim() - 2)))
            if isinstance(module, CONV_LAYERS):
                if module not in shapes:
                    raise ValueError("conv layers need example_input to define their operator")
                w = w.to(module.weight.dtype)
                spec, frob = _conv_operator_norms(module, tuple(shapes[module]), n_iter, w)
            else:
                spec = float(torch.linalg.matrix_norm(w, 2))
                frob = float(torch.linalg.matrix_norm(w, "fro"))
            norms.append(LayerNorms("+".join(names), kind, spec, frob))
    return norms


def norm_products(norms: Iterable[LayerNorms]) -> tuple[float, float]:
    """``(prod_l ||W_l||_2, prod_l ||W_l||_F)`` -- the denominators of eqs. (36) and (37)."""
    spec, frob = 1.0, 1.0
    for n in norms:
        spec *= n.spectral
        frob *= n.frobenius
    return spec, frob


def margin_bound(score_values: Tensor, jacobian_or_norm_bound: Tensor | float) -> Tensor:
    """``o(s_i) / bound``: the common form of eqs. (34)-(37); nan where the score is <= 0."""
    out = score_values / jacobian_or_norm_bound
    return torch.where(score_values > 0, out, torch.full_like(out, float("nan")))


def gamma3(score_values: Tensor, model: nn.Module, example_input: Tensor | None = None) -> Tensor:
    """``gamma_3 = o(s_i) / prod ||W_l||_2`` (eq. 36)."""
    spec, _ = norm_products(weight_norms(model, example_input))
    return margin_bound(score_values, spec)


def gamma4(score_values: Tensor, model: nn.Module, example_input: Tensor | None = None) -> Tensor:
    """``gamma_4 = o(s_i) / prod ||W_l||_F`` (eq. 37)."""
    _, frob = norm_products(weight_norms(model, example_input))
    return margin_bound(score_values, frob)


def gamma2_estimate(score_values: Tensor, sup_jacobian_norm: float) -> Tensor:
    """``gamma_2 = o(s_i) / sup_{x in conv(X)} ||J(x)||_2`` (eq. 35).

    The supremum over the convex hull cannot be computed; callers pass an *estimate* (the max
    over the data and points between them), which can undershoot the true sup, so the result
    can overshoot the true ``gamma_2``: an estimate, not a certified bound.
    """
    return margin_bound(score_values, sup_jacobian_norm)


def local_sup_spectral_norm(
    model: nn.Module,
    x: Tensor,
    radius: Tensor,
    n_samples: int = 32,
    output: Output = "softmax",
    generator: torch.Generator | None = None,
    toward: Tensor | None = None,
    n_line: int = 32,
) -> Tensor:
    """Estimate of ``sup_{||x'-x_i|| <= r_i} ||J(x')||_2`` (eq. 34) by sampling, shape ``[B]``.

    The maximum over ``x_i``, ``n_samples`` points drawn uniformly in the ball of radius ``r_i``
    and, if ``toward`` is given (e.g. the boundary points of :func:`boundary_points`, which lie
    on the ball's surface), ``n_line`` points on the segment from ``x_i`` to ``toward_i`` --
    where the output must change by the whole score, so ``||J||`` is large. A sampled maximum is
    a *lower* estimate of the supremum, so ``o / this`` estimates ``gamma_1`` from above.
    """
    b = x.shape[0]
    dim = x[0].numel()
    view = (b, *([1] * (x.dim() - 1)))
    best = spectral_norm(model, x, output)
    for _ in range(n_samples):
        d = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        d = d / d.flatten(1).norm(dim=1).view(view)
        u = torch.rand(b, generator=generator, dtype=x.dtype).to(x.device) ** (1.0 / dim)
        pts = x + d * (u * radius).view(view)
        best = torch.maximum(best, spectral_norm(model, pts, output))
    if toward is not None:
        for t in torch.linspace(0.0, 1.0, n_line + 1)[1:].tolist():
            best = torch.maximum(best, spectral_norm(model, x + t * (toward - x), output))
    return best


def predicted(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def measured_margin(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    max_iter: int = 50,
    overshoot: float = 0.02,
    n_bisect: int = 40,
    x_pool: Tensor | None = None,
) -> Tensor:
    """An upper bound on the true margin ``gamma^d(s_i)`` (eq. 10), shape ``[B]``.

    Two searches, each ending in a point classified differently from ``y_i``, whose distance to
    ``x_i`` therefore bounds the margin from above; the smaller is returned:

    1. DeepFool (Moosavi-Dezfooli et al. 2016) on the logits, then a bisection along its
       perturbation down to the decision boundary;
    2. a bisection along the segment to the nearest point of ``x_pool`` (default: the batch
       itself) that the model assigns to another class -- such a segment must cross the boundary.

    ``inf`` where neither search found a flip; ``0`` for samples already misclassified.
    """
    return boundary_points(model, x, y, max_iter, overshoot, n_bisect, x_pool)[0]


def boundary_points(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    max_iter: int = 50,
    overshoot: float = 0.02,
    n_bisect: int = 40,
    x_pool: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(radius, points)``: :func:`measured_margin` and the flipped points that realize it.

    ``points[i]`` is classified differently from ``y_i`` at distance ``radius[i]`` from ``x_i``
    (``x_i`` itself where no flip was found or ``x_i`` is misclassified).
    """
    was_training = model.training
    model.eval()
    x0 = x.detach()
    view = (-1, *([1] * (x0.dim() - 1)))
    misclassified = predicted(model, x0) != y
    delta = _deepfool(model, x0, y, max_iter, overshoot)
    radius, t_best = _boundary_radius(model, x0, y, delta, 1 + overshoot, n_bisect)
    direction = delta
    pool = x0 if x_pool is None else x_pool.detach().to(x0)
    pool_pred = predicted(model, pool)
    dists = torch.cdist(x0.flatten(1), pool.flatten(1))
    dists = dists.masked_fill(pool_pred[None, :] == y[:, None], float("inf"))
    nearest_dist, nearest = dists.min(dim=1)
    has_other = torch.isfinite(nearest_dist)
    if has_other.any():
        segment = torch.where(has_other.view(view), pool[nearest] - x0, torch.zeros_like(x0))
        r_seg, t_seg = _boundary_radius(model, x0, y, segment, 1.0, n_bisect)
        better = r_seg < radius
        radius = torch.where(better, r_seg, radius)
        t_best = torch.where(better, t_seg, t_best)
        direction = torch.where(better.view(view), segment, direction)
    radius = torch.where(misclassified, torch.zeros_like(radius), radius)
    found = torch.isfinite(radius) & ~misclassified
    points = x0 + torch.where(found, t_best, torch.zeros_like(t_best)).view(view) * direction
    model.train(was_training)
    return radius.detach(), points.detach()


def _deepfool(model: nn.Module, x0: Tensor, y: Tensor, max_iter: int, overshoot: float) -> Tensor:
    """DeepFool perturbations (multi-class, L2), batched; zero where no step was taken."""
    b = x0.shape[0]
    view = (b, *([1] * (x0.dim() - 1)))
    delta = torch.zeros_like(x0)
    active = predicted(model, x0) == y
    for _ in range(max_iter):
        if not active.any():
            break
        xa = (x0 + (1 + overshoot) * delta).requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            active = active & (logits.argmax(1) == y)
            if not active.any():
                break
            grads = torch.stack(
                [
                    torch.autograd.grad(logits[:, k].sum(), xa, retain_graph=True)[0]
                    for k in range(logits.shape[1])
                ],
                dim=1,
            )
        gaps = (logits - logits.gather(1, y[:, None])).detach()  # f_j - f_y < 0 while correct
        w = grads - grads[torch.arange(b), y].unsqueeze(1)
        w_norm = w.flatten(2).norm(dim=2).clamp_min(1e-12)
        dist = gaps.abs() / w_norm
        dist.scatter_(1, y[:, None], float("inf"))
        k = dist.argmin(1)
        step_len = dist.gather(1, k[:, None]).squeeze(1) + 1e-6
        step = step_len.view(view) * w[torch.arange(b), k] / w_norm.gather(1, k[:, None]).view(view)
        delta = torch.where(active.view(view), delta + step, delta)
    return delta


def _boundary_radius(
    model: nn.Module, x0: Tensor, y: Tensor, direction: Tensor, t_max: float, n_bisect: int
) -> tuple[Tensor, Tensor]:
    """``(||t* direction||, t*)`` for the smallest flipped ``t`` found by bisection on
    ``[0, t_max]``.

    Every returned radius belongs to a point ``x0 + t direction`` classified differently from
    ``y`` (``inf`` where the end point ``t_max`` is not).
    """
    b = x0.shape[0]
    view = (b, *([1] * (x0.dim() - 1)))
    flipped = predicted(model, x0 + t_max * direction) != y
    lo = torch.zeros(b, dtype=x0.dtype, device=x0.device)
    hi = torch.full((b,), t_max, dtype=x0.dtype, device=x0.device)
    for _ in range(n_bisect):
        mid = (lo + hi) / 2
        mid_flip = predicted(model, x0 + mid.view(view) * direction) != y
        hi = torch.where(mid_flip, mid, hi)
        lo = torch.where(mid_flip, lo, mid)
    radius = hi * direction.flatten(1).norm(dim=1)
    return torch.where(flipped, radius, torch.full_like(radius, float("inf"))), hi


# --- covering numbers (Sec. II-B) and GE bounds ---------------------------------------------


def covering_gmm(n_gaussians: int, rank: int, rho: float) -> float:
    """``N(X; d, rho) = L (1 + 2/rho)^k`` for a GMM of L Gaussians of rank <= k."""
    return n_gaussians * (1 + 2 / rho) ** rank


def covering_sparse(n_atoms: int, sparsity: int, rho: float) -> float:
    """``N = binom(L, k) (1 + 2/rho)^k`` for k-sparse signals in a dictionary of L atoms."""
    return math.comb(n_atoms, sparsity) * (1 + 2 / rho) ** sparsity


def covering_manifold(c_m: float, k: int, rho: float) -> float:
    """``N = (C_M / rho)^k`` for a C_M-regular k-dimensional manifold."""
    return (c_m / rho) ** k


def covering_cube(k: int, rho: float) -> float:
    """``N <= ceil(sqrt(k) / (2 rho))^k`` for the unit cube ``[0, 1]^k`` (a grid of spacing
    ``2 rho / sqrt(k)``); the ``cube-manifold`` dataset of :mod:`jacnb.core.data`."""
    return math.ceil(math.sqrt(k) / (2 * rho)) ** k


def ge_bound_robust(
    m: int, n_partitions: float, eps: float = 0.0, loss_bound: float = 1.0, delta: float = 0.05
) -> float:
    """Theorem 1, eq. (8): ``eps + M sqrt((2 K log 2 + 2 log(1/delta)) / m)``."""
    return eps + loss_bound * math.sqrt(
        (2 * n_partitions * math.log(2) + 2 * math.log(1 / delta)) / m
    )


def ge_bound_margin(m: int, n_classes: int, covering_half_margin: float) -> float:
    """eq. (12): ``sqrt(2 log 2 N_Y N(X; d, gamma/2) / m)`` (the log(1/delta) term dropped)."""
    return math.sqrt(2 * math.log(2) * n_classes * covering_half_margin / m)


def ge_bound_manifold(
    m: int, n_classes: int, k: int, c_m: float, gamma: float, delta: float = 0.05
) -> float:
    """Corollary 1, eq. (13) (and Corollary 3, eq. (38) with ``gamma = gamma_b``)."""
    main = math.sqrt(math.log(2) * n_classes * 2 ** (k + 1) * c_m**k / (gamma**k * m))
    return main + math.sqrt(2 * math.log(1 / delta) / m)


def scores_of(model: nn.Module, x: Tensor, y: Tensor, output: Output = "softmax") -> Tensor:
    """``o(s_i)`` for a batch, computed from the model (no gradient)."""
    with torch.no_grad():
        return score(network_output(model, x, output), y)
