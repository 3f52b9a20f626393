"""jacnb.core.lowrank against brute force: autograd full Jacobians, dense SVD, hand-built subspaces;
and the label corruption of jacnb.chapters.low_rank_jacobian."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from jacnb.chapters.low_rank_jacobian import corrupt_labels
from jacnb.core.data import gaussian_mixture as oymak_mixture
from jacnb.core.lowrank import ParameterJacobian, information_split, project_energy, top_singular
from jacnb.core.models import OneHiddenLayer

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def tiny_net(seed: int = 0, n_in: int = 5, width: int = 7, n_out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, width), nn.Tanh(), nn.Linear(width, n_out)).eval()


def brute_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``nK x p`` by torch.autograd.functional.jacobian over the flattened parameters."""
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, [math.prod(s) for s in shapes])
        params = {k: t.reshape(s) for k, t, s in zip(names, parts, shapes, strict=True)}
        return functional_call(model, params, (x,)).reshape(-1)

    return torch.autograd.functional.jacobian(f, flat0)


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_products_and_gram_match_autograd(chunk: int):
    model = tiny_net()
    x = torch.randn(8, 5)
    ref = brute_jacobian(model, x)
    jac = ParameterJacobian(model, x, chunk_size=chunk, col_chunk=3 if chunk == 3 else None)
    assert jac.shape == tuple(ref.shape)
    v = torch.randn(jac.p, 4)
    u = torch.randn(jac.n * jac.K, 4)
    torch.testing.assert_close(jac.matmat(v), ref @ v)
    torch.testing.assert_close(jac.rmatmat(u), ref.T @ u)
    torch.testing.assert_close(jac.matvec(v[:, 0]), ref @ v[:, 0])
    torch.testing.assert_close(jac.rmatvec(u[:, 0]), ref.T @ u[:, 0])
    torch.testing.assert_close(jac.dense(), ref)
    torch.testing.assert_close(jac.outputs(), model(x).detach().reshape(-1))
    for method in ("jacobian", "jvp"):
        torch.testing.assert_close(jac.gram(method), ref @ ref.T)
    torch.testing.assert_close(jac.gram("jacobian", max_bytes=0), ref @ ref.T)


def test_fixed_parameters_are_excluded():
    model = OneHiddenLayer(4, 6, 2, seed=0).double()
    x = torch.randn(5, 4)
    jac = ParameterJacobian(model, x)
    assert jac.names == ["W.weight"] and jac.p == 24
    ref = torch.autograd.functional.jacobian(
        lambda w: functional_call(model, {"W.weight": w}, (x,)).reshape(-1), model.W.weight.detach()
    ).reshape(10, -1)
    torch.testing.assert_close(jac.dense(), ref)


@pytest.mark.parametrize("method", ["exact", "lanczos", "randomized"])
def test_top_k_matches_dense_svd(method: str):
    model = tiny_net(1, n_in=6, width=12, n_out=3)
    x = torch.randn(20, 6)
    ref = brute_jacobian(model, x)
    u_ref, s_ref, _ = torch.linalg.svd(ref, full_matrices=False)
    k = 5
    spec = top_singular(ParameterJacobian(model, x, chunk_size=7), k, method=method, n_iter=8)
    torch.testing.assert_close(spec.s, s_ref[:k], rtol=1e-6, atol=1e-8)
    # same subspace (the vectors themselves are defined up to sign)
    overlap = (spec.u.T @ u_ref[:, :k]).abs()
    torch.testing.assert_close(torch.linalg.svdvals(overlap), torch.ones(k), rtol=0, atol=1e-6)


def test_information_split_against_hand_built_subspace():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12))
    s = torch.tensor([5.0, 3.0, 2.0, 0.5, 0.1])
    from jacnb.core.lowrank import Spectrum

    spec = Spectrum(s, q[:, :5])
    y = 2.0 * q[:, 0] + 1.0 * q[:, 2] + 2.0 * q[:, 7]  # ||y|| = 3
    out = information_split(spec, y, rank=3)
    assert out["rank"] == 3
    assert out["info"] == pytest.approx(math.sqrt(5) / 3)
    assert out["nuisance"] == pytest.approx(2 / 3)
    assert out["pinv_norm"] == pytest.approx(math.hypot(2 / 5, 1 / 2))
    by_alpha = information_split(spec, y, alpha=1.0)
    assert by_alpha == out
    assert information_split(spec, y, alpha=2.5)["info"] == pytest.approx(2 / 3)
    info, nuis = project_energy(q[:, :3], y)
    assert (info, nuis) == (pytest.approx(5.0), pytest.approx(4.0))
    with pytest.raises(ValueError):
        information_split(spec, y)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_corruption_flips_to_a_different_class(fraction: float):
    y = torch.arange(200) % 10
    y_new, flipped = corrupt_labels(y, fraction, 10, seed=3)
    assert int(flipped.sum()) == round(fraction * 200)
    assert bool((y_new[flipped] != y[flipped]).all())
    assert bool((y_new[~flipped] == y[~flipped]).all())
    assert int(y_new.min()) >= 0 and int(y_new.max()) < 10
    if fraction == 1.0:  # every other class is reached
        assert set((y_new - y).remainder(10).tolist()) == set(range(1, 10))
    again, _ = corrupt_labels(y, fraction, 10, seed=3)
    assert torch.equal(again, y_new)


def test_mixture_centres_are_separated():
    data = oymak_mixture(n_classes=4, clusters_per_class=3, dim=10, sigma=0.1, n=120, seed=0)
    c = data["centres"]
    d = torch.cdist(c, c) + torch.eye(len(c)) * 10
    assert float(d.min()) >= 0.5
    assert data["x"].shape == (120, 10) and set(data["y"].tolist()) == set(range(4))
