"""Step timers shared by the timing chapter (notebooks/06_timing.ipynb, Table VI of Sokolić et
al., Sec. VI-D), the cost projection of the weight-normalization chapter (Fig. 4) and the scripts
in ``benchmarks/`` (which import them from here; the package never imports a benchmark).

* :func:`sync` -- wait for the device's kernels (CUDA), so a wall-clock time covers them;
* :func:`time_calls` -- seconds of ``repeats`` calls after ``warmup`` untimed ones;
* :func:`time_once` -- the result of one call and its seconds;
* :func:`time_interleaved` -- several steps timed in interleaved blocks (slow drifts of a shared
  machine then hit every step alike);
* :func:`make_step` -- one SGD step of the book's training loop as a callable
  (:class:`TrainingStep`);
* :func:`regularizer_steps` -- one such step per regularizer, each on a copy of the same model;
* :class:`StepRegularizer`, :data:`STEP_REGULARIZERS` -- the regularizers timed, keyed by
  :mod:`jacnb.core.regularizers`' names; :func:`step_regularizer`, :func:`step_label`;
* :func:`load_note` -- a warning when other processes compete for the cores.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

from jacnb.core.regularizers import Regularizer, make_regularizer
from jacnb.core.train import training_step

T = TypeVar("T")

@dataclass(frozen=True)
class StepRegularizer:
    """A regularizer as :mod:`jacnb.core.regularizers` names it: the ``name`` of
    :func:`~jacnb.core.regularizers.make_regularizer` (``none``, ``weight_decay``, ``jacobian``,
    ``per_layer``) and, for ``jacobian`` (eq. 49), its ``method`` (``exact``: all C rows, eq. 50;
    ``projection``: ``n_proj`` random projections) and the ``strategy`` that takes the C rows
    (``None``: the default). Its :attr:`key` and :attr:`label` are derived from these, here only:
    the rows of Table VI (notebooks/06_timing.ipynb) and of ``benchmarks/`` are keyed by
    :attr:`key` and shown by :attr:`label`."""

    name: str
    method: str | None = None
    n_proj: int | None = None
    strategy: str | None = None

    @property
    def key(self) -> str:
        """``name``, or for ``jacobian`` the method, the projections and the strategy:
        ``exact_class_loop``, ``projection_1``..."""
        if self.name != "jacobian":
            return self.name
        parts = [self.method or "exact"]
        if self.method == "projection":
            parts.append(str(self.n_proj or 1))
        if self.strategy:
            parts.append(self.strategy)
        return "_".join(parts)

    @property
    def label(self) -> str:
        """The row's name on a page, with the paper's equation."""
        if self.name == "jacobian":
            if self.method == "projection":
                return f"Jac. reg., projection (49), n_proj={self.n_proj or 1}"
            how = f", {self.strategy.replace('_', ' ')}" if self.strategy else ""
            return f"Jac. reg., exact (49){how}"
        return {"none": "no reg.", "weight_decay": "weight decay"}.get(
            self.name, "Jac. reg., per-layer (52)"
        )

    def build(self) -> Regularizer | None:
        """The regularizer, by :func:`jacnb.core.regularizers.make_regularizer` (``none``:
        ``None``, the plain step)."""
        kwargs = {k: v for k, v in (("method", self.method), ("n_proj", self.n_proj),
                                    ("strategy", self.strategy)) if v is not None}
        return make_regularizer(self.name, **kwargs)


#: Every regularizer a step timer here times (Table VI, ``benchmarks/``), by :attr:`key`.
STEP_REGULARIZERS: dict[str, StepRegularizer] = {
    r.key: r
    for r in (
        StepRegularizer("none"),
        StepRegularizer("weight_decay"),
        StepRegularizer("jacobian", "exact", strategy="class_loop"),
        StepRegularizer("jacobian", "exact", strategy="vmap"),
        StepRegularizer("jacobian", "projection", n_proj=1),
        StepRegularizer("jacobian", "projection", n_proj=4),
        StepRegularizer("per_layer"),
    )
}


def step_regularizer(key: str) -> Regularizer | None:
    """The regularizer of a key of :data:`STEP_REGULARIZERS` (``"none"`` -> ``None``), built by
    :func:`jacnb.core.regularizers.make_regularizer`."""
    if key not in STEP_REGULARIZERS:
        raise ValueError(f"unknown regularizer {key!r}; valid: {list(STEP_REGULARIZERS)}")
    return STEP_REGULARIZERS[key].build()


def step_label(key: str) -> str:
    """The page label of a key of :data:`STEP_REGULARIZERS`."""
    return STEP_REGULARIZERS[key].label


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued kernels (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    step: Callable[[], object], device: torch.device, repeats: int = 10, warmup: int = 2
) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``step`` after ``warmup`` untimed calls.

    Uses :func:`time.perf_counter`; on CUDA the device is synchronized before and after each
    call so that the time covers the kernels, not just their launch.
    """
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def time_once(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """``(fn(), seconds)`` with the device synchronized before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def time_interleaved(
    steps: Mapping[str, Callable[[], object]],
    device: torch.device,
    repeats: int = 10,
    warmup: int = 2,
    rounds: int = 2,
) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of every step: after ``warmup`` untimed calls each, the timed
    calls are split into ``rounds`` blocks that visit the steps in turn, so that slow drifts of
    the machine (thermal, other processes) spread evenly over them."""
    for step in steps.values():
        time_calls(step, device, repeats=0, warmup=warmup)
    times: dict[str, list[float]] = {name: [] for name in steps}
    rounds = max(1, min(rounds, repeats))
    for r in range(rounds):
        block = repeats // rounds + (1 if r < repeats % rounds else 0)
        for name, step in steps.items():
            times[name] += time_calls(step, device, repeats=block, warmup=0)
    return times


@dataclass
class TrainingStep:
    """One full SGD step of the book's training loop on a fixed batch, as a callable: each call
    is :func:`jacnb.core.train.training_step` (cross-entropy or squared loss ``+ lam * reg``,
    the regularizer sharing the forward pass) with its own SGD (momentum 0.9) ``optimizer``; it
    returns the loss. Its parts stay readable, so that the dry run (:mod:`jacnb.lab.dryrun`) can
    check a net against its batch and tell steps of equal cost apart."""

    model: nn.Module
    reg: Callable[[nn.Module, Tensor], Tensor] | None
    x: Tensor
    y: Tensor
    lam: float
    loss: str
    optimizer: torch.optim.Optimizer

    def __call__(self) -> float:
        lam = self.lam if self.reg else 0.0
        return training_step(self.model, self.x, self.y, self.optimizer, self.loss, self.reg, lam)


def make_step(
    model: nn.Module,
    reg: Callable[[nn.Module, Tensor], Tensor] | None,
    x: Tensor,
    y: Tensor,
    lam: float = 0.1,
    lr: float = 0.01,
    loss: str = "cross_entropy",
) -> TrainingStep:
    """One full SGD step as a :class:`TrainingStep`: :func:`jacnb.core.train.training_step`, the
    step the book's training loop takes (cross-entropy ``+ lam * reg``, the regularizer sharing
    the forward pass), with its own SGD (momentum 0.9) optimizer on ``model``; each call returns
    the loss (``loss``: ``"cross_entropy"`` or ``"squared"``, as
    :func:`jacnb.core.train.training_step`)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return TrainingStep(model, reg, x, y, lam, loss, optimizer)


def regularizer_steps(
    base: nn.Module,
    regularizers: Mapping[str, Callable[[nn.Module, Tensor], Tensor] | None],
    x: Tensor,
    y: Tensor,
    lam: float = 0.1,
    lr: float = 0.01,
) -> dict[str, TrainingStep]:
    """One :func:`make_step` per regularizer (label -> regularizer, ``None``: the plain step),
    each on its own copy of the same initial ``base`` model with its own optimizer: what
    :func:`time_interleaved` times for Table VI, Fig. 3's cost and ``benchmarks/``."""
    return {
        label: make_step(copy.deepcopy(base), reg, x, y, lam=lam, lr=lr)
        for label, reg in regularizers.items()
    }


def default_threads() -> int:
    """Number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def load_note(threads: int, samples: int = 10, interval: float = 0.05) -> str:
    """A warning when other processes are running right now (Linux ``/proc/loadavg``).

    Samples the number of runnable tasks ``samples`` times, ``interval`` seconds apart, and
    subtracts this process; a mean of >= 0.5 other runnable tasks means that the timings compete
    for the cores. (The load *average* is no use here: it still counts a run that just ended.)
    """
    counts = []
    try:
        for _ in range(samples):
            with open("/proc/loadavg") as fh:
                counts.append(int(fh.read().split()[3].split("/")[0]) - 1)
            time.sleep(interval)
    except (OSError, ValueError, IndexError):
        return ""
    others = sum(counts) / len(counts)
    if others < 0.5:
        return ""
    return (
        f"WARNING: on average {others:.1f} other runnable tasks on {default_threads()} cores "
        f"({threads} torch threads): timings and ratios are noisy."
    )
