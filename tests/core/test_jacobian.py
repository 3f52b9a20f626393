"""Brute-force checks of jacnb.core.jacobian against autograd full Jacobians, SVD and sampling."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from jacnb.core.jacobian import (
    average_jacobian,
    frobenius_sq,
    input_jacobian,
    input_jacobian_functional,
    max_spectral_norm,
    network_output,
    residual_expansion,
    spectral_norm,
)

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def mlp(seed: int = 0, n_in: int = 6, n_out: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, n_out)
    )


def convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
    )


def brute_jacobians(model: nn.Module, x: torch.Tensor, output: str) -> torch.Tensor:
    """One full autograd Jacobian per sample (the slow reference; softmax written out here,
    not taken from the code under test)."""

    def f(z: torch.Tensor) -> torch.Tensor:
        logits = model(z.unsqueeze(0)).squeeze(0)
        return torch.softmax(logits, -1) if output == "softmax" else logits

    rows = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(f, xi)
        rows.append(jac.reshape(jac.shape[0], -1))
    return torch.stack(rows)


@pytest.mark.parametrize("output", ["softmax", "logits"])
@pytest.mark.parametrize("strategy", ["vmap", "class_loop"])
@pytest.mark.parametrize("make", [mlp, convnet])
def test_input_jacobian_matches_autograd(make, strategy, output):
    model = make()
    x = torch.randn(5, 6) if make is mlp else torch.randn(5, 1, 8, 8)
    ref = brute_jacobians(model, x, output)
    got = input_jacobian(model, x, output, strategy=strategy)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(input_jacobian_functional(model, x, output), ref)


@pytest.mark.parametrize("strategy", ["vmap", "class_loop"])
def test_frobenius_exact_value_and_parameter_gradient(strategy):
    model = mlp(1)
    x = torch.randn(7, 6)
    ref = brute_jacobians(model, x, "softmax").pow(2).sum((1, 2))
    got = frobenius_sq(model, x, "exact", strategy=strategy)
    torch.testing.assert_close(got, ref)
    # gradient w.r.t. a parameter against central finite differences
    w = model[0].weight
    got.mean().backward()
    analytic = w.grad[2, 3].item()
    eps = 1e-6
    with torch.no_grad():
        w[2, 3] += eps
        plus = frobenius_sq(model, x).mean().item()
        w[2, 3] -= 2 * eps
        minus = frobenius_sq(model, x).mean().item()
        w[2, 3] += eps
    assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-9)


def test_projection_is_unbiased_within_three_standard_errors():
    model = mlp(2)
    x = torch.randn(3, 6)
    exact = frobenius_sq(model, x).detach()
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack(
        [frobenius_sq(model, x, "projection", generator=gen).detach() for _ in range(2000)]
    )
    mean, se = draws.mean(0), draws.std(0) / draws.shape[0] ** 0.5
    assert torch.all((mean - exact).abs() < 3 * se), (mean, exact, se)
    # more projections per sample shrink the spread
    many = torch.stack(
        [frobenius_sq(model, x, "projection", n_proj=8, generator=gen).detach() for _ in range(400)]
    )
    assert torch.all(many.std(0) < draws.std(0))


def test_projection_is_differentiable():
    """With the draws fixed (same generator seed) the estimator's W-gradient matches finite
    differences, and its mean over draws is the gradient of the exact R_F, computed from full
    autograd Jacobians (eq. 49)."""
    model = mlp(3)
    x = torch.randn(4, 6)
    w = model[0].weight

    def estimate(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return frobenius_sq(model, x, "projection", n_proj=2, generator=gen).mean()

    (analytic,) = torch.autograd.grad(estimate(5), w)
    eps = 1e-6
    for a, b in [(2, 3), (0, 0), (7, 5)]:
        with torch.no_grad():
            w[a, b] += eps
            plus = float(estimate(5))
            w[a, b] -= 2 * eps
            minus = float(estimate(5))
            w[a, b] += eps
        assert float(analytic[a, b]) == pytest.approx(
            (plus - minus) / (2 * eps), rel=1e-5, abs=1e-9
        )
    exact = torch.stack(
        [
            torch.autograd.functional.jacobian(
                lambda z: torch.softmax(model(z[None]), -1)[0], xi, create_graph=True
            )
            .pow(2)
            .sum()
            for xi in x
        ]
    ).mean()
    (exact_grad,) = torch.autograd.grad(exact, w)
    draws = torch.stack([torch.autograd.grad(estimate(s), w)[0] for s in range(400)])
    mean, se = draws.mean(0), draws.std(0) / 400**0.5
    z = (mean - exact_grad) / se.clamp_min(1e-15)
    assert float(z.abs().max()) < 5, float(z.abs().max())


@pytest.mark.parametrize("make", [mlp, convnet])
def test_spectral_norm_matches_svd(make):
    model = make(4)
    x = torch.randn(6, 6) if make is mlp else torch.randn(6, 1, 8, 8)
    ref = torch.linalg.matrix_norm(brute_jacobians(model, x, "softmax"), 2)
    torch.testing.assert_close(spectral_norm(model, x, method="gram"), ref, rtol=1e-4, atol=0)
    torch.testing.assert_close(
        spectral_norm(model, x, method="power", n_iter=500), ref, rtol=1e-4, atol=0
    )
    assert max_spectral_norm(model, x, batch_size=4) == pytest.approx(float(ref.max()), rel=1e-4)


def test_frobenius_bounds_spectral():
    """1/rank ||J||_F^2 <= ||J||_2^2 <= ||J||_F^2 (Sec. IV-A, below eq. 49)."""
    model = mlp(5)
    x = torch.randn(10, 6)
    fro = frobenius_sq(model, x).detach()
    spec = spectral_norm(model, x) ** 2
    assert torch.all(spec <= fro * (1 + 1e-9))
    assert torch.all(fro / 4 <= spec * (1 + 1e-9))


def test_average_jacobian_theorem3():
    """Theorem 3: f(x') - f(x) = J_{x,x'} (x' - x)."""
    model = mlp(6)
    x, xp = torch.randn(6), torch.randn(6)
    lhs = network_output(model, xp[None])[0] - network_output(model, x[None])[0]
    rhs = average_jacobian(model, x, xp, n_points=4000) @ (xp - x)
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-5)
    # a wrong identity (one-point Jacobian) does not pass the same check
    wrong = input_jacobian(model, x[None])[0] @ (xp - x)
    assert not torch.allclose(lhs, wrong, rtol=1e-4, atol=1e-5)


def test_residual_expansion_eq55():
    torch.manual_seed(0)
    mats = [torch.randn(3, 3) * 0.3 for _ in range(3)]
    product = torch.eye(3)
    for m in mats:
        product = (torch.eye(3) + m) @ product
    torch.testing.assert_close(residual_expansion(mats), product)


def test_bad_arguments():
    model = mlp()
    with pytest.raises(ValueError, match="output"):
        network_output(model, torch.randn(2, 6), "probabilities")
    with pytest.raises(ValueError, match="method"):
        frobenius_sq(model, torch.randn(2, 6), "svd")
    with pytest.raises(ValueError, match="n_proj"):
        frobenius_sq(model, torch.randn(2, 6), "projection", n_proj=0)


def test_average_jacobian_times_matches_matrix_version():
    model = mlp(7)
    x, xp = torch.randn(6), torch.randn(6)
    from jacnb.core.jacobian import average_jacobian_times

    jbar = average_jacobian(model, x, xp, n_points=300)
    torch.testing.assert_close(average_jacobian_times(model, x, xp, n_points=300), jbar @ (xp - x))
    lhs = network_output(model, xp[None])[0] - network_output(model, x[None])[0]
    torch.testing.assert_close(
        average_jacobian_times(model, x, xp, 8000), lhs.detach(), rtol=1e-3, atol=1e-5
    )


# --- issue 12: batch norm in training mode, input checks ------------------------------------


def bn1d_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))


def test_spectral_norm_auto_does_not_probe_a_single_sample():
    """BatchNorm1d in training mode raises on one sample; the auto route must not need it."""
    model = bn1d_mlp()
    x = torch.randn(5, 6)
    got = spectral_norm(model, x)  # training mode: the batch's (coupled) Jacobian
    ref = spectral_norm(model, x, method="gram")
    torch.testing.assert_close(got, ref)


def test_single_sample_batch_with_training_batch_norm_warns():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    )
    with pytest.warns(RuntimeWarning, match="batch size 1"):
        input_jacobian(model, torch.randn(1, 1, 4, 4))
    with pytest.warns(RuntimeWarning, match="batch size 1"):
        frobenius_sq(model, torch.randn(1, 1, 4, 4))
    model.eval()  # running statistics: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        input_jacobian(model, torch.randn(1, 1, 4, 4))


@pytest.mark.parametrize("fn", [input_jacobian, frobenius_sq, spectral_norm])
def test_wrong_shape_or_empty_input_names_the_expected_shape(fn):
    model = mlp()
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        fn(model, torch.randn(3, 7))
    with pytest.raises(ValueError, match="empty"):
        fn(model, torch.randn(0, 6))
    with pytest.raises(ValueError, match="batch"):
        fn(model, torch.randn(6))  # no batch axis
    conv = convnet()
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        fn(conv, torch.randn(2, 3, 8, 8))
