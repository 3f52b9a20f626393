"""Cost of the Jacobian regularizers (Sokolic et al. 2017, Sec. VI-D, Table VI).

Notebook: ``notebooks/06_timing.ipynb``
(``from jacnb.chapters import timing as chapter``).

Table VI reports seconds per training batch without and with Jacobian regularization: the
exact regularizer of eq. (49) on the MNIST conv net of Table II and the per-layer regularizer of
eq. (52) on ResNet-18 at 128x128, on a Titan X with Theano (the figures are in
:func:`jacnb.lab.paper.table6`). :func:`table6_rows` times one full SGD step (forward,
cross-entropy ``+ lam * R``, backward, update -- :func:`jacnb.lab.timing.make_step`)
for

* ``none`` (denominator of every ratio), ``weight_decay``,
* ``exact_class_loop`` -- eq. (49), all C input gradients (MNIST net only: with C = 1000 classes on
  ImageNet it would need 1000 backward passes per step),
* ``projection_1``, ``projection_4`` -- the random-projection estimator of eq. (49),
* ``per_layer`` -- eq. (52),

with the step timers of :mod:`jacnb.lab.timing` (:func:`~jacnb.lab.timing.time_interleaved`:
median over repeated batches after warm-up, interleaved rounds), which
``benchmarks/regularizer_cost.py`` uses too. Each row names its device and the memory
one step needs (:func:`step_memory`: CUDA allocator statistics on a GPU, the profiler's
accounting of PyTorch's CPU allocator on a CPU). :func:`run_timing` goes through the result
store keyed by config + device, and :func:`stored_rows` returns the rows of *every* device that
has recorded a run at the profile, so rows timed on a GPU machine are shown next to CPU rows.

:func:`fig4_cost` times Fig. 4's ``max_i ||J(x_i)||_2`` over a data set by the library's batched
method (:func:`jacnb.core.jacobian.max_spectral_norm`) and by a naive per-sample loop
(``torch.autograd.functional.jacobian`` + SVD), extrapolating the naive loop from a subset.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from jacnb.core.jacobian import max_spectral_norm, network_output
from jacnb.core.models import fully_connected, mnist_convnet, preact_resnet18
from jacnb.lab import gates, gpu_check, paper
from jacnb.lab import settings as lab_settings
from jacnb.lab import timing as timers
from jacnb.lab.claims import claims_of
from jacnb.lab.dryrun import DryConfig
from jacnb.lab.settings import ABSENT
from jacnb.lab.store import ResultStore, run_grid
from jacnb.lab.timing import (
    STEP_REGULARIZERS,
    make_step,
    regularizer_steps,
    step_label,
    step_regularizer,
    time_interleaved,
)
from jacnb.lab.verdicts import Verdict

NAME = "06_timing"

#: Version of the stored Fig. 4 cost records; records of other versions are ignored.
SCHEMA = 3
#: Version of the stored Table VI records (4: rows keyed by
#: :data:`jacnb.lab.timing.STEP_REGULARIZERS`, i.e. :mod:`jacnb.core.regularizers`' names -- the
#: exact row is ``exact_class_loop``, no longer ``exact`` -- with labels derived on reading; the
#: Table VI runs stored under version 3 are re-timed).
TABLE6_SCHEMA = 4

#: Table VI's rows, in order: keys of :data:`jacnb.lab.timing.STEP_REGULARIZERS` (what each row
#: times and its label are there), the exact R_F of eq. (49) by one input-gradient pass per class.
REGULARIZERS: tuple[str, ...] = (
    "none",
    "weight_decay",
    "exact_class_loop",
    "projection_1",
    "projection_4",
    "per_layer",
)
EXACT = "exact_class_loop"
#: Row -> its arm in the registered claims (:mod:`jacnb.lab.claims`, whose arms name the
#: estimator of eq. (49) without its strategy, and one projection plainly ``projection``).
ARMS: dict[str, str] = {
    "none": "none",
    "weight_decay": "weight_decay",
    EXACT: "exact",
    "projection_1": "projection",
    "projection_4": "projection_4",
    "per_layer": "per_layer",
}
NETS = ("mnist_convnet", "mnist_fc", "resnet18")
NET_LABELS = {
    "mnist_convnet": "MNIST conv net (Table II), 1x28x28, 10 classes",
    "mnist_fc": "fully connected MNIST net (Fig. 3, 3 layers of width 784), 10 classes",
    "resnet18": "pre-activation ResNet-18 (Table V), 3x{size}x{size}, 1000 classes",
}
#: Table VI's rows (``paper.table6().dataset``) -> the net and regularizer of ours they match.
PAPER_ROWS = {"MNIST": ("mnist_convnet", EXACT), "ImageNet": ("resnet18", "per_layer")}
PAPER_SOURCE = "paper (Table VI): Titan X, Theano"
#: The net each registered claim of the page is judged on.
CLAIM_NETS = {
    "table6.exact_adds_cost": "mnist_convnet",
    "table6.per_layer_cheaper": "mnist_convnet",
    "table6.exact_cost_near_classes": "mnist_convnet",
    "table6.per_layer_resnet18_below_2x": "resnet18",
    "book.projection_fifth_of_cost": "mnist_fc",
}

MEMORY_METHODS = {
    "cuda": "peak of torch.cuda.memory_allocated during one step minus its value before the step "
    "(torch.cuda.max_memory_allocated - memory_allocated)",
    "cpu": "peak of the bytes held by tensors allocated during one step, minus the value before "
    "it, from the PyTorch profiler's accounting of its CPU allocator (profile_memory=True); "
    "library-internal scratch buffers (e.g. oneDNN's) are not included",
}


def device_name(device: torch.device) -> str:
    """A device label for the rows: the GPU's name, or ``cpu (<n> threads, <machine>)`` with the
    number of threads torch uses now."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'s' if n > 1 else ''}, {platform.machine()})"


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: leave it as it is)."""
    saved = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def devices() -> list[torch.device]:
    """The devices timed on this machine: the CPU always, CUDA when present."""
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def device_labels(settings: Mapping[str, Any]) -> list[str]:
    """The names the rows timed on this machine at ``settings`` get (CPU threads included)."""
    out = []
    for dev in devices():
        with cpu_threads(device_settings(settings, dev).get("threads")):
            out.append(device_name(dev))
    return out


def device_settings(settings: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """The profile's settings for rows timed on ``device``: the top-level values, overridden by
    the profile's ``settings[device.type]`` block where there is one (e.g. smaller ResNet batches
    for the CPU rows of the ``paper`` profile)."""
    out = {k: v for k, v in settings.items() if k not in ("cpu", "cuda")}
    out.update(settings.get(device.type, {}))
    return out


def _net_and_batch(
    net: str, batch: int, size: int, device: torch.device, seed: int
) -> tuple[nn.Module, Tensor, Tensor, tuple[str, ...]]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if net == "mnist_convnet":
        model, shape, classes = mnist_convnet(), (1, 28, 28), 10
        regs = tuple(REGULARIZERS)
    elif net == "mnist_fc":
        model, shape, classes = fully_connected(784, 10, depth=3), (1, 28, 28), 10
        regs = ("none", EXACT, "projection_1")
    elif net == "resnet18":
        model, shape, classes = preact_resnet18(1000), (3, size, size), 1000
        regs = tuple(r for r in REGULARIZERS if r != EXACT)
    else:
        raise ValueError(f"unknown net {net!r}; valid: {NETS}")
    x = torch.rand(batch, *shape, generator=gen)
    y = torch.randint(classes, (batch,), generator=gen)
    return model.to(device), x.to(device), y.to(device), regs


# ---------------------------------------------------------------------------------------------
# Memory of one step
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to ``/dev/null`` for the duration: the profiler's native library
    logs every start/stop there (and a notebook would show it)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cpu_step_peak_bytes(step: Callable[[], object]) -> int:
    """Peak bytes allocated by one call of ``step`` on the CPU above what was held before it.

    The profiler counts only blocks allocated while it runs, so two steps are profiled and the
    second is measured: the blocks the second step frees (the first step's gradients) were then
    allocated under the profiler and are accounted for, as on CUDA.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        with _quiet_native_stderr():
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                step()
                with record_function("jacnb_measured_step"):
                    step()
            prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    finally:
        os.unlink(path)
    mark = next(e for e in events if e.get("name") == "jacnb_measured_step")
    t0, t1 = mark["ts"], mark["ts"] + mark["dur"]
    mem = sorted(
        (
            e
            for e in events
            if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0
        ),
        key=lambda e: e["ts"],
    )
    before = [e["args"]["Total Allocated"] for e in mem if e["ts"] < t0]
    during = [e["args"] for e in mem if t0 <= e["ts"] <= t1]
    if not during:
        return 0
    base = before[-1] if before else during[0]["Total Allocated"] - during[0]["Bytes"]
    return max(0, max(a["Total Allocated"] for a in during) - base)


def step_memory(step: Callable[[], object], device: torch.device) -> dict[str, float | None]:
    """Memory of one step in MiB: ``step_mem_mb`` -- the peak above what was allocated before the
    step (activations, autograd graphs, gradients, temporaries), on every device (see
    :data:`MEMORY_METHODS`); ``cuda_max_allocated_mb`` -- the whole CUDA peak including model,
    optimizer state and batch (``None`` on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"step_mem_mb": (peak - before) / 2**20, "cuda_max_allocated_mb": peak / 2**20}
    return {"step_mem_mb": _cpu_step_peak_bytes(step) / 2**20, "cuda_max_allocated_mb": None}


# ---------------------------------------------------------------------------------------------
# Table VI
# ---------------------------------------------------------------------------------------------


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
    memory: bool = True,
    repetitions: int = 1,
) -> list[dict[str, Any]]:
    """Median seconds per SGD step of ``net`` for every regularizer, and the ratio to ``none``,
    per repetition.

    Random inputs of the net's shape (MNIST 1x28x28, 10 classes; ResNet-18 3 x size x size,
    1000 classes). Every regularizer gets its own copy of the same initial model; after
    ``warmup`` untimed steps each, the ``repeats`` timed steps are split into ``rounds`` blocks
    visiting the regularizers in turn (slow drifts of a shared machine then hit all rows alike).
    This is done ``repetitions`` times; each repetition is one "seed" of the cost claims (its
    median the statistic, ``steps`` = ``repeats`` timed steps). With ``memory``, one more step
    per regularizer measures its memory (:func:`step_memory`), copied to every repetition.
    """
    device = torch.device(device)
    base, x, y, regs = _net_and_batch(net, batch, size, device, seed)
    steps = regularizer_steps(
        base, {r: step_regularizer(r) for r in regs}, x, y, lam=lam
    )
    mems = {
        r: step_memory(steps[r], device)
        if memory
        else {"step_mem_mb": None, "cuda_max_allocated_mb": None}
        for r in regs
    }
    rows = []
    for rep in range(int(repetitions)):
        times = time_interleaved(
            steps, device, repeats=repeats, warmup=warmup if rep == 0 else 0, rounds=rounds
        )
        rows += _rep_rows(net, regs, times, mems, device, batch, size, rep, repeats, warmup, rounds)
    return rows


def _rep_rows(
    net: str,
    regs: tuple[str, ...],
    times: Mapping[str, list[float]],
    mems: Mapping[str, Mapping[str, float | None]],
    device: torch.device,
    batch: int,
    size: int,
    rep: int,
    repeats: int,
    warmup: int,
    rounds: int,
) -> list[dict[str, Any]]:
    med = {r: statistics.median(t) for r, t in times.items()}
    rows = []
    for r in regs:
        mem = mems[r]
        rows.append(
            {
                "net": net,
                "repetition": rep,
                "regularizer": r,
                "device": device_name(device),
                "device_type": device.type,
                "batch": batch,
                "input": f"3x{size}x{size}" if net == "resnet18" else "1x28x28",
                "sec_per_batch": med[r],
                "sec_min": min(times[r]),
                "sec_max": max(times[r]),
                "ratio": med[r] / med["none"],
                **mem,
                "steps": repeats,
                "repeats": repeats,
                "warmup": warmup,
                "rounds": rounds,
            }
        )
    return rows


def timing_configs(settings: Mapping[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """One store config per (net, device) at the profile's batch sizes for that device."""
    s = device_settings(settings, device)
    out = []
    for net in NETS:
        resnet = net == "resnet18"
        out.append(
            {
                "experiment": "timing-table6",
                "schema": TABLE6_SCHEMA,
                "profile": settings["profile"],
                "net": net,
                "device": device_name(device),
                "device_type": device.type,
                "threads": s.get("threads") if device.type == "cpu" else None,
                "batch": s["resnet_batch"] if resnet else s["mnist_batch"],
                "size": s["resnet_size"] if resnet else 28,
                "repeats": s["resnet_repeats"] if resnet else s["repeats"],
                "repetitions": s["resnet_repetitions"] if resnet else s["repetitions"],
                "warmup": s["warmup"],
                "rounds": min(s["rounds"], s["resnet_repeats"] if resnet else s["repeats"]),
                "torch": torch.__version__,
            }
        )
    return out


@dataclass(frozen=True)
class Settings:
    """Table VI at the ``cpu`` profile (:data:`OVERRIDES`: the other profiles' changes).

    The top-level values apply to every device; a ``cpu``/``cuda`` block (:func:`device_settings`)
    overrides them for the rows timed on that device. ``mnist_batch``/``resnet_batch``: training
    batch of the MNIST nets (conv net of Table II, fully connected net of Fig. 3) / ResNet-18
    (input ``3 x resnet_size^2``); ``repeats`` timed steps per regularizer and repetition after
    ``warmup`` untimed ones, in ``rounds`` interleaved blocks (rounds = repeats: one step per
    regularizer in turn); ``repetitions``: how often that is done -- each repetition is one
    "seed" of the cost claims (>= 3 repetitions of >= 20 timed steps decide them);
    ``resnet_repeats``/``resnet_repetitions``: the same for ResNet-18 (Table VI's per-layer row;
    its claim needs >= 3 repetitions of >= 5 timed steps); ``cpu``: ResNet-18 at batch 8 on
    32x32 inputs (0.7 s per plain step, 2.1 s per per-layer step, one thread on a loaded 2-core
    machine, 2026-12-07) so that 3 repetitions fit the page's time. ``threads``: torch CPU
    threads (``None``: torch's default); one thread at smoke/cpu: on a shared 2-core machine a
    2-thread step stalls whenever another process takes a core. ``cpu``: MNIST batch 32 and
    ResNet-18 at 32x32 keep the page within its share of the 45-minute cpu book (the ratios,
    not the seconds, are compared with the paper). Fig. 4's cost: max ``||J(x)||_2`` over
    ``fig4_n`` images, the naive per-sample loop timed on ``naive_n`` of them and extrapolated.
    """

    datasets: tuple[str, ...] = ("mnist-10k",)
    seeds: tuple[int, ...] = (0,)
    mnist_batch: int = 32
    resnet_batch: int = 8
    resnet_size: int = 32
    repeats: int = 20
    repetitions: int = 3
    resnet_repeats: int = 5
    resnet_repetitions: int = 3
    warmup: int = 2
    rounds: int = 20
    threads: int | None = 1
    fig4_n: int = 10000
    naive_n: int = 200
    cpu: Any = ABSENT
    cuda: Any = ABSENT


OVERRIDES: dict[str, dict[str, Any]] = {
    "smoke": dict(mnist_batch=16, resnet_batch=2, resnet_size=16, repeats=2, repetitions=2,
                  resnet_repeats=1, resnet_repetitions=1, warmup=1, rounds=2, fig4_n=300,
                  naive_n=10),
    "paper": dict(
        mnist_batch=128,
        resnet_batch=256,
        resnet_size=128,
        repeats=30,
        repetitions=5,
        resnet_repeats=30,
        warmup=5,
        rounds=30,
        threads=None,
        naive_n=10000,
        cpu={"resnet_batch": 16, "repeats": 20, "repetitions": 3, "resnet_repeats": 10,
             "resnet_repetitions": 3, "warmup": 2, "rounds": 20, "naive_n": 1000},
    ),
}


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.resolve`)."""
    return lab_settings.resolve(Settings(), OVERRIDES, profile)


def configs(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Table VI store configs of every device timed on this machine."""
    out = []
    for dev in devices():
        with cpu_threads(device_settings(settings, dev).get("threads")):
            out += timing_configs(settings, dev)
    return out


def _time_config(c: Mapping[str, Any]) -> dict[str, Any]:
    """One stored Table VI run (a net on a device, all repetitions); module level so that an
    executor can send it to a worker (timings are only meaningful without competing runs, so
    the chapter's default is to time in this process)."""
    dev = torch.device(c["device_type"])
    with cpu_threads(c.get("threads") if dev.type == "cpu" else None):
        t0 = time.perf_counter()
        load = load_note()
        rows = table6_rows(
            c["net"],
            dev,
            c["batch"],
            c["size"],
            c["repeats"],
            c["warmup"],
            c["rounds"],
            repetitions=c["repetitions"],
        )
    return {
        "rows": rows,
        "load": load,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "wall_seconds": time.perf_counter() - t0,
    }


def run_timing(
    settings: Mapping[str, Any], store: ResultStore | None = None, executor: Any = None
) -> pd.DataFrame:
    """Time every net on CPU, and on CUDA when present, through the result store; return the
    rows of *all* stored timing runs of this profile (GPU rows recorded elsewhere included).

    The CPU rows run with ``settings["threads"]`` torch threads (``None``: torch's default);
    the thread count is part of the device name and so of the store key. ``executor=None``
    times in this process (``"none"``), whatever ``$JACNB_EXECUTOR`` says: a timing beside
    other runs measures the contention.
    """
    store = store or ResultStore()
    executor = "none" if executor is None else executor
    for dev in devices():
        with cpu_threads(device_settings(settings, dev).get("threads")):
            run_grid(
                timing_configs(settings, dev),
                _time_config,
                store,
                desc="timing",
                progress=False,
                executor=executor,
            )
    return stored_rows(settings["profile"], store)


def with_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the page label of each row's ``regularizer``
    (:attr:`jacnb.lab.timing.StepRegularizer.label`) in a ``label`` column."""
    if rows.empty:
        return rows
    return rows.assign(
        label=[step_label(r) if r in STEP_REGULARIZERS else r for r in rows["regularizer"]]
    )


def gpu_check_table(check: Mapping[str, Any] | None) -> pd.DataFrame:
    """Table VI as ``make gpu-check`` measured it on a GPU
    (:func:`jacnb.lab.gpu_check.table6_frame`; empty without a GPU measurement)."""
    return gpu_check.table6_frame(check)


def stored_rows(profile: str, store: ResultStore | None = None) -> pd.DataFrame:
    """All Table VI rows of ``profile`` in the store (every device that has recorded some)."""
    store = store or ResultStore()
    rows = []
    for rec in store.records("timing-table6"):
        cfg = rec["config"]
        if cfg.get("profile") != profile or cfg.get("schema") != TABLE6_SCHEMA:
            continue
        extra = {k: rec["result"].get(k, "") for k in ("load", "when")}
        rows += [{**row, **extra, "torch": cfg.get("torch", "")} for row in rec["result"]["rows"]]
    df = with_labels(pd.DataFrame(rows))
    if len(df):  # CPU rows first, then the GPUs; nets and regularizers in Table VI order
        df["_dev"] = df["device_type"] != "cpu"
        df["_net"] = df["net"].map(NETS.index)
        df["_reg"] = df["regularizer"].map(list(REGULARIZERS).index)
        keys = ["_dev", "device", "_net", "_reg"]
        df = df.sort_values(keys).drop(columns=["_dev", "_net", "_reg"])
    return df.reset_index(drop=True)


def load_note() -> str:
    """Other runnable tasks on this machine right now (:func:`jacnb.lab.timing.load_note`)."""
    note = timers.load_note(torch.get_num_threads(), samples=5)
    return note or "machine not measurably loaded by other tasks"


def paper_claims() -> pd.DataFrame:
    """Table VI as (net, regularizer) claims of ours: paper seconds without / with, and ratio."""
    p = paper.table6()
    out = []
    for dataset, (net, reg) in PAPER_ROWS.items():
        sel = p[p.dataset == dataset]
        none = sel[sel.regularizer == "none"].iloc[0]
        jac = sel[sel.regularizer == "jacobian"].iloc[0]
        out.append(
            {
                "net": net,
                "regularizer": reg,
                "paper_network": jac.network,
                "paper_form": jac.jacobian_form,
                "paper_sec_none": float(none.seconds_per_batch),
                "paper_sec_reg": float(jac.seconds_per_batch),
                "paper_ratio": float(jac.increase_factor),
            }
        )
    return pd.DataFrame(out)


def table6_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Our rows beside the paper's (Titan X, Theano) in one long table, labelled by source."""
    ours = rows.assign(source="this book")[
        ["source", "device", "net", "label", "batch", "sec_per_batch", "ratio", "step_mem_mb"]
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
            "step_mem_mb": None,
        }
    )
    return pd.concat([ours, theirs], ignore_index=True)


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{suffix}"


def table6_wide(rows: pd.DataFrame, net: str) -> pd.DataFrame:
    """Table VI for one net: a row per regularizer; per device (and batch) median seconds per
    batch, ratio to no regularization, the fastest and slowest timed step, and step memory; the
    paper's seconds and ratio on the right (only on the rows the paper reports; all ``-`` for
    the fully connected net, which the paper does not time). Cells are
    formatted strings (``-`` = not measured)."""
    sel = rows[rows.net == net]
    regs = [r for r in REGULARIZERS if r in set(sel.regularizer)]
    claims = paper_claims().set_index("net")
    cols: dict[tuple[str, str], list[str]] = {}
    for (dev, batch), d in sel.groupby(["device", "batch"], sort=False):
        d = d.set_index("regularizer")
        head = f"{dev}, batch {batch}"
        cols[(head, "s/batch")] = [_fmt(d.sec_per_batch.get(r), ".4f") for r in regs]
        cols[(head, "x no reg.")] = [_fmt(d.ratio.get(r), ".2f", "x") for r in regs]
        cols[(head, "min-max [s]")] = [
            f"{_fmt(d.sec_min.get(r), '.3f')}-{_fmt(d.sec_max.get(r), '.3f')}" for r in regs
        ]
        cols[(head, "step mem [MiB]")] = [_fmt(d.step_mem_mb.get(r), ".0f") for r in regs]
        if d.cuda_max_allocated_mb.notna().any():
            cols[(head, "CUDA peak [MiB]")] = [
                _fmt(d.cuda_max_allocated_mb.get(r), ".0f") for r in regs
            ]
    if net not in claims.index:  # a net of ours the paper does not time
        paper_sec: dict[str, float] = {}
        paper_ratio: dict[str, float] = {}
    else:
        claim = claims.loc[net]
        paper_sec = {"none": claim.paper_sec_none, claim.regularizer: claim.paper_sec_reg}
        paper_ratio = {"none": 1.0, claim.regularizer: claim.paper_ratio}
    cols[(PAPER_SOURCE, "s/batch")] = [_fmt(paper_sec.get(r), ".3f") for r in regs]
    cols[(PAPER_SOURCE, "x no reg.")] = [_fmt(paper_ratio.get(r), ".2f", "x") for r in regs]
    out = pd.DataFrame(cols, index=pd.Index([step_label(r) for r in regs], name="regularizer"))
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def run_provenance(rows: pd.DataFrame) -> list[str]:
    """One line per stored (device, net) run: batch, input, repeats, warm-up, rounds, when, load."""
    out = []
    for (dev, net), d in rows.groupby(["device", "net"], sort=False):
        r = d.iloc[0]
        out.append(
            f"{dev} | {net}: batch={r.batch}, input={r.input}, median of {r.repeats} timed steps "
            f"({r.rounds} interleaved rounds) after {r.warmup} warm-up step(s), torch {r.torch}, "
            f"timed {r.when}; {r.load}"
        )
    return out


def settings_provenance(settings: Mapping[str, Any]) -> str:
    """The provenance line of the Table VI runs of this machine: profile and, per device type,
    batch sizes, input size, repeats, warm-up, rounds and CPU threads."""
    from jacnb.lab.settings import provenance

    keys = (
        "mnist_batch",
        "resnet_batch",
        "resnet_size",
        "repeats",
        "repetitions",
        "resnet_repeats",
        "resnet_repetitions",
        "warmup",
        "rounds",
        "threads",
    )
    extra = {f"{k}[{d.type}]": device_settings(settings, d).get(k) for d in devices() for k in keys}
    return provenance(dict(settings), "random inputs", **extra)


def _ratio(rows: pd.DataFrame, net: str, reg: str) -> float:
    r = rows[(rows.net == net) & (rows.regularizer == reg)]
    return float(r.ratio.iloc[0]) if len(r) else math.nan


def exact_cost_estimates(rows: pd.DataFrame) -> list[str]:
    """Per device, the exact (49) ratio estimated as ``1 + C (r_1 - 1)`` from the ratio ``r_1``
    of the projection estimator with one projection (the exact regularizer does C such
    backward-with-graph passes): checked against the measured exact ratio on the MNIST net, and
    the estimate for ResNet-18 with C = 1000, where the exact regularizer is not timed."""
    out = []
    for dev, sel in rows.groupby("device", sort=False):
        parts = []
        for net, n_classes in (("mnist_convnet", 10), ("resnet18", 1000)):
            r1 = _ratio(sel, net, "projection_1")
            if math.isnan(r1):
                continue
            measured = _ratio(sel, net, EXACT)
            tail = f", measured {measured:.1f}x" if not math.isnan(measured) else " (not timed)"
            if r1 <= 1:  # noise on a tiny step: no extra cost measured, no estimate
                parts.append(f"{net} (C={n_classes}): no estimate (r_1 = {r1:.2f}){tail}")
                continue
            est = 1 + n_classes * (r1 - 1)
            parts.append(f"{net} (C={n_classes}): estimated {est:.1f}x{tail}")
        out.append(f"{dev}: exact (49) on " + "; ".join(parts) + ".")
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
    x: Tensor,
    naive_n: int,
    seed: int = 0,
    depth: int = 3,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Seconds for ``max ||J(x_i)||_2`` over all of ``x`` (a weight-normalized fully connected
    net of Fig. 4, width 784, ``depth`` layers, softmax output, at initialization -- the cost
    does not depend on the weights): the library's batched method on all samples, the naive loop
    on the first ``naive_n`` and extrapolated linearly to ``len(x)``."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = fully_connected(x[0].numel(), 10, depth=depth, weight_norm=True).eval().to(device)
    x = x.to(device)
    max_spectral_norm(model, x[:batch_size], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    lib = max_spectral_norm(model, x, batch_size=batch_size)
    t_lib = time.perf_counter() - t0
    n = min(naive_n, len(x))
    naive_max_spectral_norm(model, x[: min(2, n)])  # warm-up
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
        "device": device_name(device),
        "device_type": device.type,
        "depth": depth,
        "batch_size": batch_size,
    }


def fig4_inputs(settings: Mapping[str, Any]) -> tuple[Tensor, str]:
    """The first ``fig4_n`` images of the profile's dataset (train + test), and its label. If the
    dataset is not on disk, uniform random 1x28x28 images, labelled as such (the cost of the
    computation does not depend on the pixel values)."""
    from jacnb.core.data import DatasetMissingError, load_dataset

    name = settings["datasets"][0]
    n = settings["fig4_n"]
    try:
        ds = load_dataset(name)
    except DatasetMissingError:
        x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        return x, f"random 1x28x28 images (stand-in: {name} is not on disk)"
    x = torch.cat([ds.x_train, ds.x_test])[:n]
    return x, f"{name} (train + test)"


def run_fig4_cost(
    settings: Mapping[str, Any], x: Tensor, dataset: str, store: ResultStore | None = None
) -> pd.DataFrame:
    """:func:`fig4_cost` on the CPU, and on CUDA when present, through the result store; return
    every stored result of this profile (all devices)."""
    store = store or ResultStore()
    for dev in devices():
        s = device_settings(settings, dev)
        with cpu_threads(s.get("threads")):
            _fig4_on(settings, s, dev, x, dataset, store)
    recs = [
        {**r["result"], "dataset": r["config"]["dataset"]}
        for r in store.records("timing-fig4")
        if r["config"].get("profile") == settings["profile"] and r["config"].get("schema") == SCHEMA
    ]
    return pd.DataFrame(recs)


def _fig4_on(
    settings: Mapping[str, Any],
    s: Mapping[str, Any],
    dev: torch.device,
    x: Tensor,
    dataset: str,
    store: ResultStore,
) -> None:
    """:func:`fig4_cost` on ``dev`` unless the store has it (``s``: the device's settings)."""
    config = {
        "experiment": "timing-fig4",
        "schema": SCHEMA,
        "profile": settings["profile"],
        "dataset": dataset,
        "n": int(len(x)),
        "naive_n": s["naive_n"],
        "device": device_name(dev),
        "torch": torch.__version__,
    }
    if not store.has(config):
        result = fig4_cost(x, s["naive_n"], seed=s["seeds"][0], device=dev)
        result["load"] = load_note()
        result["when"] = time.strftime("%Y-%m-%d %H:%M")
        store.put(config, result)


def fig4_view(results: pd.DataFrame) -> pd.DataFrame:
    """One row per device: seconds by the library and by the naive loop (extrapolation marked)."""
    rows = []
    for r in results.itertuples():
        naive_head = (
            f"{r.naive_seconds_full:.1f} (extrapolated from {r.naive_n})"
            if r.extrapolated
            else f"{r.naive_seconds_full:.1f} (measured)"
        )
        rows.append(
            {
                "device": r.device,
                "inputs": f"{r.n} x {r.dataset}",
                "library, batched [s]": f"{r.library_seconds:.2f}",
                "naive per-sample loop [s]": naive_head,
                "speed-up": f"{r.speedup:.0f}x",
                "max ||J(x)||_2 (library)": f"{r.max_norm_library:.4g}",
                "agree on the subset": "yes" if r.agree_on_subset else "NO",
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Repetitions -> summary, runs frame, verdicts
# ---------------------------------------------------------------------------------------------

_KEYS = ["device", "device_type", "net", "regularizer", "label", "batch", "input"]


def summary_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (device, net, regularizer, batch) over the repetitions: ``sec_per_batch`` the
    median of the repetitions' medians, ``ratio`` the geometric mean of their ratios to no
    regularization, ``sec_min`` / ``sec_max`` over every timed step, ``repetitions``."""
    if rows.empty:
        return rows
    rows = with_labels(rows).assign(_log=np.log(rows["ratio"].astype(float)))
    g = rows.groupby(_KEYS, sort=False, dropna=False)
    out = g.agg(
        sec_per_batch=("sec_per_batch", "median"),
        sec_min=("sec_min", "min"),
        sec_max=("sec_max", "max"),
        _log=("_log", "mean"),
        step_mem_mb=("step_mem_mb", "first"),
        cuda_max_allocated_mb=("cuda_max_allocated_mb", "first"),
        repetitions=("repetition", "nunique"),
        repeats=("repeats", "first"),
        warmup=("warmup", "first"),
        rounds=("rounds", "first"),
        when=("when", "first"),
        load=("load", "first"),
        torch=("torch", "first"),
    ).reset_index()
    out["ratio"] = np.exp(out.pop("_log"))
    return out


def verdict_device(rows: pd.DataFrame) -> str | None:
    """The device the cost claims are judged on: a GPU's rows when some are stored (the paper
    timed a GPU), else this machine's CPU rows; ``None`` without rows."""
    if rows.empty:
        return None
    gpu = rows[rows["device_type"] == "cuda"]
    return str((gpu if len(gpu) else rows)["device"].iloc[0])


def runs_frame(rows: pd.DataFrame, device: str | None = None) -> pd.DataFrame:
    """The tidy runs frame of the cost claims on ``device`` (default :func:`verdict_device`):
    one row per (net, regularizer, repetition) with ``seed`` = the repetition, ``arm``
    (:data:`ARMS`), ``sec_per_step`` = the repetition's median and ``steps`` = its timed
    steps."""
    cols = ["seed", "net", "arm", "regularizer", "sec_per_step", "steps", "device"]
    device = device or verdict_device(rows)
    if device is None:
        return pd.DataFrame(columns=cols)
    sel = rows[rows["device"] == device]
    return pd.DataFrame(
        {
            "seed": sel["repetition"].astype(int),
            "net": sel["net"],
            "arm": sel["regularizer"].map(ARMS),
            "regularizer": sel["regularizer"],
            "sec_per_step": sel["sec_per_batch"].astype(float),
            "steps": sel["steps"].astype(int),
            "device": sel["device"],
        }
    ).reset_index(drop=True)[cols]


def claim_runs(claim: str, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` (:func:`runs_frame`) on the net ``claim`` is judged on."""
    return runs[runs["net"] == CLAIM_NETS[claim]].reset_index(drop=True)


def _geometric_mean(values: Any) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, float)))))


def ratio_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (device, net, regularizer, repetition) the ratio to no regularization, for the
    figure (one point per repetition)."""
    rows = with_labels(rows)
    return rows[rows["regularizer"] != "none"][
        ["device", "net", "regularizer", "label", "repetition", "ratio"]
    ].reset_index(drop=True)


@dataclass
class TimingResult:
    """What :func:`run` returns: ``rows`` every stored Table VI row of the profile (one per
    device, net, regularizer and repetition), ``fig4`` the stored Fig. 4 cost results,
    ``gpu_check`` the GPU check's JSON (:func:`jacnb.lab.gpu_check.load`; ``None`` where no
    check was saved)."""

    settings: dict[str, Any]
    rows: pd.DataFrame
    fig4: pd.DataFrame
    fig4_inputs: str = ""
    gpu_check: Mapping[str, Any] | None = None

    @property
    def profile(self) -> str:
        return str(self.settings["profile"])

    @property
    def device(self) -> str | None:
        """The device the claims are judged on (:func:`verdict_device`)."""
        return verdict_device(self.rows)

    def summary(self) -> pd.DataFrame:
        return summary_rows(self.rows)

    def gpu_note(self) -> str:
        """"Measured on <device>" for the GPU check's Table VI, or that no GPU run exists
        (:func:`jacnb.lab.gpu_check.note`)."""
        return gpu_check.note(self.gpu_check)

    def gpu_table(self) -> pd.DataFrame:
        """The GPU check's Table VI (:func:`gpu_check_table`; empty without a GPU run)."""
        return gpu_check_table(self.gpu_check)

    def runs(self, claim: str | None = None) -> pd.DataFrame:
        runs = runs_frame(self.rows)
        return runs if claim is None else claim_runs(claim, runs)

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            "runs": self.runs(),
            "table6": self.summary(),
            "ratios": ratio_frame(self.rows),
            "fig4": self.fig4,
        }

    def figure(self) -> Figure:
        """Ratio of seconds per step to no regularization per regularizer and net on the
        judged device: mean with 95 % CI over repetitions (log scale)."""
        import matplotlib.pyplot as plt
        import seaborn as sns

        from jacnb.lab.plotting import stamp

        d = ratio_frame(self.rows)
        d = d[d["device"] == self.device]
        fig, ax = plt.subplots(figsize=(9, 3.8))
        sns.pointplot(
            d,
            y="label",
            x="ratio",
            hue="net",
            estimator=_geometric_mean,
            errorbar=("ci", 95),
            orient="h",
            dodge=0.4,
            linestyle="none",
            ax=ax,
            hue_order=[n for n in NETS if n in set(d["net"])],
        )
        ax.axvline(1.0, color="0.4", lw=1, ls="--")
        ax.set(
            xscale="log",
            xlabel="seconds per step / no regularizer (geometric mean, 95 % CI; log)",
            ylabel="",
        )
        ax.set_title(f"cost of a training step, {self.device}")
        ax.legend(fontsize=8, title="net")
        fig.tight_layout()
        stamp(fig, self.provenance())
        return fig

    def figures(self) -> dict[str, Figure]:
        return {"ratios": self.figure()} if len(self.rows) else {}

    def paper_table(self) -> pd.DataFrame:
        """Our rows (geometric mean ratio over repetitions) beside Table VI's, labelled by
        source (``paper (Table VI)``)."""
        return table6_view(self.summary())

    def provenance(self) -> str:
        return settings_provenance(self.settings)

    def verdicts(self) -> list[Verdict]:
        """One verdict per registered claim of the page, by :func:`jacnb.lab.gates.decide` on
        the runs frame of the judged device (each repetition one seed)."""
        out = []
        for claim in claims_of(NAME):
            runs = self.runs(claim.id)
            if runs.empty:
                out.append(gates.not_run(claim, "not timed at this profile", profile=self.profile))
                continue
            label = f"{NET_LABELS[CLAIM_NETS[claim.id]]}, random inputs; {self.device}"
            out.append(gates.decide(claim, runs, profile=self.profile, dataset=label))
        return out

    def numbers(self) -> dict[str, float]:
        """Measured ratios for the prose (geometric means over repetitions, judged device)."""
        summ = self.summary()
        summ = summ[summ["device"] == self.device]
        out = {}
        for (net, reg), r in summ.set_index(["net", "regularizer"])["ratio"].items():
            out[f"ratio_{net}_{reg}"] = float(r)
        ex = summ.set_index(["net", "regularizer"])["sec_per_batch"]
        if ("mnist_fc", EXACT) in ex.index and ("mnist_fc", "projection_1") in ex.index:
            out["fc_projection_over_exact"] = float(
                ex[("mnist_fc", "projection_1")] / ex[("mnist_fc", EXACT)]
            )
        if ("mnist_convnet", EXACT) in ex.index and ("mnist_convnet", "per_layer") in ex.index:
            out["conv_per_layer_over_exact"] = float(
                ex[("mnist_convnet", "per_layer")] / ex[("mnist_convnet", EXACT)]
            )
        return out


def run(
    profile: str = "cpu", *, executor: Any = None, store: ResultStore | None = None
) -> TimingResult:
    """The chapter at ``profile``: Table VI's step times (every net, every device of this
    machine, through the result store; stored rows of other devices included) and Fig. 4's
    cost. Timing in worker processes (``executor``) makes the runs compete for the cores; the
    page times in this process."""
    s = settings(profile)
    store = store or ResultStore()
    rows = run_timing(s, store, executor=executor)
    x4, label4 = fig4_inputs(s)
    f4 = run_fig4_cost(s, x4, label4, store)
    return TimingResult(s, rows, f4, label4, gpu_check.load())


# ---------------------------------------------------------------------------------------------
# Dry run (python -m jacnb.run timing --profile paper --dry-run; jacnb.lab.dryrun)
# ---------------------------------------------------------------------------------------------


def dry_run(settings: Mapping[str, Any], device: torch.device) -> list[DryConfig]:
    """Table VI's timed steps on ``device`` at ``settings`` as :mod:`jacnb.lab.dryrun` sees
    them: per (net, regularizer) of :func:`timing_configs` the steps :func:`table6_rows` takes
    (``warmup`` + ``repeats`` per repetition, one more for the memory). Fig. 4's cost (the
    per-sample spectral norms) is not counted."""
    out = []
    for c in timing_configs(settings, device):
        _, _, _, regs = _net_and_batch(c["net"], 1, 8, torch.device("cpu"), 0)
        steps = (int(c["warmup"]) + int(c["repeats"])) * int(c["repetitions"]) + 1
        for r in regs:

            def build(dev: torch.device, c: Mapping[str, Any] = c, r: str = r) -> Any:
                model, x, y, _ = _net_and_batch(c["net"], c["batch"], c["size"], dev, 0)
                return make_step(model, step_regularizer(r), x, y, lam=0.1)

            shape = (c["net"], f"{c['size']}x{c['size']}", f"batch {c['batch']}", r)
            out.append(DryConfig("Table VI", "synthetic batches", steps, shape, build, dict(c)))
    return out
