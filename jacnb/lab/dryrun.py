"""A dry run of a profile (``python -m jacnb.run --profile paper --dry-run``): every config a
chapter would train, built at the profile's shapes and stepped a few times on the device at
hand, so that a shape error, an out-of-memory or a missing loader shows in minutes instead of
after hours of cluster time, and the cost of the full run is projected from measured steps.

Each chapter supplies a hook ``dry_run(settings) -> list[DryConfig]``: per config the SGD steps
of the full run, a ``shape`` label for the table and a ``build(device)`` that makes the config's
net (with the chapter's own builder), a training batch of the config's size and returns one
training step (:func:`jacnb.lab.timing.make_step`, i.e. :func:`jacnb.core.train.training_step`).

What is run, and how often (:func:`measure`):

* **every config** is built on the meta device and its net run once on its batch there
  (:func:`check_config`): no weight is initialised and nothing is computed, so this costs
  milliseconds, and it catches a builder, loader or shape error in any config, not only in the
  ones that are stepped;
* **one probe per cost signature** (:func:`signature`, read from the built step: the net's layers
  and parameter shapes, the batch, the regularizer with its arguments, the loss): configs that
  differ only in factor, seed, learning rate or training-set size cost the same per step, so
  one of them is stepped on the device (``warmup`` untimed and up to ``steps`` timed calls,
  stopped after :data:`STEP_BUDGET_S` seconds; :func:`measure_shape`, which also measures peak
  memory: the process's peak resident set on the CPU, ``torch.cuda.max_memory_allocated`` on
  CUDA) and the others reuse its measurement, across phases and across chapters
  (:func:`dry_run_all`); every row names the probe it used.

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
import dataclasses
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from jacnb.core.data import Dataset
from jacnb.core.jacobian import auto_strategy
from jacnb.core.regularizers import JacobianRegularizer
from jacnb.lab import datasets as lab_datasets
from jacnb.lab import machine
from jacnb.lab.timing import TrainingStep, time_calls

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
        shape: what one step's cost depends on (net, input, batch, regularizer), as the table
            labels it; which configs share a probe is decided by their built steps
            (:func:`signature`), not by this label.
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
    """The configs of one chapter, phase and cost shape, and the probe that timed their step.

    ``probe`` names the row whose config was stepped (``"<chapter>: <phase> [<shape>]"``): this
    row's own label where it was measured here, another row's where the step cost is the same
    (same net, input, batch, regularizer and loss; see :func:`signature`) and its measurement is
    reused. ``probe_seconds`` / ``probe_cpu_seconds``: wall and CPU seconds the probe took (build,
    warm-up, timed steps) on the row that ran it, 0 on the rows that reuse it."""

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
    probe: str = ""
    probe_seconds: float = 0.0
    probe_cpu_seconds: float = 0.0


#: Seconds after which a probe stops stepping (warm-up included; at least one step is timed).
STEP_BUDGET_S = 10.0

#: Where every config is built and its net run once without computing anything (no weights are
#: initialised and no memory is held: :func:`check_config`).
META = torch.device("meta")


@dataclass(frozen=True)
class Measurement:
    """What one probe measured: the median seconds of a step, peak memory in MiB, how many steps
    were timed, and the wall and CPU seconds of the whole probe (build, warm-up, timed steps)."""

    seconds_per_step: float
    peak_mb: float
    timed_steps: int
    wall_seconds: float
    cpu_seconds: float


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread): unlike wall time, not
    inflated by other processes competing for the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure_shape(
    build: Callable[[torch.device], Step],
    device: torch.device,
    steps: int = 2,
    warmup: int = 1,
    budget_s: float = STEP_BUDGET_S,
) -> Measurement:
    """Up to ``steps`` timed calls after ``warmup`` untimed ones of the step ``build(device)``
    makes: the median seconds of a step, the peak memory (peak resident set of the process on
    the CPU, the CUDA allocator's peak on CUDA; the net and batch are built under the
    measurement), the steps timed.

    Each probe is bounded by ``budget_s``: timing stops once the warm-up and timed calls
    together took ``budget_s`` seconds (at least one call is timed after the warm-up), and a
    warm-up call that alone took longer than ``budget_s`` is the measurement (one step, its
    one-time costs included: an overestimate)."""
    t0, c0 = time.perf_counter(), process_cpu_seconds()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_peak_rss()
    step = build(device)
    times: list[float] = []
    spent = 0.0
    for i in range(warmup + steps):
        t = time_calls(step, device, repeats=1, warmup=0)[0]
        spent += t
        if i < warmup:
            if t > budget_s:
                times = [t]
                break
            continue
        times.append(t)
        if spent > budget_s:
            break
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mb()
    del step
    gc.collect()
    return Measurement(
        float(statistics.median(times)),
        float(peak),
        len(times),
        time.perf_counter() - t0,
        process_cpu_seconds() - c0,
    )


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, MemoryError | torch.OutOfMemoryError) or "out of memory" in str(err)


def signature(step: TrainingStep, logits: torch.Tensor) -> tuple[Any, ...]:
    """What the cost of one step of ``step`` depends on: the net's layers (their classes and
    every parameter's shape), the batch's shape and type, the output's shape, the regularizer
    (its class and arguments) if it is used, and the loss. Two configs with equal signatures
    differ only in what costs nothing per step (factor, seed, learning rate, training-set size,
    the parameters' values), so one probe times both. A Jacobian regularizer's strategy
    ``"auto"`` counts as the strategy it picks for the net
    (:func:`jacnb.core.jacobian.auto_strategy`)."""
    model = step.model
    layers = tuple(type(m).__name__ for m in model.modules())
    params = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
    reg = step.reg
    if isinstance(reg, JacobianRegularizer) and reg.strategy == "auto":
        # the strategy "auto" takes for this net: the same computation as naming it
        reg = dataclasses.replace(reg, strategy=auto_strategy(model))
    reg = repr(reg) if reg is not None and step.lam else "none"
    digest = hashlib.sha1(repr((layers, params)).encode()).hexdigest()
    return (
        digest,
        tuple(step.x.shape),
        str(step.x.dtype),
        tuple(logits.shape),
        reg,
        step.loss,
        type(step.optimizer).__name__,
    )


def check_config(config: DryConfig) -> tuple[Any, ...]:
    """Build ``config`` on the meta device (net, batch, optimizer, regularizer: no weights are
    initialised, no memory is held) and run its net once on its batch there, which checks every
    layer's shapes against the batch and the labels against the output, at no cost. Returns the
    config's cost :func:`signature` (for a step that is not a
    :class:`~jacnb.lab.timing.TrainingStep`: its ``shape``); raises what the build or the net
    raises."""
    with torch.device(META):
        step = config.build(META)
        if not isinstance(step, TrainingStep):
            return ("shape", config.shape)
        logits = step.model(step.x)
        n = step.x.shape[0]
        if logits.dim() != 2 or logits.shape[0] != n or tuple(step.y.shape) != (n,):
            raise ValueError(
                f"the net maps a batch of {tuple(step.x.shape)} to {tuple(logits.shape)} with "
                f"labels of shape {tuple(step.y.shape)}; expected ({n}, classes) and ({n},)"
            )
        if step.loss == "cross_entropy":
            torch.nn.functional.cross_entropy(logits, step.y)
    return signature(step, logits)


def _error(err: BaseException) -> str:
    return "out of memory" if _is_oom(err) else f"{type(err).__name__}: {err}"


def measure(
    chapter: str,
    configs: Sequence[DryConfig],
    device: torch.device,
    data: Mapping[str, str],
    steps: int = 2,
    warmup: int = 1,
    log: Callable[[str], None] | None = None,
    probes: dict[tuple[Any, ...], tuple[str, Measurement | str]] | None = None,
) -> list[ShapeRow]:
    """One :class:`ShapeRow` per distinct ``(phase, shape)`` of ``configs``, and per cost
    :func:`signature` within it: its configs and their full-length steps, the measured seconds
    per step and peak memory of its probe, and the projected hours (steps x seconds).

    Every config is built and its net run on the meta device (:func:`check_config`); a config
    that fails there is a failure row of its own. Only one config per signature is stepped on
    ``device`` (the probe, :func:`measure_shape`); the other rows with that signature -- another
    phase, another chapter when ``probes`` (signature -> ``(probe label, measurement or error)``)
    is shared between chapters -- reuse its measurement and name it in ``probe``. A probe that
    cannot be built or stepped gives rows with ``error`` (the exception, or "out of memory")
    instead of numbers."""
    probes = {} if probes is None else probes
    groups: dict[tuple[Any, ...], list[DryConfig]] = {}
    broken: dict[tuple[Any, ...], list[DryConfig]] = {}
    for c in configs:
        try:
            sig = check_config(c)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is hidden
            broken.setdefault((c.phase, c.shape, f"config check: {_error(e)}"), []).append(c)
            continue
        groups.setdefault((c.phase, c.shape, sig), []).append(c)
    rows = []
    for (phase, shape, sig), group in groups.items():
        first = group[0]
        label = ", ".join(f"{v}" for v in shape)
        own = False
        if sig not in probes:
            own = True
            name = f"{chapter}: {phase} [{label}]"
            try:
                probes[sig] = (name, measure_shape(first.build, device, steps, warmup))
            except Exception as e:  # noqa: BLE001 - every failure is reported, none is hidden
                probes[sig] = (name, _error(e))
        name, m = probes[sig]
        row = _row(chapter, phase, first.dataset, data, label, group, m, name)
        if own and isinstance(m, Measurement):
            row.probe_seconds, row.probe_cpu_seconds = m.wall_seconds, m.cpu_seconds
        if log:
            log(_row_line(row))
        rows.append(row)
    for (phase, shape, err), group in broken.items():
        label = ", ".join(f"{v}" for v in shape)
        row = _row(chapter, phase, group[0].dataset, data, label, group, err, "")
        if log:
            log(_row_line(row))
        rows.append(row)
    return rows


def _row(
    chapter: str,
    phase: str,
    dataset: str,
    data: Mapping[str, str],
    label: str,
    group: Sequence[DryConfig],
    m: Measurement | str,
    probe: str,
) -> ShapeRow:
    total = sum(c.steps for c in group)
    source = data.get(dataset, "generated by the chapter")
    if isinstance(m, str):
        return ShapeRow(
            chapter, phase, dataset, source, label, len(group), total, None, None, None, m, 0,
            probe,
        )
    hours = total * m.seconds_per_step / 3600
    return ShapeRow(
        chapter, phase, dataset, source, label, len(group), total, m.seconds_per_step,
        m.peak_mb, hours, "", m.timed_steps, probe,
    )


def _row_line(r: ShapeRow) -> str:
    if r.error:
        return f"  FAIL {r.phase} [{r.shape}] ({r.configs} configs): {r.error}"
    own = r.probe_seconds > 0
    how = f"{r.timed_steps} timed in {r.probe_seconds:.0f} s" if own else f"probe of {r.probe}"
    return (
        f"  {r.phase} [{r.shape}] ({r.dataset}, {r.data}): {r.configs} configs, {r.steps:,} steps "
        f"x {r.seconds_per_step:.3f} s = {r.hours:.1f} h; peak {r.peak_mb:,.0f} MiB ({how})"
    )


# ---------------------------------------------------------------------------------------------
# Summary, JSON, projection
# ---------------------------------------------------------------------------------------------


def chapter_summary(rows: Sequence[ShapeRow]) -> list[dict[str, Any]]:
    """One row per chapter: configs, distinct cost shapes (the probes its rows use) and how many
    of them it timed itself (the others were timed by another chapter), full-length steps,
    projected hours on this device, the largest peak memory, the datasets (real or synthetic),
    failures, and the wall seconds its probes took."""
    out: dict[str, dict[str, Any]] = {}
    probes: dict[str, set[str]] = {}
    for r in rows:
        s = out.setdefault(
            r.chapter,
            {
                "chapter": r.chapter,
                "configs": 0,
                "shapes": 0,
                "probes_timed": 0,
                "steps": 0,
                "hours": 0.0,
                "peak_mb": 0.0,
                "data": {},
                "failures": 0,
                "probe_seconds": 0.0,
            },
        )
        s["configs"] += r.configs
        if r.probe:
            probes.setdefault(r.chapter, set()).add(r.probe)
        s["probes_timed"] += r.probe_seconds > 0
        s["steps"] += r.steps
        s["hours"] += r.hours or 0.0
        s["peak_mb"] = max(s["peak_mb"], r.peak_mb or 0.0)
        s["data"][r.dataset] = r.data
        s["failures"] += bool(r.error)
        s["probe_seconds"] += r.probe_seconds
    for s in out.values():
        s["shapes"] = len(probes.get(s["chapter"], ()))
        s["seconds_per_step"] = s["hours"] * 3600 / s["steps"] if s["steps"] else None
        s["probe_seconds"] = round(s["probe_seconds"], 1)
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
    cpu_seconds: float | None = None,
) -> dict[str, Any]:
    """The dry run as one JSON-able dict: when, where (device, commit), how (timed steps per
    shape), how long (wall seconds; ``cpu_seconds``: the CPU seconds of the process, every
    thread, which other processes on the machine do not inflate), per-shape rows and
    per-chapter summary."""
    return {
        "profile": profile,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "device": device_name(device),
        "device_type": device.type,
        "timed_steps_per_shape": steps,
        "warmup_steps_per_shape": warmup,
        "wall_seconds": round(wall_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1) if cpu_seconds is not None else None,
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
    """The cost table per chapter (what the page and the command line print): configs, distinct
    cost shapes and how many of them the chapter's own probes timed (the others reuse another
    chapter's probe of the same signature), steps, mean seconds per step, peak memory, projected
    hours on the dry run's device and on the GPU of ``gpu`` (a dry run on CUDA), else "no GPU
    measurement yet"."""
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
                "timed here": c.get("probes_timed", c["shapes"]),
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
    probes: dict[tuple[Any, ...], tuple[str, Measurement | str]] | None = None,
) -> list[ShapeRow]:
    """The dry run of one chapter module (its ``settings(profile)`` and
    ``dry_run(settings, device)`` hook) with absent datasets replaced by synthetic ones of their
    exact shape for the duration (:func:`datasets_or_synthetic`): :func:`measure` (``probes``:
    the measurements of chapters measured before, reused where a signature is the same). A hook
    that fails (e.g. a loader or config builder error) gives one failure row."""
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
        return measure(chapter, configs, device, data, steps, warmup, log, probes)


def dry_run_all(
    modules: Mapping[str, Any],
    profile: str,
    device: torch.device,
    steps: int = 2,
    warmup: int = 1,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """The dry run of several chapters (name -> module with a ``dry_run`` hook) in this process,
    one probe per cost signature across all of them, as a :func:`report`."""
    t0, c0 = time.perf_counter(), process_cpu_seconds()
    probes: dict[tuple[Any, ...], tuple[str, Measurement | str]] = {}
    rows = []
    for name, module in modules.items():
        rows += dry_run_chapter(name, module, profile, device, steps, warmup, log, probes)
    wall, cpu = time.perf_counter() - t0, process_cpu_seconds() - c0
    return report(profile, rows, device, wall, steps, warmup, cpu)


def merge(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Dry runs of different chapters made at the same time (e.g. one process per group of
    chapters) as one report: their chapters and shapes together, the longest wall time, the
    CPU seconds of all, and ``parallel`` = how many ran at once (their steps competed for the
    same cores)."""
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
    cpu = [r.get("cpu_seconds") for r in reports]
    out["cpu_seconds"] = sum(cpu) if None not in cpu else None
    out["parallel"] = len(reports)
    out["load_average"] = max((r.get("load_average") or 0.0) for r in reports)
    return out
