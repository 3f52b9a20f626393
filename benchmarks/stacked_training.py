"""Seconds per epoch: the seeds of one configuration trained separately vs stacked.

The Fig. 3 / Fig. 4 grids (Sokolic et al. 2017, Sec. VI-A) train every seed of a configuration;
:func:`jacnb.core.stacked.train_stacked` trains ``S`` of them in one ``torch.func.vmap`` loop. This
script times one epoch both ways on the nets the profiles train, and prints the ratio
``separate / stacked`` (above 1: stacking is faster). ``jacnb.chapters.fully_connected`` stacks
only where
the profile's ``stack_seeds`` says so; this is the measurement behind that setting.

Rows (``--rows``):

* ``paper``: the paper's nets, 784 wide (MNIST), depth 2, 3, 4, batch 128, ``S = 5`` seeds;
  Fig. 3 with weight decay and with the exact ``R_F`` (eq. 49, as the paper profile trains), and
  Fig. 4's weight-normalized net (eq. 45) without a regularizer.
* ``cpu``: the ``cpu`` profile's Fig. 3 nets (784 wide, depth 2, 3, 4, batch 32, projection
  ``R_F``, 1000 training samples, mnist-10k's 2000 test samples), ``S = 2`` (its final runs: two
  seeds) and ``S = 8`` at depth 3 (its factor selection: 280 of 400 samples, 120 held out, four
  factors x two seeds; members may differ in ``lam``). Fig. 4 at ``cpu`` has a single seed, so
  there is nothing to stack.

An epoch is what a run does per epoch: ``n_train / batch`` SGD steps, then the accuracy on the
training set and on a test set (``eval_every = 1``, as the grids run); ``--n-train`` and
``--n-test`` set the sizes of the ``paper`` rows (defaults 640 and 1000 keep a CPU run short;
per-epoch time scales with them). Separate: ``S`` calls of :func:`jacnb.core.train.train` (one epoch
each, timed together). Stacked: one call of :func:`jacnb.core.stacked.train_stacked`. Each way is
warmed up once per row, then the two alternate ``--repeats`` times; the fastest epoch is
printed, in wall time and in process CPU time (on a CPU shared with other jobs the CPU time is
the steadier measure; use ``--threads 1`` there: two threads per op on a loaded 2-core machine
mostly wait for each other). ``--single`` also times the stacked code on one member at a time.
Inputs are seeded random MNIST-shaped tensors (timing does not depend on their values).

Run::

    python -m benchmarks.stacked_training --threads 1     # paper + cpu rows, ~4 min on 1 core
    python -m benchmarks.stacked_training --quick         # depth 2 rows only, ~1 min
    python -m benchmarks.stacked_training --device cuda --n-train 5000 --n-test 10000 \\
        --json stacked.json                               # the paper profile's sizes on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from math import nan

import pandas as pd
import torch
from torch import Tensor, nn

from jacnb.core.models import fully_connected
from jacnb.core.regularizers import regularizer_from_config
from jacnb.core.stacked import train_stacked
from jacnb.core.train import TrainConfig, pick_device, train
from jacnb.lab.timing import sync


@dataclass(frozen=True)
class Row:
    """One timed setting: ``S`` members of a ``depth``-layer, ``width``-wide net."""

    profile: str
    figure: str
    depth: int
    width: int
    batch: int
    members: int
    regularizer: str  # "none", "weight_decay", "exact", "projection"
    weight_norm: bool = False
    n_train: int | None = None  # training samples per member (None: --n-train)
    n_test: int | None = None  # samples of the per-epoch test pass (None: --n-test)


def rows(which: str, quick: bool = False) -> list[Row]:
    """The rows of ``--rows`` (``paper``, ``cpu`` or ``all``); ``quick``: depth 2 only."""
    out: list[Row] = []
    depths = (2,) if quick else (2, 3, 4)
    if which in ("paper", "all"):
        for d in depths:
            out += [
                Row("paper", "Fig. 3", d, 784, 128, 5, "weight_decay"),
                Row("paper", "Fig. 3", d, 784, 128, 5, "exact"),
                Row("paper", "Fig. 4", d, 784, 128, 5, "none", weight_norm=True),
            ]
    if which in ("cpu", "all"):
        for d in depths:
            out += [
                Row("cpu", "Fig. 3", d, 784, 32, 2, "weight_decay", n_train=1000, n_test=2000),
                Row("cpu", "Fig. 3", d, 784, 32, 2, "projection", n_train=1000, n_test=2000),
            ]
        if not quick:  # selection: 400 drawn, 30% held out (the validation pass)
            out.append(Row("cpu", "Fig. 3 select", 3, 784, 32, 8, "projection", False, 280, 120))
    return out


def _regularizer(name: str) -> object:
    if name in ("exact", "projection"):
        return regularizer_from_config({"regularizer": "jacobian", "jr_method": name, "n_proj": 1})
    return regularizer_from_config({"regularizer": name})


def _data(n: int, seed: int, n_classes: int = 10) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(n_classes, (n,), generator=gen)


def _models(row: Row) -> list[nn.Module]:
    out = []
    for seed in range(row.members):
        torch.manual_seed(seed)
        out.append(fully_connected(784, 10, row.depth, row.width, weight_norm=row.weight_norm))
    return out


def time_epoch(
    row: Row, device: torch.device, n_train: int, n_test: int, stacked: bool, single: bool = False
) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one epoch of all ``S`` members (fresh models), separately or
    stacked; ``cpu``: CPU time of this process (all its threads). ``single``: the stacked code
    once per member (stacks of one, to tell the functional implementation's own speed from the
    gain of stacking)."""
    lam = 0.0 if row.regularizer == "none" else 0.01
    reg = _regularizer(row.regularizer)
    configs = [
        TrainConfig(
            epochs=1, batch_size=row.batch, lr=0.01, lam=lam * (1 + s), seed=s, progress=False
        )
        for s in range(row.members)
    ]
    data = [tuple(t.to(device) for t in _data(n_train, s)) for s in range(row.members)]
    test = tuple(t.to(device) for t in _data(n_test, 999))
    models = [m.to(device) for m in _models(row)]
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    if stacked and single:
        for m, d, c in zip(models, data, configs, strict=True):
            train_stacked([m], [d], [c], reg, test, device=device)
    elif stacked:
        train_stacked(models, data, configs, reg, test, device=device)
    else:
        for m, (x, y), c in zip(models, data, configs, strict=True):
            train(m, x, y, c, reg, test[0], test[1], device=device)
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def benchmark(
    which: str = "all",
    device: torch.device | str | None = None,
    n_train_default: int = 640,
    n_test_default: int = 1000,
    repeats: int = 3,
    quick: bool = False,
    single: bool = False,
) -> pd.DataFrame:
    """Seconds per epoch, separate and stacked, and ``speedup = separate / stacked``.

    Per row and way, the fastest of ``repeats`` epochs (the least disturbed by other load), in
    wall time (``*_s``, ``speedup``) and in process CPU time (``*_cpu_s``, ``speedup_cpu``; on
    a shared CPU less sensitive to other processes than wall time, meaningless on CUDA). Rows
    without their own sizes (``paper``) use ``n_train_default`` and ``n_test_default``.
    """
    device = pick_device(device)
    out = []
    for row in rows(which, quick):
        n_train, n_test = row.n_train or n_train_default, row.n_test or n_test_default
        for stacked in (False, True):  # warm-up (allocator, vmap, kernels)
            time_epoch(row, device, min(n_train, 4 * row.batch), min(n_test, 256), stacked)
        times: dict[str, list[tuple[float, float]]] = {"sep": [], "stk": [], "one": []}
        for _ in range(repeats):  # interleaved, so that drifts of the load hit both ways
            times["sep"].append(time_epoch(row, device, n_train, n_test, stacked=False))
            times["stk"].append(time_epoch(row, device, n_train, n_test, stacked=True))
            if single:
                times["one"].append(time_epoch(row, device, n_train, n_test, True, single=True))
        best = {
            k: tuple(map(min, zip(*v, strict=True))) if v else (nan, nan) for k, v in times.items()
        }
        (s, s_cpu), (t, t_cpu), (o, _) = best["sep"], best["stk"], best["one"]
        rec = {
            **asdict(row),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "n_train": n_train,
            "n_test": n_test,
            "separate_s": s,
            "stacked_s": t,
            "speedup": s / t,
            "separate_cpu_s": s_cpu,
            "stacked_cpu_s": t_cpu,
            "speedup_cpu": s_cpu / t_cpu,
            "stacks_of_one_s": o,
        }
        print(
            f"{row.profile:5s} {row.figure:13s} L={row.depth} M={row.width} B={row.batch} "
            f"S={row.members} {row.regularizer:12s}{' WN' if row.weight_norm else '   '} "
            f"wall: separate {s:7.3f} s stacked {t:7.3f} s x{s / t:.2f} | "
            f"cpu: {s_cpu:7.3f} s {t_cpu:7.3f} s x{s_cpu / t_cpu:.2f}"
            + (f" | stacks of one {o:7.3f} s" if single else ""),
            flush=True,
        )
        out.append(rec)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", choices=("paper", "cpu", "all"), default="all")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: CUDA if available)")
    ap.add_argument(
        "--n-train", type=int, default=640, help="paper rows: training samples per member"
    )
    ap.add_argument(
        "--n-test", type=int, default=1000, help="paper rows: test samples (accuracy per epoch)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--quick", action="store_true", help="depth 2 rows only")
    ap.add_argument(
        "--single", action="store_true", help="also time the stacked code on one member at a time"
    )
    ap.add_argument("--json", default=None, help="write the table as JSON records here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load {load:.1f}; paper rows n_train {args.n_train}, n_test {args.n_test}; "
        f"repeats {args.repeats}",
        flush=True,
    )
    frame = benchmark(
        args.rows, device, args.n_train, args.n_test, args.repeats, args.quick, args.single
    )
    print(frame.groupby(["profile", "figure"])[["speedup", "speedup_cpu"]].agg(["min", "max"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(frame.to_dict(orient="records"), fh, indent=1)


if __name__ == "__main__":
    main()
