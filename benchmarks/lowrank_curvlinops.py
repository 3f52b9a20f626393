"""jacnb's hand-written parameter-Jacobian operator (:class:`jacnb.core.lowrank.ParameterJacobian`)
against curvlinops' ``JacobianLinearOperator`` and its adjoint, on the low-rank chapter's
one-hidden-layer net (Oymak et al. 2019, arXiv 1906.05392; page ``07_low_rank_jacobian``).

Run::

    python -m benchmarks.lowrank_curvlinops              # n=200, hidden=128: ~3 min, 1 thread
    python -m benchmarks.lowrank_curvlinops --n 100 --hidden 64

Rows: one block product ``𝒥 V`` (``V``: ``p x 95``, the randomized SVD's block for k = 50) and
``𝒥ᵀ U`` (best of 3), then the whole randomized top-50 SVD of
:func:`jacnb.core.lowrank.top_singular` with its products taken from each operator. Both
operators give the same numbers (``max|diff|``); ``tests/core/test_lowrank_curvlinops.py``
checks the spectra and the information / nuisance split to a tight tolerance. This is a
benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch


def _best(f: Callable[[], Any], reps: int = 3) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str] | None = None) -> None:
    import curvlinops

    from jacnb.core.lowrank import ParameterJacobian, top_singular
    from jacnb.core.models import OneHiddenLayer

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, d, k_out, m = args.n, 784, 10, 95
    torch.manual_seed(0)
    model = OneHiddenLayer(d, args.hidden, k_out).eval()
    x = torch.randn(n, d)
    params = [p for p in model.parameters() if p.requires_grad]
    data = [(x[i : i + 512], torch.zeros(len(x[i : i + 512]))) for i in range(0, n, 512)]
    ours = ParameterJacobian(model, x, chunk_size=512)
    jac = curvlinops.JacobianLinearOperator(model, params, data, check_deterministic=False)
    jac_t = jac.adjoint()
    v, u = torch.randn(ours.p, m), torch.randn(n * k_out, m)
    print(f"n={n} p={ours.p} nK={n * k_out} block={m} threads={args.threads}")
    for name, a, b in (
        ("J V  ", lambda: ours.matmat(v), lambda: jac @ v),
        ("J^T U", lambda: ours.rmatmat(u), lambda: jac_t @ u),
    ):
        t_a, ra = _best(a)
        t_b, rb = _best(b)
        diff = float((ra - rb).abs().max())
        print(f"{name}: jacnb {t_a:.3f} s  curvlinops {t_b:.3f} s  max|diff| {diff:.1e}")

    class Curvlinops:
        """The operator interface top_singular uses, products by curvlinops."""

        n, K, p, x = ours.n, ours.K, ours.p, ours.x

        def matmat(self, a: torch.Tensor) -> torch.Tensor:
            return jac @ a.to(x.dtype)

        def rmatmat(self, a: torch.Tensor) -> torch.Tensor:
            return jac_t @ a.to(x.dtype)

    t_a, sa = _best(lambda: top_singular(ours, 50, "randomized"), 1)
    t_b, sb = _best(lambda: top_singular(Curvlinops(), 50, "randomized"), 1)
    rel = float(((sa.s - sb.s).abs() / sa.s).max())
    print(f"randomized top-50: jacnb {t_a:.2f} s  curvlinops {t_b:.2f} s  max rel diff {rel:.1e}")


if __name__ == "__main__":
    main()
