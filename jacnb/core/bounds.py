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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from jacnb.core.jacobian import Output, network_output, spectral_norm
from jacnb.core.regularizers import CONV_LAYERS

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


def _conv_operator_norms(
    conv: nn.Module, in_shape: tuple[int, ...], n_iter: int
) -> tuple[float, float]:
    """Spectral (power iteration) and exact Frobenius norm of a conv layer as a linear map."""
    weight = conv.weight.detach()

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
    v = torch.randn_like(ones)
    v = v / v.norm()
    sigma = torch.zeros(())
    for _ in range(n_iter):
        out, vjp_fn = torch.func.vjp(apply, v)
        (w,) = vjp_fn(out)
        sigma = w.norm().sqrt()
        v = w / w.norm().clamp_min(1e-30)
    return float(sigma), float(frob_sq.sqrt())


def weight_norms(
    model: nn.Module, example_input: Tensor | None = None, n_iter: int = 100
) -> list[LayerNorms]:
    """``||W_l||_2`` and ``||W_l||_F`` of every weight layer, in forward order (eqs. 36, 37).

    Linear layers use the weight matrix (exact SVD). Convolutions are taken as the linear
    operator they apply to an input of the shape seen on ``example_input`` (required for conv
    nets): spectral norm by power iteration, Frobenius norm exactly.
    """
    shapes: dict[nn.Module, tuple[int, ...]] = {}
    if example_input is not None:

        def record(mod: nn.Module, inp: tuple[Tensor, ...], _out: Tensor) -> None:
            shapes.setdefault(mod, tuple(inp[0].shape[1:]))

        handles = [
            m.register_forward_hook(record) for m in model.modules() if isinstance(m, CONV_LAYERS)
        ]
        with torch.no_grad():
            model(example_input[:1])
        for h in handles:
            h.remove()
    norms = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, CONV_LAYERS):
            if module not in shapes:
                raise ValueError("conv layers need example_input to define their operator")
            spec, frob = _conv_operator_norms(module, tuple(shapes[module]), n_iter)
            norms.append(LayerNorms(name, "conv", spec, frob))
        elif (
            isinstance(weight, Tensor)
            and weight.dim() == 2
            and not isinstance(module, nn.Embedding)
        ):
            w = weight.detach().double()
            spec = float(torch.linalg.matrix_norm(w, 2))
            frob = float(torch.linalg.matrix_norm(w, "fro"))
            norms.append(LayerNorms(name, "linear", spec, frob))
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
