"""A dry run of a profile (``python -m jacnb.run --profile paper --dry-run``): every config a
chapter would train, built at the profile's shapes and stepped a few times on the device at
hand, so that a shape error, an out-of-memory or a missing loader shows in minutes instead of
after hours of cluster time, and the cost of the full run is projected from measured steps.

Each chapter supplies a hook ``dry_run(settings) -> list[DryConfig]``: per config the SGD steps
of the full run, a cost ``shape`` (configs that differ only by seed or factor share one) and a
``build(device)`` that makes the config's net (with the chapter's own builder), a training batch
of the config's size and returns one training step
(:func:`jacnb.lab.timing.make_step`, i.e. :func:`jacnb.core.train.training_step`). This module
times ``warmup + steps`` calls of one config per shape, measures its peak memory (the process's
peak resident set on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA), and multiplies.

Where a dataset is absent, :func:`datasets_or_synthetic` puts synthetic inputs of its exact shape,
size and class count (:data:`PAPER_SHAPES`) in place for the duration of the dry run, labelled
``synthetic`` in every row. Nothing is written to the result store: the dry run never trains a
config to the end. The page "What the ``paper`` profile costs" (``book/paper_cost.md``) shows
the table it saves (:func:`save`).

What is counted: the optimizer steps of every training run. Not counted: evaluation passes,
the Jacobian spectra, margins and bounds the pages compute after training, data loading beyond
one batch, and the batching of several seeds into one stacked step where a chapter does that on
CUDA (each config is timed on its own).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import json
import math
import os
import resource
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from jacnb.core.data import Dataset
from jacnb.lab import datasets as lab_datasets
from jacnb.lab import machine
from jacnb.lab.timing import time_calls

#: The JSON of the last dry run of the ``paper`` profile, read by ``book/paper_cost.md``.
DEFAULT_JSON = Path(__file__).resolve().parents[2] / "book" / "_static" / "paper_cost.json"


@dataclass(frozen=True)
class DatasetShape:
    """The shape of a dataset as the book reads it: one input, classes, split sizes."""

    name: str
    input_shape: tuple[int, ...]
    n_classes: int
    n_train: int
    n_test: int
    n_other: int = 0
    note: str = ""


#: The datasets of the ``paper`` profile at their real sizes (what a synthetic stand-in copies).
PAPER_SHAPES: dict[str, DatasetShape] = {
    "mnist": DatasetShape("mnist", (1, 28, 28), 10, 60_000, 10_000, note="the standard split"),
    "cifar10": DatasetShape("cifar10", (3, 32, 32), 10, 50_000, 10_000, note="the standard split"),
    "lared": DatasetShape(
        "lared",
        (1, 32, 32),
        81,
        116_640,
        29_160,
        97_200,
        note="81 classes, 10 subjects, ~300 frames per class and subject (Hsiao et al. 2014), "
        "split as jacnb.core.data.load_lared does (subjects 1-6: 80/20 train/test, 7-10: other)",
    ),
    "imagenet": DatasetShape(
        "imagenet", (3, 128, 128), 1000, 1_281_167, 50_000, note="ILSVRC2012 train / val"
    ),
}


def synthetic_dataset(shape: DatasetShape, seed: int = 0) -> Dataset:
    """A :class:`~jacnb.core.data.Dataset` with ``shape``'s sizes and class count whose inputs
    are one random image repeated (a stride-0 view: no memory per sample) and whose labels cycle
    through the classes. For timing steps only; its ``source`` says it is synthetic."""
    gen = torch.Generator().manual_seed(seed)
    one = torch.rand(1, *shape.input_shape, generator=gen)

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return one.expand(n, *shape.input_shape), torch.arange(n) % shape.n_classes

    (xtr, ytr), (xte, yte) = part(shape.n_train), part(shape.n_test)
    meta: dict[str, Any] = {"synthetic": True}
    if shape.n_other:
        meta["x_test_other"], meta["y_test_other"] = part(shape.n_other)
    return Dataset(
        name=shape.name,
        x_train=xtr,
        y_train=ytr,
        x_test=xte,
        y_test=yte,
        n_classes=shape.n_classes,
        source=f"SYNTHETIC (dry run): random inputs of {shape.name}'s shape "
        f"{shape.input_shape}, {shape.n_classes} classes, {shape.n_train:,}/{shape.n_test:,} "
        f"train/test ({shape.note}); not {shape.name}",
        meta=meta,
    )


@contextlib.contextmanager
def datasets_or_synthetic(names: Sequence[str]) -> Iterator[dict[str, str]]:
    """For the duration: each of ``names`` loads from disk (``"real"``) or, where it is absent,
    a :func:`synthetic_dataset` of its :data:`PAPER_SHAPES` entry stands in the in-process
    dataset cache (``"synthetic"``); ``imagenet`` is never loaded (``"real"`` if its folder is
    there; the ResNet chapter's hook reads only its shape). The synthetic entries are removed on
    exit, so nothing after the dry run sees them."""
    from jacnb.core.data import DatasetMissingError, load_imagenet

    status: dict[str, str] = {}
    added: list[str] = []
    for name in names:
        if name == "imagenet":
            try:
                load_imagenet(size=8)
                status[name] = "real"
            except DatasetMissingError:
                status[name] = "synthetic"
            continue
        if lab_datasets.try_dataset(name) is not None:
            status[name] = "real"
        elif name in PAPER_SHAPES:
            lab_datasets._CACHE[name] = synthetic_dataset(PAPER_SHAPES[name])
            added.append(name)
            status[name] = "synthetic"
    try:
        yield status
    finally:
        for name in added:
            lab_datasets._CACHE.pop(name, None)


Step = Callable[[], object]


@dataclass
class DryConfig:
    """One config of a chapter as the dry run sees it.

    Attributes:
        phase: which grid it belongs to (e.g. ``"Fig. 3 selection"``).
        dataset: the dataset it trains on.
        steps: SGD steps of the full run.
        shape: what one step's cost depends on (net, input, batch, regularizer); configs that
            differ only by seed or factor have equal shapes and are timed once.
        build: ``build(device)`` -> one training step of the config on ``device`` (net, batch,
            optimizer and regularizer made; each call is one step).
        config: the chapter's config dict.
    """

    phase: str
    dataset: str
    steps: int
    shape: tuple[Any, ...]
    build: Callable[[torch.device], Step]
    config: Mapping[str, Any] = field(default_factory=dict)


def batch_of(ds: Any, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``batch_size`` training samples of an in-memory dataset on ``device``."""
    n = min(batch_size, len(ds.y_train))
    return ds.x_train[:n].contiguous().to(device), ds.y_train[:n].to(device)


def random_batch(
    input_shape: Sequence[int], n_classes: int, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random batch of ``batch_size`` inputs of ``input_shape`` and labels."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *input_shape, generator=gen)
    return x.to(device), torch.randint(n_classes, (batch_size,), generator=gen).to(device)


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident set (Linux: ``5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """The process's peak resident set since the last reset (``VmHWM``), else since start."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class ShapeRow:
    """The measurement of one cost shape of a chapter."""

    chapter: str
    phase: str
    dataset: str
    data: str
    shape: str
    configs: int
    steps: int
    seconds_per_step: float | None
    peak_mb: float | None
    hours: float | None
    error: str = ""
    timed_steps: int = 0


#: Seconds of timed steps after which a shape's measurement stops (at least one step is timed).
STEP_BUDGET_S = 10.0


def measure_shape(
    build: Callable[[torch.device], Step],
    device: torch.device,
    steps: int = 2,
    warmup: int = 1,
    budget_s: float = STEP_BUDGET_S,
) -> tuple[float, float, int]:
    """``(median seconds of a step, peak memory in MiB, steps timed)`` of up to ``steps`` timed
    calls after ``warmup`` untimed ones: peak resident set of the process on the CPU, the CUDA
    allocator's peak on CUDA; the net and batch are built under the measurement.

    Slow shapes are cut short: timing stops once the timed calls took ``budget_s`` seconds, and
    a warmup call that alone took longer than ``budget_s`` is the measurement (one step, its
    one-time costs included: an overestimate)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_peak_rss()
    step = build(device)
    times: list[float] = []
    for i in range(warmup + steps):
        t = time_calls(step, device, repeats=1, warmup=0)[0]
        if i < warmup:
            if t > budget_s:
                times = [t]
                break
            continue
        times.append(t)
        if sum(times) > budget_s:
            break
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mb()
    del step
    gc.collect()
    return float(statistics.median(times)), float(peak), len(times)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, MemoryError | torch.OutOfMemoryError) or "out of memory" in str(err)


def measure(
    chapter: str,
    configs: Sequence[DryConfig],
    device: torch.device,
    data: Mapping[str, str],
    steps: int = 2,
    warmup: int = 1,
    log: Callable[[str], None] | None = None,
) -> list[ShapeRow]:
    """One :class:`ShapeRow` per distinct ``(phase, shape)`` of ``configs``: its configs and
    their full-length steps, the measured seconds per step and peak memory of one of them, and
    the projected hours (steps x seconds). A shape is measured once even where several phases
    (e.g. a selection grid and a final grid) have it. A config that cannot be built or stepped
    gives a row with ``error`` (the exception, or "out of memory") instead of numbers."""
    groups: dict[tuple[str, tuple[Any, ...]], list[DryConfig]] = {}
    for c in configs:
        groups.setdefault((c.phase, c.shape), []).append(c)
    measured: dict[tuple[Any, ...], tuple[float | None, float | None, int, str]] = {}
    rows = []
    for (phase, shape), group in groups.items():
        first = group[0]
        total = sum(c.steps for c in group)
        label = ", ".join(f"{v}" for v in shape)
        if shape not in measured:
            try:
                sec, peak, timed = measure_shape(first.build, device, steps=steps, warmup=warmup)
                measured[shape] = (sec, peak, timed, "")
            except Exception as e:  # noqa: BLE001 - every failure is reported, none is hidden
                err = "out of memory" if _is_oom(e) else f"{type(e).__name__}: {e}"
                measured[shape] = (None, None, 0, err)
        sec, peak, timed, err = measured[shape]
        hours = total * sec / 3600 if sec is not None else None
        source = data.get(first.dataset, "generated by the chapter")
        row = ShapeRow(
            chapter, phase, first.dataset, source, label, len(group), total, sec, peak, hours, err,
            timed,
        )
        if log:
            log(_row_line(row))
        rows.append(row)
    return rows


def _row_line(r: ShapeRow) -> str:
    if r.error:
        return f"  FAIL {r.phase} [{r.shape}]: {r.error}"
    return (
        f"  {r.phase} [{r.shape}] ({r.dataset}, {r.data}): {r.configs} configs, {r.steps:,} steps "
        f"x {r.seconds_per_step:.3f} s = {r.hours:.1f} h; peak {r.peak_mb:,.0f} MiB "
        f"({r.timed_steps} timed)"
    )


# ---------------------------------------------------------------------------------------------
# Summary, JSON, projection
# ---------------------------------------------------------------------------------------------


def chapter_summary(rows: Sequence[ShapeRow]) -> list[dict[str, Any]]:
    """One row per chapter: configs, distinct shapes, full-length steps, projected hours on this
    device, the largest peak memory, the datasets (real or synthetic) and failures."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = out.setdefault(
            r.chapter,
            {
                "chapter": r.chapter,
                "configs": 0,
                "shapes": 0,
                "steps": 0,
                "hours": 0.0,
                "peak_mb": 0.0,
                "data": {},
                "failures": 0,
            },
        )
        s["configs"] += r.configs
        s["shapes"] += 1
        s["steps"] += r.steps
        s["hours"] += r.hours or 0.0
        s["peak_mb"] = max(s["peak_mb"], r.peak_mb or 0.0)
        s["data"][r.dataset] = r.data
        s["failures"] += bool(r.error)
    for s in out.values():
        s["seconds_per_step"] = s["hours"] * 3600 / s["steps"] if s["steps"] else None
    return list(out.values())


def device_name(device: torch.device) -> str:
    """``"cuda: <GPU name>"`` or ``"cpu: <processor>, <n> torch threads"``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {machine.processor()}, {torch.get_num_threads()} torch threads"


def git_commit() -> str:
    """The checkout's commit (``"unknown"`` outside a git checkout)."""
    return machine.git_commit()


def report(
    profile: str,
    rows: Sequence[ShapeRow],
    device: torch.device,
    wall_seconds: float,
    steps: int,
    warmup: int,
) -> dict[str, Any]:
    """The dry run as one JSON-able dict: when, where (device, commit), how (timed steps per
    shape), per-shape rows and per-chapter summary."""
    return {
        "profile": profile,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "device": device_name(device),
        "device_type": device.type,
        "timed_steps_per_shape": steps,
        "warmup_steps_per_shape": warmup,
        "wall_seconds": round(wall_seconds, 1),
        # other processes competing for the cores make every step slower: the 1-minute load
        # average when the dry run ended, beside the cores this process may use
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "chapters": chapter_summary(rows),
        "shapes": [asdict(r) for r in rows],
    }


def save(result: Mapping[str, Any], path: str | os.PathLike[str] = DEFAULT_JSON) -> Path:
    """Write ``result`` (:func:`report`) as JSON, atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def gpu_ratio(cpu: Mapping[str, Any], gpu: Mapping[str, Any] | None) -> dict[str, float]:
    """Per chapter, CPU seconds per step / GPU seconds per step over the shapes both dry runs
    measured (``{}`` without a GPU dry run)."""
    if not gpu:
        return {}
    key = ("chapter", "phase", "shape")
    g = {tuple(r[k] for k in key): r for r in gpu["shapes"] if r["seconds_per_step"]}
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for r in cpu["shapes"]:
        other = g.get(tuple(r[k] for k in key))
        if r["seconds_per_step"] and other:
            num[r["chapter"]] = num.get(r["chapter"], 0.0) + r["steps"] * r["seconds_per_step"]
            den[r["chapter"]] = den.get(r["chapter"], 0.0) + r["steps"] * other["seconds_per_step"]
    return {c: num[c] / den[c] for c in num if den[c] > 0}


def table(result: Mapping[str, Any], gpu: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The cost table per chapter (what the page and the command line print): configs, shapes,
    steps, mean seconds per step, peak memory, projected hours on the dry run's device and on the
    GPU of ``gpu`` (a dry run on CUDA), else "no GPU measurement yet"."""
    ratio = gpu_ratio(result, gpu)
    gpu_hours = {c["chapter"]: c["hours"] for c in (gpu or {}).get("chapters", [])}
    rows = []
    for c in result["chapters"]:
        if gpu and c["chapter"] in gpu_hours:
            on_gpu = f"{gpu_hours[c['chapter']]:.1f} h (measured on {gpu['device']})"
        elif c["chapter"] in ratio:
            on_gpu = f"{c['hours'] / ratio[c['chapter']]:.1f} h"
        else:
            on_gpu = "no GPU measurement yet"
        rows.append(
            {
                "chapter": c["chapter"],
                "configs": c["configs"],
                "distinct shapes": c["shapes"],
                "SGD steps (full run)": c["steps"],
                "s / step": round(c["seconds_per_step"], 4) if c["seconds_per_step"] else None,
                "peak memory [MiB]": round(c["peak_mb"]),
                "hours here": round(c["hours"], 1),
                "hours on a GPU": on_gpu,
                "data": ", ".join(f"{k} ({v})" for k, v in sorted(c["data"].items())),
                "failures": c["failures"],
            }
        )
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as a plain-text table."""
    if not rows:
        return "(no configs)"
    cols = list(rows[0])
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "-" * len(line), *body])


def total_hours(result: Mapping[str, Any]) -> float:
    """Projected hours of every chapter together on the dry run's device."""
    return float(sum(c["hours"] for c in result["chapters"]))


def months(hours: float) -> str:
    """``hours`` in words (hours, days or months of 30 days)."""
    if hours < 48:
        return f"{hours:.1f} hours"
    if hours < 24 * 60:
        return f"{hours / 24:.1f} days"
    return f"{hours / 24 / 30:.1f} months"


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def datasets_of(settings: Mapping[str, Any]) -> list[str]:
    """The datasets a chapter's settings read (``datasets``, else ``dataset``)."""
    names = settings.get("datasets") or ([settings["dataset"]] if "dataset" in settings else [])
    return list(names)


def dry_run_chapter(
    chapter: str,
    module: Any,
    profile: str,
    device: torch.device,
    steps: int = 2,
    warmup: int = 1,
    log: Callable[[str], None] | None = print,
) -> list[ShapeRow]:
    """The dry run of one chapter module (its ``settings(profile)`` and
    ``dry_run(settings, device)`` hook) with absent datasets replaced by synthetic ones of their
    exact shape for the duration (:func:`datasets_or_synthetic`). A hook that fails (e.g. a
    loader or config builder error) gives one failure row."""
    s = module.settings(profile)
    with datasets_or_synthetic(datasets_of(s)) as data:
        if log:
            log(f"[dry run] {chapter} at {profile}: data " + ", ".join(
                f"{k} ({v})" for k, v in data.items()
            ))
        try:
            configs = module.dry_run(s, device)
        except Exception as e:  # noqa: BLE001 - reported as this chapter's failure
            row = ShapeRow(chapter, "configs", "", "", "", 0, 0, None, None, None,
                           f"{type(e).__name__}: {e}")
            if log:
                log(_row_line(row))
            return [row]
        return measure(chapter, configs, device, data, steps=steps, warmup=warmup, log=log)


def merge(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Dry runs of different chapters made at the same time (e.g. one process per group of
    chapters) as one report: their chapters and shapes together, the longest wall time, and
    ``parallel`` = how many ran at once (their steps competed for the same cores)."""
    if not reports:
        raise ValueError("nothing to merge")
    first = reports[0]
    for r in reports[1:]:
        if (r["profile"], r["device"]) != (first["profile"], first["device"]):
            raise ValueError("dry runs of different profiles or devices do not merge")
    out = dict(first)
    out["chapters"] = [c for r in reports for c in r["chapters"]]
    out["shapes"] = [s for r in reports for s in r["shapes"]]
    out["wall_seconds"] = max(r["wall_seconds"] for r in reports)
    out["parallel"] = len(reports)
    out["load_average"] = max((r.get("load_average") or 0.0) for r in reports)
    return out
