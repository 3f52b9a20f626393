"""jacnb.core.lowrank against a maintained library: curvlinops' Jacobian operators
(``JacobianLinearOperator``, and its adjoint) with scipy's ``svds``.

On a small net in float64, the top singular values of the parameter Jacobian (Oymak et al.
2019, arXiv 1906.05392, Def. 1.1; page ``07_low_rank_jacobian``) from jacnb's hand-written
jvp/vjp operator (exact Gram, Lanczos and randomized SVD) must match those of curvlinops' operator
to a tight tolerance, and so must the information / nuisance split of a label vector and of a
random vector. Both stack the outputs sample-major (row ``i*K + k``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from jacnb.core.lowrank import ParameterJacobian, Spectrum, information_split, top_singular

curvlinops = pytest.importorskip("curvlinops")
from scipy.sparse.linalg import svds  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64")

N, D, H, K, RANK = 24, 5, 12, 3, 6


@pytest.fixture
def net_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, K))
    x = torch.randn(N, D)
    return model, x


def curvlinops_spectrum(model: nn.Module, x: torch.Tensor, k: int) -> Spectrum:
    """Top ``k`` singular values / left vectors of curvlinops' Jacobian via scipy ``svds``."""
    params = [p for p in model.parameters() if p.requires_grad]
    data = [(x[i : i + 8], torch.zeros(len(x[i : i + 8]))) for i in range(0, len(x), 8)]
    op = curvlinops.JacobianLinearOperator(model, params, data).to_scipy(np.float64)
    u, s, _ = svds(op, k=k, tol=1e-12, random_state=0)
    order = np.argsort(s)[::-1]
    return Spectrum(torch.from_numpy(s[order].copy()), torch.from_numpy(u[:, order].copy()))


@pytest.mark.parametrize("method", ["exact", "lanczos", "randomized"])
def test_top_singular_values_match_curvlinops(net_and_data, method):
    model, x = net_and_data
    ref = curvlinops_spectrum(model, x, RANK)
    ours = top_singular(ParameterJacobian(model, x), RANK, method=method, tol=1e-12, n_iter=8)
    torch.testing.assert_close(ours.s, ref.s, rtol=1e-8, atol=1e-10)
    # the same subspace: the projector onto the top-RANK left singular vectors
    torch.testing.assert_close(ours.u @ ours.u.T, ref.u @ ref.u.T, rtol=0, atol=1e-7)


def test_information_split_matches_curvlinops(net_and_data):
    model, x = net_and_data
    ref = curvlinops_spectrum(model, x, RANK)
    ours = top_singular(ParameterJacobian(model, x), RANK, method="exact")
    gen = torch.Generator().manual_seed(1)
    labels = torch.nn.functional.one_hot(torch.randint(K, (N,), generator=gen), K).double()
    for y in (labels.reshape(-1), torch.randn(N * K, generator=gen, dtype=torch.float64)):
        for rank in (1, 3, RANK):
            a, b = information_split(ours, y, rank=rank), information_split(ref, y, rank=rank)
            for key in ("info", "nuisance", "pinv_norm"):
                assert a[key] == pytest.approx(b[key], rel=1e-8, abs=1e-12), (key, rank)


def test_the_check_can_fail(net_and_data):
    """A planted bug -- the operator's samples shifted by one, i.e. the Jacobian of other
    data -- moves the spectrum beyond the tolerance above."""
    model, x = net_and_data
    ref = curvlinops_spectrum(model, x, RANK)
    wrong = top_singular(ParameterJacobian(model, x.roll(1, dims=1)), RANK, method="exact")
    assert not torch.allclose(wrong.s, ref.s, rtol=1e-8, atol=1e-10)
