"""Scores, margin bounds (Theorem 4), weight norms (Lemma 1) and GE bounds, checked numerically."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from jacnb.core import bounds
from jacnb.core.jacobian import input_jacobian, network_output, spectral_norm
from jacnb.core.models import tiny_resnet

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def test_score_is_distance_to_nearest_output_hyperplane():
    f = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    y = torch.tensor([0, 1])
    got = bounds.score(f, y)
    torch.testing.assert_close(got, torch.tensor([0.5, -0.3]) / math.sqrt(2))
    torch.testing.assert_close(bounds.score(f, y, scale="printed"), 2 * got)
    # geometric check: distance of f to {z : z_0 = z_1} is (f_0 - f_1)/sqrt(2)
    normal = torch.tensor([1.0, -1.0, 0.0]) / math.sqrt(2)
    assert float(f[0] @ normal) == pytest.approx(float(got[0]))


def linear_model(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def test_unit_score_makes_theorem4_tight_and_printed_score_violates_it():
    """f(x) = W x (logits): gamma^d = min_j (f_y-f_j)/||w_y-w_j|| and gamma_3 = o/||W||_2.

    Every expected number is worked out by hand: W = [[1, 0], [-1, 0]], x = (1, 0.3), so
    f = (1, -1); the unit score is (1 - (-1))/sqrt(2) = sqrt(2), the printed one
    sqrt(2) (1 - (-1)) = 2 sqrt(2); ||W||_2 = sqrt(2); the true margin is the distance of x to
    the boundary {x_1 = 0}, 1.
    """
    model = linear_model(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    x = torch.tensor([[1.0, 0.3]])
    y = torch.tensor([0])
    f = network_output(model, x, "logits").detach()
    unit = bounds.score(f, y)
    printed = bounds.score(f, y, scale="printed")
    assert float(unit) == pytest.approx(math.sqrt(2))
    assert float(printed) == pytest.approx(2 * math.sqrt(2))
    assert float(bounds.gamma3(unit, model)) == pytest.approx(1.0)  # tight: = true margin
    # the printed constant claims a margin of 2, twice the distance to the boundary
    assert float(bounds.gamma3(printed, model)) == pytest.approx(2.0)
    measured = float(bounds.measured_margin(model, x, y)[0])
    assert measured == pytest.approx(1.0, rel=1e-4)


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


@pytest.mark.parametrize("seed", range(4))
def test_theorem4_ordering_on_random_nets(seed):
    """gamma_4 <= gamma_3 <= measured margin for every correctly classified sample."""
    model = mlp(seed)
    x = torch.randn(40, 4)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample correctly classified by construction
    o = bounds.scores_of(model, x, y)
    g3 = bounds.gamma3(o, model)
    g4 = bounds.gamma4(o, model)
    measured = bounds.measured_margin(model, x, y)
    assert torch.isfinite(measured).all()
    assert torch.all(g4 <= g3 + 1e-12)
    assert torch.all(g3 <= measured * (1 + 1e-6))
    # the measured point really is on the other side: g(x + (1+eps) delta) != y is checked inside;
    # and a margin bound built from the sup of ||J|| over many points stays below it too
    sup_j = float(spectral_norm(model, torch.randn(2000, 4) * 3).max())
    g2 = bounds.gamma2_estimate(o, max(sup_j, float(spectral_norm(model, x).max())))
    assert torch.all(g2 >= g3 - 1e-12)
    # independent of the above (whose slack is 10x or more): a net on which Theorem 4 is tight,
    # its margins found by brute force, so a gamma_3 off by 2x in either direction fails
    net = tight_net(seed)
    xs = torch.rand(16, 2) * 4 - 2
    with torch.no_grad():
        ys = net(xs).argmax(1)
    g3_tight = bounds.gamma3(bounds.scores_of(net, xs, ys, output="logits"), net)
    brute = radial_scan_margin(net, xs, ys)
    assert torch.all(g3_tight <= brute * (1 + 1e-6))
    assert float((g3_tight / brute).min()) > 0.99


def tight_net(seed: int) -> nn.Sequential:
    """Orthogonal first layer with a large bias (every ReLU active for ||x|| < 7), second layer
    rows ``v, -v`` and the output bias that puts the boundary ``v^T Q x = 0`` through 0. For
    ``||x|| <= 3`` the net is affine out to its boundary, where gamma_3 (logits, unit score)
    equals the margin: o = sqrt(2) |v^T Q x|, prod ||W||_2 = 1 * sqrt(2) ||v||."""
    g = torch.Generator().manual_seed(100 + seed)
    q, _ = torch.linalg.qr(torch.randn(2, 2, generator=g))
    v = torch.randn(2, generator=g)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(q)
        net[0].bias.fill_(10.0)
        net[2].weight.copy_(torch.stack([v, -v]))
        shift = float(v.sum() * 10.0)
        net[2].bias.copy_(torch.tensor([-shift, shift]))
    return net


def radial_scan_margin(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_dir: int = 360, r_max: float = 6.0
) -> torch.Tensor:
    """Brute-force upper bound on the margin of 2-D inputs: along each of ``n_dir`` rays the
    first label change on a grid of 300 radii, refined by bisection; the minimum over rays."""
    angles = torch.arange(n_dir) * (2 * math.pi / n_dir)
    dirs = torch.stack([angles.cos(), angles.sin()], dim=1)  # [D, 2]
    radii = torch.linspace(0.0, r_max, 301)[1:]
    out = []
    with torch.no_grad():
        for xi, yi in zip(x, y, strict=True):
            pts = xi + radii[:, None, None] * dirs[None]  # [R, D, 2]
            flipped = model(pts.reshape(-1, 2)).argmax(1).reshape(len(radii), n_dir) != yi
            first = torch.where(flipped.any(0), flipped.float().argmax(0), len(radii))
            ok = first < len(radii)
            hi = radii[first.clamp(max=len(radii) - 1)]
            lo = torch.where(first > 0, radii[(first - 1).clamp(min=0)], torch.zeros(()))
            for _ in range(40):
                mid = (lo + hi) / 2
                flip = model(xi + mid[:, None] * dirs).argmax(1) != yi
                hi = torch.where(flip, mid, hi)
                lo = torch.where(flip, lo, mid)
            out.append(torch.where(ok, hi, torch.full_like(hi, math.inf)).min())
    return torch.stack(out)


def test_lemma1_layer_jacobian_norms():
    """||dz^l/dz^{l-1}||_2 <= ||W_l||_2 <= ||W_l||_F (eq. 30) and ||softmax Jacobian||_2 <= 1."""
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
    x = torch.randn(30, 6)
    jac_norm = spectral_norm(layer, x, output="logits")
    spec = torch.linalg.matrix_norm(layer[0].weight, 2)
    assert torch.all(jac_norm <= spec + 1e-10)
    assert spec <= torch.linalg.matrix_norm(layer[0].weight, "fro")
    z = torch.randn(30, 7) * 5
    soft = torch.func.vmap(torch.func.jacrev(lambda v: torch.softmax(v, -1)))(z)
    assert torch.all(torch.linalg.matrix_norm(soft, 2) <= 1 + 1e-12)


def test_conv_operator_norms_match_dense_matrix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Flatten())
    x = torch.randn(1, 2, 6, 6)
    dense = input_jacobian(model, x, output="logits")[0]
    (norms,) = bounds.weight_norms(model, example_input=x, n_iter=300)
    assert norms.spectral == pytest.approx(float(torch.linalg.matrix_norm(dense, 2)), rel=1e-6)
    assert norms.frobenius == pytest.approx(float(torch.linalg.matrix_norm(dense, "fro")), rel=1e-9)
    with pytest.raises(ValueError, match="example_input"):
        bounds.weight_norms(model)


def test_norm_products_and_weight_norms_for_linear_layers():
    model = mlp(0)
    norms = bounds.weight_norms(model)
    assert [n.name for n in norms] == ["0", "2", "4"]
    mats = [m.weight.detach().numpy() for m in model[::2]]  # reference: numpy SVD and sums
    ref_spec = [float(np.linalg.svd(w, compute_uv=False)[0]) for w in mats]
    ref_frob = [float(np.sqrt((w**2).sum())) for w in mats]
    assert [n.spectral for n in norms] == pytest.approx(ref_spec, rel=1e-12)
    assert [n.frobenius for n in norms] == pytest.approx(ref_frob, rel=1e-12)
    spec, frob = bounds.norm_products(norms)
    assert spec == pytest.approx(float(np.prod(ref_spec)), rel=1e-12)
    assert frob == pytest.approx(float(np.prod(ref_frob)), rel=1e-12)


def test_orthonormal_rows_spectral_one_frobenius_sqrt_m():
    """Sec. IV example: M x M orthonormal rows -> ||W||_2 = 1, ||W||_F = sqrt(M)."""
    q, _ = torch.linalg.qr(torch.randn(9, 9))
    model = nn.Sequential(linear_model(q), nn.ReLU(), linear_model(q.T))
    spec, frob = bounds.norm_products(bounds.weight_norms(model))
    assert spec == pytest.approx(1.0)
    assert frob == pytest.approx(9.0)  # (sqrt 9)^2


def test_covering_numbers_and_ge_bounds():
    assert bounds.covering_gmm(3, 2, 1.0) == pytest.approx(27.0)
    assert bounds.covering_sparse(5, 2, 2.0) == pytest.approx(40.0)
    assert bounds.covering_manifold(2.0, 3, 0.5) == pytest.approx(64.0)
    # eq. (8) at K=1, delta=1: sqrt(2 log 2 / m)
    assert bounds.ge_bound_robust(100, 1, delta=1.0) == pytest.approx(
        math.sqrt(2 * math.log(2) / 100)
    )
    # eq. (13): decreasing in m and gamma, increasing in k for gamma < 2 C_M
    base = bounds.ge_bound_manifold(1000, 10, 2, 1.0, 0.5)
    assert bounds.ge_bound_manifold(4000, 10, 2, 1.0, 0.5) < base
    assert bounds.ge_bound_manifold(1000, 10, 2, 1.0, 1.0) < base
    assert bounds.ge_bound_manifold(1000, 10, 3, 1.0, 0.5) > base
    # eq. (12) with the manifold covering number equals eq. (13) without the delta term
    eq12 = bounds.ge_bound_margin(1000, 10, bounds.covering_manifold(1.0, 2, 0.25))
    eq13 = bounds.ge_bound_manifold(1000, 10, 2, 1.0, 0.5, delta=1.0)
    assert eq12 == pytest.approx(eq13)
    # hand-computed values (calculator, from the printed formulas):
    # eq. (8), K = 10, eps = 0.1, M = 2, m = 100, delta = 0.05:
    #   0.1 + 2 sqrt((20 log 2 + 2 log 20) / 100) = 0.99116571...
    assert bounds.ge_bound_robust(100, 10, eps=0.1, loss_bound=2.0, delta=0.05) == pytest.approx(
        0.9911657120, rel=1e-9
    )
    # eq. (13), N_Y = 10, k = 2, C_M = 1, gamma = 0.5, m = 1000, delta = 0.05:
    #   sqrt(log 2 * 10 * 2^3 / (0.25 * 1000)) + sqrt(2 log 20 / 1000) = 0.54836856...
    assert bounds.ge_bound_manifold(1000, 10, 2, 1.0, 0.5, 0.05) == pytest.approx(
        0.5483685602, rel=1e-9
    )
    # eq. (12), N_Y = 3, N = 9, m = 500: sqrt(2 log 2 * 27 / 500) = 0.27360536...
    assert bounds.ge_bound_margin(500, 3, 9.0) == pytest.approx(0.2736053645, rel=1e-9)
    # unit cube: ceil(sqrt(k) / (2 rho))^k
    assert bounds.covering_cube(2, 0.25) == 9  # ceil(2.83)^2
    assert bounds.covering_cube(3, 0.5) == 8  # ceil(1.73)^3
    assert bounds.covering_cube(5, 0.3) == 1024  # ceil(3.73)^5


@pytest.mark.parametrize(("k", "rho"), [(2, 0.25), (3, 0.5), (2, 0.2)])
def test_covering_cube_grid_covers_the_cube(k, rho):
    """The grid behind covering_cube: n = N^(1/k) centres per axis at (i + 1/2)/n cover [0, 1]^k
    with balls of radius rho (brute force over random points and the corners), n - 1 do not."""
    n = round(bounds.covering_cube(k, rho) ** (1 / k))
    assert n**k == bounds.covering_cube(k, rho)
    g = torch.Generator().manual_seed(0)
    corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * k).reshape(-1, k)
    pts = torch.cat([torch.rand(20000, k, generator=g), corners])

    def worst(n_axis: int) -> float:
        axis = (torch.arange(n_axis) + 0.5) / n_axis
        centres = torch.cartesian_prod(*[axis] * k).reshape(-1, k)
        return float(torch.cdist(pts, centres).min(dim=1).values.max())

    assert worst(n) <= rho + 1e-12
    assert worst(n - 1) > rho


def test_measured_margin_misclassified_is_zero():
    model = linear_model(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    x = torch.tensor([[-1.0, 0.0]])
    assert float(bounds.measured_margin(model, x, torch.tensor([0]))[0]) == 0.0


class HalfSquare(nn.Module):
    """``f(x) = x^2 / 2`` element-wise: ``J(x) = diag(x)``, ``||J(x)||_2 = max_i |x_i|``, whose
    sup over the ball of radius r around x is ``max_i |x_i| + r``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(2) / 2


def test_local_sup_estimate_at_least_value_at_center():
    """The sampled sup stays inside the ball (never above the true sup), reaches out to its
    surface, and the segment to a boundary point on the surface attains the sup."""
    model = HalfSquare()
    x = torch.tensor([[1.0, -0.5], [0.2, 0.3], [-2.0, 0.0]])
    r = torch.tensor([0.5, 1.0, 0.25])
    centre = x.abs().max(dim=1).values
    true_sup = centre + r
    est = bounds.local_sup_spectral_norm(
        model, x, r, n_samples=256, output="logits", generator=torch.Generator().manual_seed(0)
    )
    assert torch.all(est <= true_sup + 1e-12)
    assert torch.all(est >= centre + 0.8 * r)
    rows = torch.arange(3)
    top = x.abs().argmax(dim=1)
    toward = x.clone()
    toward[rows, top] += r * x[rows, top].sign()
    on_line = bounds.local_sup_spectral_norm(
        model, x, r, n_samples=0, output="logits", toward=toward, n_line=4
    )
    torch.testing.assert_close(on_line, true_sup)


def test_boundary_points_are_flipped_at_the_measured_distance():
    model = mlp(2)
    x = torch.randn(30, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    radius, points = bounds.boundary_points(model, x, y)
    ok = torch.isfinite(radius)
    assert ok.all()
    assert torch.all(bounds.predicted(model, points) != y)
    torch.testing.assert_close((points - x).norm(dim=1), radius)
    # by Theorem 3 the Jacobian on the segment to the boundary is at least o / radius on average,
    # so the segment-sampled sup gives a gamma_1 estimate close to or below the measured margin
    local = bounds.local_sup_spectral_norm(model, x, radius, n_samples=0, toward=points, n_line=64)
    g1 = bounds.margin_bound(bounds.scores_of(model, x, y), local)
    assert torch.all(g1 <= radius * 1.1)


# --- issue 12: gamma_3 / gamma_4 where Lemma 1 holds, and refusal where it does not ---------


def bn_mlp_eval(seed: int = 0) -> nn.Sequential:
    """Linear-BN-ReLU x2 + Linear in eval mode, running statistics from data, random affine."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(4, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )
    bns = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    for bn in bns:
        bn.momentum = None  # cumulative average: the statistics of all batches seen
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(64, 4))
        for bn in bns:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
    return model.eval()


def dense_jacobian_norm(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``||J(x_i)||_2`` of the logits from full autograd Jacobians and SVD (the reference)."""
    norms = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda z: model(z[None]).flatten(), xi)
        norms.append(torch.linalg.matrix_norm(jac.reshape(jac.shape[0], -1), 2))
    return torch.stack(norms)


def test_gamma3_on_eval_batch_norm_net_stays_below_the_measured_margin():
    model = bn_mlp_eval()
    x = torch.randn(200, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    # Theorem 4 with f = the logits (the softmax only multiplies ||J|| by <= 1): less slack
    o = bounds.scores_of(model, x, y, output="logits")
    g3 = bounds.gamma3(o, model)
    g4 = bounds.gamma4(o, model)
    measured = bounds.measured_margin(model, x, y)
    assert torch.isfinite(measured).all()
    assert int((g3 > measured * (1 + 1e-6)).sum()) == 0
    assert torch.all(g4 <= g3 * (1 + 1e-9))
    # the product bounds ||J(x)||_2 of the logits (brute force over random inputs)
    spec, _ = bounds.norm_products(bounds.weight_norms(model))
    pts = torch.randn(300, 4) * 3
    assert float(dense_jacobian_norm(model, pts).max()) <= spec * (1 + 1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6)),  # BN after: D W
        lambda: nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 6)),  # BN before: W D
        lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Flatten()),
        lambda: nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3, stride=2), nn.Flatten()),
    ],
)
def test_eval_batch_norm_folds_into_the_adjacent_operator(make):
    """An eval-mode batch norm next to a linear/conv layer: the affine pair has a constant
    Jacobian whose SVD the folded operator norm must equal."""
    torch.manual_seed(3)
    model = make()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.uniform_(0.05, 3.0)
                m.running_mean.normal_()
                m.weight.uniform_(-2.0, 2.0)
    model.eval()
    x = torch.randn(1, 5) if isinstance(model[-1], nn.Linear | nn.BatchNorm1d) else None
    x = torch.randn(1, 2, 6, 6) if x is None else x
    (norms,) = bounds.weight_norms(model, example_input=x, n_iter=500)
    dense = torch.autograd.functional.jacobian(lambda z: model(z[None]).flatten(), x[0])
    dense = dense.reshape(dense.shape[0], -1).numpy()
    assert norms.spectral == pytest.approx(np.linalg.svd(dense, compute_uv=False)[0], rel=1e-6)
    assert norms.frobenius == pytest.approx(np.sqrt((dense**2).sum()), rel=1e-9)


@pytest.mark.parametrize(("k", "s", "p"), [(3, 2, 1), (2, 2, 0), (3, 1, 1), (2, 1, 0), (3, 3, 0)])
def test_max_pool_jacobian_bound_is_attained_and_never_exceeded(k, s, p):
    """||J||_2 of max-pooling is sqrt(max number of windows an input lies in) <= ceil(k/s)."""
    pool = nn.Sequential(nn.MaxPool2d(k, s, padding=p), nn.Flatten())
    x = torch.randn(1, 1, 8, 8)
    (norms,) = bounds.weight_norms(pool, example_input=x)
    assert norms.spectral == pytest.approx(math.ceil(k / s))
    # brute force: random inputs stay below; one spike on a negative background, over every
    # position, attains the bound (all windows containing it select it)
    rand = torch.linalg.matrix_norm(input_jacobian(pool, torch.randn(100, 1, 8, 8), "logits"), 2)
    assert float(rand.max()) <= norms.spectral + 1e-9
    spikes = -torch.rand(64, 1, 8, 8) - 1.0
    spikes.view(64, -1)[torch.arange(64), torch.arange(64)] = 10.0
    best = torch.linalg.matrix_norm(input_jacobian(pool, spikes, "logits"), 2).max()
    assert float(best) == pytest.approx(norms.spectral)


@pytest.mark.parametrize(
    "pool",
    [
        nn.AvgPool2d(3, 1, padding=1),
        nn.AvgPool2d(3, 1, padding=1, count_include_pad=False),
        nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.AdaptiveAvgPool2d(3),
    ],
)
def test_average_pool_bound_is_at_least_its_operator_norm(pool):
    net = nn.Sequential(pool, nn.Flatten())
    x = torch.randn(1, 2, 7, 7)
    (norms,) = bounds.weight_norms(net, example_input=x)
    dense = input_jacobian(net, x, "logits")[0].numpy()
    exact = np.linalg.svd(dense, compute_uv=False)[0]
    assert exact <= norms.spectral * (1 + 1e-9)
    assert norms.spectral <= 1.5 * exact  # and not a vacuous bound


def test_conv_bn_pool_net_product_bounds_the_jacobian():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 4),
    )
    with torch.no_grad():
        model[1].running_var.uniform_(0.01, 0.1)  # a strongly amplifying batch norm
    model.eval()
    x = torch.randn(200, 1, 8, 8)
    spec, frob = bounds.norm_products(bounds.weight_norms(model, example_input=x, n_iter=300))
    assert float(dense_jacobian_norm(model, x[:60]).max()) <= spec
    assert spec <= frob


def test_margin_bounds_refuse_nets_outside_lemma1():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="Lemma 1"):
        bounds.weight_norms(tiny_resnet())
    with pytest.raises(ValueError, match="eval"):
        bounds.weight_norms(bn_mlp_eval().train())
    with pytest.raises(ValueError, match="GELU"):
        bounds.weight_norms(nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="eval"):
        bounds.weight_norms(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2)))
    o = torch.ones(3)
    with pytest.raises(ValueError, match="Lemma 1"):
        bounds.gamma3(o, tiny_resnet())
    # eval-mode dropout is the identity and is accepted
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2)).eval()
    assert len(bounds.weight_norms(net)) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1},
        {"in_channels": 2, "out_channels": 2, "kernel_size": 5, "padding": 2},
        {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "dilation": 2},
    ],
)
def test_large_conv_spectral_bound_is_certified_and_tight(kwargs, monkeypatch):
    """Above DENSE_CONV_LIMIT the conv norm is the circular-convolution (DFT) upper bound."""
    torch.manual_seed(0)
    conv = nn.Conv2d(**kwargs)
    net = nn.Sequential(conv, nn.Flatten())
    x = torch.randn(1, conv.in_channels, 12, 12)
    dense = input_jacobian(net, x, "logits")[0].numpy()
    exact = np.linalg.svd(dense, compute_uv=False)[0]
    (small,) = bounds.weight_norms(net, example_input=x)
    assert small.spectral == pytest.approx(exact, rel=1e-9)
    monkeypatch.setattr(bounds, "DENSE_CONV_LIMIT", 0)
    (large,) = bounds.weight_norms(net, example_input=x)
    assert exact <= large.spectral * (1 + 1e-9)
    assert large.spectral <= 1.3 * exact
    assert large.frobenius == pytest.approx(np.sqrt((dense**2).sum()), rel=1e-9)
