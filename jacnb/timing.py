"""Cost of the Jacobian regularizers (Sokolic et al. 2017, Sec. VI-D, Table VI).

Table VI reports seconds per training batch without and with Jacobian regularization: the
exact regularizer of eq. (49) on the MNIST conv net of Table II (0.003 -> 0.030 s, 10x) and the
per-layer regularizer of eq. (52) on ResNet-18 at 128x128 (0.120 -> 0.190 s, 1.58x), on a
Titan X with Theano. :func:`table6_rows` times one full SGD step (forward, cross-entropy
``+ lam * R``, backward, update -- :func:`benchmarks.regularizer_cost.make_step`) for

* ``none`` (denominator of every ratio), ``weight_decay``,
* ``exact`` -- eq. (49), all C input gradients (MNIST net only: with C = 1000 classes on
  ImageNet it would need 1000 backward passes per step),
* ``projection_1``, ``projection_4`` -- the random-projection estimator of eq. (49),
* ``per_layer`` -- eq. (52),

with the timing code of ``benchmarks/regularizer_cost.py`` (:func:`time_step`: median over
repeated batches after warm-up, interleaved rounds; peak memory on CUDA only). Each row names its
device. :func:`fig4_cost` times Fig. 4's ``max_i ||J(x_i)||_2`` over a data set by the library's
batched method (:func:`jacnb.jacobian.max_spectral_norm`) and by a naive per-sample loop
(``torch.autograd.functional.jacobian`` + SVD), extrapolating the naive loop from a subset.
"""

from __future__ import annotations

import copy
import importlib
import math
import platform
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from jacnb import paper
from jacnb.jacobian import max_spectral_norm, network_output
from jacnb.models import fully_connected, mnist_convnet, preact_resnet18
from jacnb.results import REPO_ROOT, ResultStore, run_grid


def _regularizer_cost():
    """``benchmarks.regularizer_cost`` (the repository root is put on ``sys.path`` if needed,
    e.g. when a notebook runs with ``notebooks/`` as working directory)."""
    try:
        return importlib.import_module("benchmarks.regularizer_cost")
    except ModuleNotFoundError:
        sys.path.insert(0, str(REPO_ROOT))
        return importlib.import_module("benchmarks.regularizer_cost")


#: Table VI rows -> the row label of ``benchmarks.regularizer_cost.make_regularizer``.
REGULARIZERS = {
    "none": "none",
    "weight_decay": "weight_decay",
    "exact": "exact_class_loop",
    "projection_1": "projection_1",
    "projection_4": "projection_4",
    "per_layer": "per_layer",
}
LABELS = {
    "none": "no reg.",
    "weight_decay": "weight decay",
    "exact": "Jac. reg., exact (49)",
    "projection_1": "Jac. reg., projection (49), n_proj=1",
    "projection_4": "Jac. reg., projection (49), n_proj=4",
    "per_layer": "Jac. reg., per-layer (52)",
}
NETS = ("mnist_convnet", "resnet18")


def device_name(device: torch.device) -> str:
    """A device label for the rows: the GPU's name, or ``cpu (<n> threads, <machine>)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"


def _net_and_batch(
    net: str, batch: int, size: int, device: torch.device, seed: int
) -> tuple[nn.Module, Tensor, Tensor, tuple[str, ...]]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if net == "mnist_convnet":
        model, shape, classes = mnist_convnet(), (1, 28, 28), 10
        regs = tuple(REGULARIZERS)
    elif net == "resnet18":
        model, shape, classes = preact_resnet18(1000), (3, size, size), 1000
        regs = tuple(r for r in REGULARIZERS if r != "exact")
    else:
        raise ValueError(f"unknown net {net!r}; valid: {NETS}")
    x = torch.rand(batch, *shape, generator=gen)
    y = torch.randint(classes, (batch,), generator=gen)
    return model.to(device), x.to(device), y.to(device), regs


def table6_rows(
    net: str,
    device: torch.device | str = "cpu",
    batch: int = 128,
    size: int = 128,
    repeats: int = 10,
    warmup: int = 2,
    rounds: int = 2,
    lam: float = 0.1,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Median seconds per SGD step of ``net`` for every regularizer, and the ratio to ``none``.

    Random inputs of the net's shape (MNIST 1x28x28, 10 classes; ResNet-18 3 x size x size,
    1000 classes). Every regularizer gets its own copy of the same initial model; the
    ``repeats`` timed steps are split into ``rounds`` blocks visiting the regularizers in turn.
    """
    rc = _regularizer_cost()
    device = torch.device(device)
    base, x, y, regs = _net_and_batch(net, batch, size, device, seed)
    steps = {
        r: rc.make_step(copy.deepcopy(base), rc.make_regularizer(REGULARIZERS[r]), x, y, lam=lam)
        for r in regs
    }
    for step in steps.values():
        rc.time_step(step, device, repeats=0, warmup=warmup)
    times: dict[str, list[float]] = {r: [] for r in regs}
    rounds = max(1, min(rounds, repeats))
    for k in range(rounds):
        block = repeats // rounds + (1 if k < repeats % rounds else 0)
        for r, step in steps.items():
            times[r] += rc.time_step(step, device, repeats=block, warmup=0)
    med = {r: statistics.median(t) for r, t in times.items()}
    rows = []
    for r in regs:
        peak = rc.peak_memory_mb(steps[r], device)
        rows.append(
            {
                "net": net,
                "regularizer": r,
                "label": LABELS[r],
                "device": device_name(device),
                "batch": batch,
                "sec_per_batch": med[r],
                "ratio": med[r] / med["none"],
                "peak_mem_mb": None if math.isnan(peak) else peak,
                "repeats": repeats,
            }
        )
    return rows


def timing_configs(settings: Mapping[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """One store config per (net, device) at the profile's batch sizes."""
    out = []
    for net in NETS:
        resnet = net == "resnet18"
        out.append(
            {
                "experiment": "timing-table6",
                "profile": settings["profile"],
                "net": net,
                "device": device_name(device),
                "batch": settings["resnet_batch"] if resnet else settings["mnist_batch"],
                "size": settings["resnet_size"] if resnet else 28,
                "repeats": settings["repeats"],
                "warmup": settings["warmup"],
                "rounds": settings["rounds"],
                "torch": torch.__version__,
            }
        )
    return out


def run_timing(settings: Mapping[str, Any], store: ResultStore | None = None) -> pd.DataFrame:
    """Time every net on CPU, and on CUDA when present, through the result store; return the
    rows of *all* stored timing runs of this profile (GPU rows recorded elsewhere included)."""
    store = store or ResultStore()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))

    def run(c: Mapping[str, Any]) -> dict[str, Any]:
        dev = by_name[c["device"]]
        rows = table6_rows(
            c["net"], dev, c["batch"], c["size"], c["repeats"], c["warmup"], c["rounds"]
        )
        return {"rows": rows, "load": load_note(), "when": time.strftime("%Y-%m-%d %H:%M")}

    by_name = {device_name(d): d for d in devices}
    configs = [c for d in devices for c in timing_configs(settings, d)]
    run_grid(configs, run, store, desc="timing", progress=False)
    return stored_rows(settings["profile"], store)


def stored_rows(profile: str, store: ResultStore | None = None) -> pd.DataFrame:
    """All Table VI rows of ``profile`` in the store (every device that has recorded some)."""
    store = store or ResultStore()
    rows = []
    for rec in store.records("timing-table6"):
        if rec["config"].get("profile") != profile:
            continue
        for row in rec["result"]["rows"]:
            rows.append({**row, "load": rec["result"].get("load", "")})
    return pd.DataFrame(rows)


def load_note() -> str:
    """Other runnable tasks on this machine right now (see ``benchmarks.regularizer_cost``)."""
    note = _regularizer_cost()._load_note(torch.get_num_threads(), samples=5)
    return note or "machine not measurably loaded by other tasks"


def table6_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Our rows beside the paper's (Titan X, Theano) in one table, labelled by source."""
    ours = rows.assign(source="this book")[
        ["source", "device", "net", "label", "batch", "sec_per_batch", "ratio", "peak_mem_mb"]
    ]
    p = paper.table6()
    theirs = pd.DataFrame(
        {
            "source": "paper (Table VI)",
            "device": "Titan X (Theano)",
            "net": p["network"],
            "label": [
                "no reg." if r == "none" else f"Jac. reg., {f}"
                for r, f in zip(p.regularizer, p.jacobian_form, strict=True)
            ],
            "batch": None,
            "sec_per_batch": p["seconds_per_batch"],
            "ratio": [
                1.0 if r == "none" else q
                for r, q in zip(p.regularizer, p.increase_factor, strict=True)
            ],
            "peak_mem_mb": None,
        }
    )
    return pd.concat([ours, theirs], ignore_index=True)


def verdict_table6(rows: pd.DataFrame) -> list[str]:
    """Verdicts on "exact JR ~10x on MNIST, per-layer JR 1.58x on ImageNet ResNet-18"."""
    out = []
    for dev, sel in rows.groupby("device"):

        def ratio(net: str, reg: str, sel: pd.DataFrame = sel) -> float:
            r = sel[(sel.net == net) & (sel.regularizer == reg)]
            return float(r.ratio.iloc[0]) if len(r) else math.nan

        exact, per_layer = ratio("mnist_convnet", "exact"), ratio("resnet18", "per_layer")
        cheaper = per_layer < exact
        out.append(
            f"{dev}: exact (49) on the MNIST net costs {exact:.2f}x (paper 10x); per-layer (52) "
            f"on ResNet-18 costs {per_layer:.2f}x (paper 1.58x). The qualitative claim (per-layer "
            f"is far cheaper than exact) is {'reproduced' if cheaper else 'not reproduced'} on "
            "this device; the absolute factors depend on hardware and framework (the paper's are "
            "Theano on a Titan X), so the numbers are compared, not tested for equality."
        )
    return out


# ---------------------------------------------------------------------------------------------
# Fig. 4's max ||J(x)||_2 over a data set: library vs naive loop
# ---------------------------------------------------------------------------------------------


def naive_max_spectral_norm(model: nn.Module, x: Tensor) -> float:
    """``max_i ||J(x_i)||_2``, one sample at a time: full Jacobian + SVD (the naive way)."""
    best = 0.0
    for xi in x:
        jac = torch.autograd.functional.jacobian(
            lambda z: network_output(model, z[None]).squeeze(0), xi
        )
        best = max(best, float(torch.linalg.svdvals(jac.reshape(jac.shape[0], -1))[0]))
    return best


def fig4_cost(
    x: Tensor, naive_n: int, seed: int = 0, depth: int = 3, batch_size: int = 256
) -> dict[str, Any]:
    """Seconds for ``max ||J(x_i)||_2`` over all of ``x`` (a weight-normalized fully connected
    net of Fig. 4, width 784, ``depth`` layers): the library's batched method on all samples,
    the naive loop on the first ``naive_n`` and extrapolated linearly to ``len(x)``."""
    torch.manual_seed(seed)
    model = fully_connected(x[0].numel(), 10, depth=depth, weight_norm=True).eval()
    t0 = time.perf_counter()
    lib = max_spectral_norm(model, x, batch_size=batch_size)
    t_lib = time.perf_counter() - t0
    n = min(naive_n, len(x))
    t0 = time.perf_counter()
    naive = naive_max_spectral_norm(model, x[:n])
    t_naive = time.perf_counter() - t0
    lib_sub = max_spectral_norm(model, x[:n], batch_size=batch_size)
    return {
        "n": len(x),
        "library_seconds": t_lib,
        "naive_n": n,
        "naive_seconds_measured": t_naive,
        "naive_seconds_full": t_naive * len(x) / n,
        "extrapolated": n < len(x),
        "speedup": t_naive * len(x) / n / t_lib,
        "max_norm_library": lib,
        "agree_on_subset": math.isclose(lib_sub, naive, rel_tol=1e-4),
        "max_norm_subset_library": lib_sub,
        "max_norm_subset_naive": naive,
        "device": device_name(torch.device("cpu")),
    }


def run_fig4_cost(
    settings: Mapping[str, Any], x: Tensor, dataset: str, store: ResultStore | None = None
) -> dict[str, Any]:
    """:func:`fig4_cost` through the result store."""
    store = store or ResultStore()
    config = {
        "experiment": "timing-fig4",
        "profile": settings["profile"],
        "dataset": dataset,
        "n": int(len(x)),
        "naive_n": settings["naive_n"],
        "device": device_name(torch.device("cpu")),
    }
    result = store.get(config)
    if result is None:
        result = fig4_cost(x, settings["naive_n"], seed=settings["seeds"][0])
        store.put(config, result)
    return result
