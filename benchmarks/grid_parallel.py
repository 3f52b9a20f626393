"""Wall time of one small grid trained in-process vs through the local process pool.

:func:`jacnb.lab.store.run_grid` trains a grid in this process (``executor=None``, torch using every
core) or in a :class:`~jacnb.lab.store.LocalPool` of worker processes (``executor=LocalPool(W)``,
each worker with ``cores // W`` torch threads). This script trains the same grids both ways, in
one run, and prints the wall times and their ratio ``in-process / pool`` (above 1: the pool is
faster). It is the measurement behind the README's advice on ``--executor local``.

Grids (one run per seed, ``--runs`` seeds each): the Fig. 3 fully connected net (784 -> 784 ->
784 -> 10, ``fully_connected(784, 10, depth=3)``, Sokolic et al. 2017 Sec. VI-A) and the MNIST
conv net of Table II (``mnist_convnet()``, Sec. VI-B1), both trained with the projection
estimate of ``R_F`` (eq. 49, one random projection per sample, ``lam=0.01``) by
:func:`jacnb.core.train.train`: one epoch of ``--steps`` SGD steps of batch ``--batch`` on seeded
random inputs of MNIST shape (``[n, 1, 28, 28]`` in ``[0, 1]``, random labels; time does not
depend on the values), then the training accuracy, as a grid run does. The pool is started
first and its start (spawn + importing torch) is printed apart: a process pays it once, since
:class:`~jacnb.lab.store.LocalPool` keeps its workers for the next grids; the last line gives the
ratio with and without it.

Measured once on the 2-core development machine while other jobs loaded it (load average
4.6-5.9; see the README): in-process 900 s, pool 131 s + 10 s start. With 2 threads per op on
oversubscribed cores the in-process runs stall (76 s per FC run vs 36.5 s in the pool), so that
ratio mostly measures thread contention; on the idle machine the same comparison gave
1.15-1.18x. ``--in-process-threads 1`` separates the two effects.

Run::

    python -m benchmarks.grid_parallel                 # 4 runs per grid, 150 steps of 32
    python -m benchmarks.grid_parallel --workers 8 --runs 16
    python -m benchmarks.grid_parallel --quick         # smoke: 2 runs of 3 steps
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from jacnb.core.models import fully_connected, mnist_convnet
from jacnb.core.regularizers import make_regularizer
from jacnb.core.train import TrainConfig, train
from jacnb.lab.store import LocalPool, ResultStore, default_threads, run_grid

NETS = {"fc784x3": lambda: fully_connected(784, 10, depth=3), "mnist_conv": mnist_convnet}


def grid_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One grid run: train ``config["net"]`` for ``config["steps"]`` steps (see the docstring)."""
    n = config["steps"] * config["batch"]
    gen = torch.Generator().manual_seed(1000 + config["seed"])
    x = torch.rand(n, 1, 28, 28, generator=gen)
    y = torch.randint(10, (n,), generator=gen)
    torch.manual_seed(config["seed"])
    model = NETS[config["net"]]()
    reg = make_regularizer("jacobian", method="projection", n_proj=1)
    cfg = TrainConfig(
        epochs=1, batch_size=config["batch"], lr=0.01, lam=0.01, seed=config["seed"], progress=False
    )
    t0 = time.perf_counter()
    res = train(model, x, y, cfg, regularizer=reg, device="cpu")
    return {
        "seconds": time.perf_counter() - t0,
        "final_loss": res["final_loss"],
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def configs(net: str, runs: int, steps: int, batch: int) -> list[dict[str, Any]]:
    return [
        {"experiment": f"bench-{net}", "net": net, "seed": s, "steps": steps, "batch": batch}
        for s in range(runs)
    ]


def _warm(_: int) -> int:
    return os.getpid()


def start_pool(local: LocalPool) -> float:
    """Seconds to start the pool's processes (spawn, import torch and jacnb) by one task each."""
    t0 = time.perf_counter()
    list(local.executor().map(_warm, range(local.n_workers)))
    return time.perf_counter() - t0


def measure(
    net: str, runs: int, steps: int, batch: int, local: LocalPool, root: str, threads: int
) -> dict:
    """Train the grid in-process (``threads`` torch threads) and through the (started) pool
    ``local``; wall times and their ratio."""
    grid = configs(net, runs, steps, batch)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    seq = run_grid(grid, grid_run, ResultStore(os.path.join(root, "seq")), progress=False)
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = ResultStore(os.path.join(root, "pool"))
    pool = run_grid(grid, grid_run, store, progress=False, executor=local, poll=0.2)
    t_pool = time.perf_counter() - t0
    a, b = seq.set_index("seed")["final_loss"], pool.set_index("seed")["final_loss"]
    rel = float(((a - b).abs() / a.abs()).max())
    return {
        "net": net,
        "runs": runs,
        "steps": steps,
        "batch": batch,
        "workers": local.n_workers,
        "threads_in_process": int(seq["threads"].iloc[0]),
        "threads_per_worker": int(pool["threads"].iloc[0]),
        "in_process_s": t_seq,
        "pool_s": t_pool,
        "ratio": t_seq / t_pool,
        "mean_run_s_in_process": float(seq["seconds"].mean()),
        "mean_run_s_pool": float(pool["seconds"].mean()),
        "loss_max_rel_diff": rel,  # thread counts differ: sums in another order
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4, help="runs (seeds) per grid")
    p.add_argument("--steps", type=int, default=150, help="SGD steps per run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="pool size (default: cores)")
    p.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    p.add_argument(
        "--in-process-threads",
        type=int,
        default=None,
        help="torch threads of the in-process grid (default: all cores); 1 separates the gain "
        "of the pool from the cost of intra-op threads on an oversubscribed machine",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 2 runs of 3 steps")
    p.add_argument("--json", default=None, help="write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.steps = 2, 3
    local = LocalPool(args.workers)
    print(
        f"cores {default_threads()}, load average {os.getloadavg()[0]:.2f} (1 min); "
        f"{args.runs} runs x {args.steps} steps of batch {args.batch} per grid; "
        f"pool of {local.n_workers} x {local.threads_per_worker} threads"
    )
    rows = []
    try:
        start = start_pool(local)
        print(f"pool start (spawn + imports, paid once per process): {start:.1f} s")
        with tempfile.TemporaryDirectory() as root:
            for net in args.nets:
                threads = args.in_process_threads or default_threads()
                row = measure(net, args.runs, args.steps, args.batch, local, root, threads)
                rows.append(row)
                print(
                    f"{net:>11}: in-process {row['in_process_s']:7.1f} s "
                    f"({row['threads_in_process']} threads) | pool {row['pool_s']:7.1f} s | "
                    f"ratio in-process/pool {row['ratio']:.2f} | per run "
                    f"{row['mean_run_s_in_process']:.1f} s vs {row['mean_run_s_pool']:.1f} s | "
                    f"loss rel. diff {row['loss_max_rel_diff']:.1e}"
                )
    finally:
        local.shutdown()
    seq = sum(r["in_process_s"] for r in rows)
    par = sum(r["pool_s"] for r in rows)
    print(
        f"all grids: in-process {seq:.1f} s, pool {par:.1f} s (+ {start:.1f} s start): ratio "
        f"{seq / par:.2f} with a started pool, {seq / (par + start):.2f} counting its start"
    )
    for row in rows:
        row["pool_start_s"] = start
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
