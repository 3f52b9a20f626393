"""Cost of one SGD training step with each regularizer (Sokolic et al. 2017, Sec. VI-D, Table VI).

For the MNIST conv net of Table II and a 784-wide fully connected net (depth 3), one full training
step -- forward, cross-entropy, ``+ lam * regularizer``, backward, ``optimizer.step()`` -- is timed
for: no regularizer (the denominator of every ratio), weight decay, the exact Jacobian regularizer
``R_F`` of eq. (49) with both Jacobian strategies (``class_loop``: C backward passes; ``vmap``: one
batched backward), the random-projection estimator of ``R_F`` with 1 and 4 projections, and the
per-layer regularizer of eq. (52).

Run::

    python -m benchmarks.regularizer_cost                 # CPU or CUDA, ~3 min on 2 CPU cores
    python -m benchmarks.regularizer_cost --quick         # ~30 s smoke run
    python -m benchmarks.regularizer_cost --device cuda --json out.json

It also checks that the projection estimator agrees with the exact ``R_F`` in expectation (mean
over many draws vs exact value, z-score). This is a benchmark, not a test: nothing is asserted,
the targets are printed next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from jacnb.core.jacobian import auto_strategy, frobenius_sq, projection_standard_error
from jacnb.core.models import fully_connected, mnist_convnet
from jacnb.core.train import pick_device
from jacnb.lab.timing import (
    default_threads,
    load_note,
    regularizer_steps,
    step_regularizer,
    sync,
    time_interleaved,
)

#: ``reg(model, x) -> scalar``; ``None`` is the plain step.
RegFn = Callable[[nn.Module, Tensor], Tensor]

NETS: dict[str, Callable[[], nn.Module]] = {
    "mnist_convnet": mnist_convnet,
    "fc784x3": lambda: fully_connected(784, 10, depth=3),
}

#: Row labels, in print order. "none" is the plain step (the ratio's denominator).
REGULARIZERS = (
    "none",
    "weight_decay",
    "exact_class_loop",
    "exact_vmap",
    "naive_class_loop",
    "projection_1",
    "projection_4",
    "per_layer",
)

COLUMNS = ["net", "regularizer", "device", "sec_per_step", "ratio_to_plain", "peak_mem_mb"]


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def naive_class_loop(model: nn.Module, x: Tensor) -> Tensor:
    """The reference the exact rows must not lose to: eq. (49) written the plain way, its own
    forward pass and one ``autograd.grad`` per class (all C of them, softmax output)."""
    xg = x.detach().requires_grad_(True)
    f = torch.softmax(model(xg), dim=-1)
    total = x.new_zeros(())
    for k in range(f.shape[1]):
        (g,) = torch.autograd.grad(f[:, k].sum(), xg, create_graph=True)
        total = total + g.pow(2).sum()
    return total / x.shape[0]


def row_regularizer(name: str) -> RegFn | None:
    """The regularizer ``reg(model, x) -> scalar`` behind a row label of :data:`REGULARIZERS`:
    :func:`naive_class_loop` for ``"naive_class_loop"``, else
    :func:`jacnb.lab.timing.step_regularizer` (the rows the timing chapter shares)."""
    if name == "naive_class_loop":
        return naive_class_loop
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; valid: {list(REGULARIZERS)}")
    return step_regularizer(name)


def make_batch(
    batch: int, device: torch.device, seed: int = 0, n_classes: int = 10
) -> tuple[Tensor, Tensor]:
    """Seeded random MNIST-shaped inputs ``[batch, 1, 28, 28]`` in [0, 1) and random labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 28, 28, generator=gen)
    y = torch.randint(n_classes, (batch,), generator=gen)
    return x.to(device), y.to(device)


def peak_memory_mb(step: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call of ``step`` in MiB: ``torch.cuda.max_memory_allocated`` on CUDA.

    The figure covers everything allocated on the device (model, optimizer state, batch and the
    step's activations and autograd graphs). NaN on CPU: the process's peak RSS (``VmHWM``) does
    not see a step's tensors once the C allocator reuses memory it already holds, so it reads
    close to zero for most rows and is not reported.
    """
    if device.type != "cuda":
        return math.nan
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


# ---------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------


def benchmark(
    net: str,
    device: torch.device | str = "cpu",
    batch: int = 128,
    repeats: int = 10,
    warmup: int = 2,
    rounds: int = 2,
    regularizers: tuple[str, ...] = REGULARIZERS,
    lam: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Median seconds per training step of ``net`` with every regularizer, and ratio to plain.

    Every regularizer gets its own copy of the same initial model and its own optimizer. To
    spread slow drifts of the machine (thermal, other processes) evenly over the rows, the
    ``repeats`` timed steps are split into ``rounds`` blocks that visit the regularizers in turn;
    the median is over all ``repeats`` steps. ``ratio_to_plain`` divides by the ``"none"`` row of
    the same call (NaN if ``"none"`` is not among ``regularizers``). Columns: :data:`COLUMNS`.
    """
    device = pick_device(device)
    torch.manual_seed(seed)
    base = NETS[net]().to(device)
    x, y = make_batch(batch, device, seed)
    steps = regularizer_steps(base, {name: row_regularizer(name) for name in regularizers}, x, y,
                              lam=lam)
    times = time_interleaved(steps, device, repeats=repeats, warmup=warmup, rounds=rounds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    peaks = {name: peak_memory_mb(step, device) for name, step in steps.items()}
    plain = medians.get("none", math.nan)
    rows = [
        {
            "net": net,
            "regularizer": name,
            "device": device.type,
            "sec_per_step": medians[name],
            "ratio_to_plain": medians[name] / plain,
            "peak_mem_mb": peaks[name],
        }
        for name in regularizers
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def target(regularizer: str, device: str) -> str:
    """The target ratio stated for a row (``""`` where there is none)."""
    if regularizer == "projection_1":
        return "<= 2.5x"
    if regularizer.startswith("exact"):
        return "< 10x (Table VI, Titan X)" if device == "cuda" else "<= 12x (CPU)"
    return ""


def meets_target(regularizer: str, device: str, ratio: float) -> str:
    """``"yes"``/``"NO"`` for rows with a target, ``""`` otherwise."""
    if regularizer == "projection_1":
        return "yes" if ratio <= 2.5 else "NO"
    if regularizer.startswith("exact"):
        ok = ratio < 10.0 if device == "cuda" else ratio <= 12.0
        return "yes" if ok else "NO"
    return ""


def with_targets(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus the columns ``target`` and ``meets`` for printing."""
    out = df.copy()
    out["target"] = [target(r, d) for r, d in zip(out.regularizer, out.device, strict=True)]
    out["meets"] = [
        meets_target(r, d, q)
        for r, d, q in zip(out.regularizer, out.device, out.ratio_to_plain, strict=True)
    ]
    return out


# ---------------------------------------------------------------------------------------------
# Exact vs projection: agreement in expectation
# ---------------------------------------------------------------------------------------------


@dataclass
class Agreement:
    """Exact ``R_F`` on a fixed batch vs the mean of ``draws`` projection estimates."""

    net: str
    exact: float
    projection_mean: float
    standard_error: float
    z: float
    draws: int
    n_proj: int


def projection_agreement(
    net: str,
    device: torch.device | str = "cpu",
    batch: int = 128,
    draws: int = 500,
    n_proj: int = 1,
    seed: int = 0,
) -> Agreement:
    """Exact ``R_F`` (eq. 49) vs the mean of ``draws`` projection estimates on the same batch.

    The estimator is unbiased, so ``z = (mean - exact) / SE`` should be a standard normal draw
    (|z| < 3 essentially always). Float32: the SE (relative ~1e-3) is far above rounding.
    """
    device = pick_device(device)
    torch.manual_seed(seed)
    model = NETS[net]().to(device)
    x, _ = make_batch(batch, device, seed)
    exact = float(frobenius_sq(model, x, method="exact").mean().detach())
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    draws_list = []
    for _ in range(draws):
        r = frobenius_sq(model, x, method="projection", n_proj=n_proj, generator=gen).mean()
        draws_list.append(float(r.detach()))
    estimates = torch.tensor(draws_list, dtype=torch.float64)
    mean = float(estimates.mean())
    se = projection_standard_error(estimates)
    return Agreement(net, exact, mean, se, (mean - exact) / se, draws, n_proj)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.regularizer_cost", description=__doc__.splitlines()[0]
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if any")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=None, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per row")
    p.add_argument("--rounds", type=int, default=None, help="interleaved blocks of repeats")
    p.add_argument("--draws", type=int, default=None, help="projection draws, agreement check")
    p.add_argument("--agree-batch", type=int, default=32, help="batch of the agreement check")
    p.add_argument("--threads", type=int, default=default_threads(), help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="~30 s smoke run")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run both nets, print the table, the targets and the agreement check; return the table."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    repeats = args.repeats or (3 if args.quick else (30 if gpu else 15))
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else (5 if gpu else 2))
    rounds = args.rounds or (1 if args.quick else 3)
    draws = args.draws or (100 if args.quick else 500)
    name = torch.cuda.get_device_name(device) if gpu else f"cpu, {args.threads} threads"
    print(f"torch {torch.__version__}, device {device} ({name}), batch {args.batch}")
    print(f"{repeats} timed steps per row ({rounds} interleaved rounds) after {warmup} warm-up\n")

    note = load_note(args.threads)
    if note:
        print(note + "\n")
    t_start = time.perf_counter()
    tables = [
        benchmark(net, device, args.batch, repeats, warmup, rounds, seed=args.seed) for net in NETS
    ]
    df = pd.concat(tables, ignore_index=True)
    show = with_targets(df)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            show.to_string(
                index=False,
                formatters={
                    "sec_per_step": "{:.5f}".format,
                    "ratio_to_plain": "{:.2f}".format,
                    "peak_mem_mb": "{:.1f}".format,
                },
            )
        )
    mem_note = (
        "torch.cuda.max_memory_allocated during one step"
        if gpu
        else "n/a on CPU (peak RSS does not resolve one step; see peak_memory_mb)"
    )
    print(f"\npeak_mem_mb: {mem_note}.")
    print("Paper, Table VI (Titan X, Theano): MNIST conv net, exact R_F: 0.003 -> 0.030 s/batch")
    print("(10.0x); ImageNet ResNet-18, per-layer: 0.120 -> 0.190 s/batch (1.58x).\n")

    auto_rows = []
    for net, table in zip(NETS, tables, strict=True):
        med = dict(zip(table.regularizer, table.sec_per_step, strict=True))
        picked = auto_strategy(NETS[net]())
        faster = "class_loop" if med["exact_class_loop"] <= med["exact_vmap"] else "vmap"
        verdict = "the faster one" if picked == faster else f"slower; {faster} won here"
        auto_rows.append({"net": net, "auto_picks": picked, "measured_faster": faster})
        print(f"strategy='auto' on {net}: {picked} ({verdict})")
        if "naive_class_loop" in med:
            lib = med[f"exact_{picked}"] / med["naive_class_loop"]
            print(f"  exact R_F ({picked}) / plain loop over all C classes: {lib:.2f}")

    print(
        f"\nexact R_F vs projection estimator (n_proj=1, {draws} draws, one fixed batch of "
        f"{args.agree_batch}):"
    )
    agreements = [
        projection_agreement(net, device, args.agree_batch, draws, seed=args.seed) for net in NETS
    ]
    agree_df = pd.DataFrame([asdict(a) for a in agreements])
    print(agree_df.to_string(index=False, float_format="{:.6g}".format))
    print("(|z| < 3 expected: the estimator is unbiased)")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    note = load_note(args.threads)
    if note:
        print(note)

    if args.json:
        payload = {
            "torch": torch.__version__,
            "device": name,
            "threads": args.threads,
            "batch": args.batch,
            "repeats": repeats,
            "warmup": warmup,
            "rounds": rounds,
            "timings": show.to_dict(orient="records"),
            "auto_strategy": auto_rows,
            "agreement": agree_df.to_dict(orient="records"),
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {args.json}")
    return df


if __name__ == "__main__":
    main()
