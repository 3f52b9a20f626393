"""Time to the top-k (default 50) singular values / left vectors of the parameter Jacobian
``𝒥 ∈ R^{nK x p}`` (Oymak et al. 2019), every method of :mod:`jacnb.core.lowrank` compared.

Run::

    python -m benchmarks.lowrank_spectrum                  # ~10 min on 2 CPU cores
    python -m benchmarks.lowrank_spectrum --quick          # MLP only, ~30 s
    python -m benchmarks.lowrank_spectrum --device cuda --json out.json

Rows (each on the same net and inputs):

* ``gram[jacobian]+eigh`` -- per-sample Jacobians by ``vmap(jacrev)`` in chunks, Gram by block
  products, then ``eigh`` (float64): the whole spectrum; the reference of the others.
* ``gram[jvp]+eigh`` -- the Gram column block by column block as ``𝒥(𝒥_cᵀ)`` (batched jvp).
* ``lanczos`` -- ARPACK ``eigsh`` on ``u ↦ 𝒥𝒥ᵀu`` (one jvp + one vjp per step).
* ``randomized`` -- randomized SVD, ``k + k // 2 + 20`` columns (the default), 4 power
  iterations (block jvp / vjp). ``subspace`` is the cosine of the *largest* principal angle to
  the reference subspace: at initialization the spectrum is flat around the k-th value, so this
  worst direction can be far off while the mean squared cosine stays close to 1.

Nets: the chapter's one-hidden-layer MLP on MNIST-shaped inputs, and the chapter's ResNet20
without batch norm (their CIFAR-10 net, ~0.27M parameters) on CIFAR-shaped inputs. Inputs are
seeded Gaussian noise: the timings do not depend on the pixel values. ``err`` is the largest
relative error of the top-k singular values against ``gram[jacobian]+eigh``; ``subspace`` the
smallest cosine of the principal angles between the two top-k left singular subspaces.

Anchor (not our hardware): nngeometry took 137 s for the Gram of a ResNet-18 on 100 CIFAR
images on a Colab GPU. This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import torch

from jacnb.core.lowrank import ParameterJacobian, Spectrum, top_singular
from jacnb.core.models import mlp, resnet20
from jacnb.lab.timing import time_once

ANCHOR = "nngeometry: ResNet-18 Gram on 100 CIFAR-10 images, 137 s on a Colab GPU"


def _exact_from(gram: torch.Tensor, k: int) -> Spectrum:
    evals, evecs = torch.linalg.eigh(gram)
    order = torch.argsort(evals, descending=True)[:k]
    return Spectrum(evals[order].clamp_min(0).sqrt(), evecs[:, order], None, "exact")


def bench_net(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    k: int,
    methods: list[str],
    chunk: int,
    col_chunk: int | None,
) -> list[dict]:
    device = x.device
    jac = ParameterJacobian(model.to(device).eval(), x, chunk_size=chunk, col_chunk=col_chunk)
    rows, ref = [], None
    for method in methods:
        if method.startswith("gram"):
            gm = method[method.index("[") + 1 : method.index("]")]
            spec, sec = time_once(lambda gm=gm: _exact_from(jac.gram(gm), k), device)
        else:
            spec, sec = time_once(lambda m=method: top_singular(jac, k, m, n_iter=4), device)
        if ref is None:
            ref = spec
        err = float(((spec.s - ref.s).abs() / ref.s).max())
        cos = float(torch.linalg.svdvals(spec.u.T.double() @ ref.u.double()).min())
        rows.append(
            {
                "net": name,
                "n": jac.n,
                "nK": jac.n * jac.K,
                "p": jac.p,
                "k": k,
                "method": method,
                "seconds": round(sec, 3),
                "err": err,
                "subspace": cos,
                "device": str(device),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--n-mlp", type=int, default=300, help="samples for the MLP")
    ap.add_argument("--width", type=int, default=128, help="MLP hidden width")
    ap.add_argument(
        "--n-resnet",
        type=int,
        default=None,
        help="samples for ResNet20 (0: skip; default 100 on CUDA, 20 on CPU)",
    )
    ap.add_argument(
        "--methods", nargs="*", default=["gram[jacobian]", "gram[jvp]", "lanczos", "randomized"]
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n_mlp, args.n_resnet, args.width = 100, 0, 64
    if "gram[jacobian]" not in args.methods:
        args.methods = ["gram[jacobian]", *args.methods]
    device = torch.device(args.device)
    if args.n_resnet is None:
        args.n_resnet = 100 if device.type == "cuda" else 20
    print(f"device={device}, threads={torch.get_num_threads()}, anchor: {ANCHOR}")
    gen = torch.Generator().manual_seed(0)
    rows = []
    torch.manual_seed(0)
    x = torch.randn(args.n_mlp, 1, 28, 28, generator=gen).to(device)
    rows += bench_net(
        f"mlp-784-{args.width}-10",
        mlp(784, 10, args.width, 0.5),
        x,
        args.k,
        args.methods,
        chunk=256,
        col_chunk=None,
    )
    if args.n_resnet:
        torch.manual_seed(0)
        x = torch.randn(args.n_resnet, 3, 32, 32, generator=gen).to(device)
        rows += bench_net(
            "resnet20-noBN", resnet20(10, 3, 0.1), x, args.k, args.methods, chunk=25, col_chunk=35
        )
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    print(f"anchor: {ANCHOR}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "anchor": ANCHOR}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
