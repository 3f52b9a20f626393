"""What one worker does with one config, whichever executor runs it: skip it if stored, claim
it, train it, store its record (:func:`attempt`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from jacnb.lab.store.records import DIVERGED
from jacnb.lab.store.result_store import ResultStore

DONE, CACHED, BUSY = "done", "cached", "busy"


def _call(run: Callable[[Mapping[str, Any]], Mapping[str, Any]], config: Mapping[str, Any]):
    """``run(config)``; a divergence it raises (an exception with ``status == "diverged"``, such
    as :class:`jacnb.core.train.DivergedError`) becomes a ``diverged`` result with its reason."""
    try:
        return run(config)
    except Exception as err:
        if getattr(err, "status", None) != DIVERGED:
            raise
        details = getattr(err, "details", None)
        return {**(dict(details) if details else {}), "status": DIVERGED, "reason": str(err)}


def attempt(
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    store: ResultStore,
    config: Mapping[str, Any],
    reserved: int | None = None,
) -> str:
    """Train and store ``config`` unless it is stored or claimed by a live worker: what every
    worker of every executor runs. Returns ``"done"``, ``"cached"`` or ``"busy"``.
    ``reserved``: the generation of the claim the submitter took for this worker (taken over)."""
    if store.has(config):
        return CACHED
    claim = store.claim(config, reserved=reserved)
    if claim is None:
        return BUSY
    with claim:
        if store.has(config):  # finished by another worker between our check and our claim
            return CACHED
        store.put(config, _call(run, config))
    return DONE


_UNPICKLED: dict[bytes, Any] = {}


def attempt_pickled(
    payload: bytes, config: Mapping[str, Any], reserved: int | None = None
) -> str:
    """:func:`attempt` in a worker: ``payload`` is ``cloudpickle.dumps((run, store))``."""
    digest = hashlib.sha256(payload).digest()
    if digest not in _UNPICKLED:
        import cloudpickle

        _UNPICKLED.clear()
        _UNPICKLED[digest] = cloudpickle.loads(payload)
    run, store = _UNPICKLED[digest]
    return attempt(run, store, config, reserved)


def slurm_threads() -> int | None:
    """The CPUs SLURM gave this task: ``$SLURM_CPUS_PER_TASK``, else ``$SLURM_CPUS_ON_NODE``
    (a job of one task); ``None`` when neither is a positive integer."""
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def attempt_in_slurm_task(
    payload: bytes, config: Mapping[str, Any], reserved: int | None = None
) -> str:
    """:func:`attempt_pickled` in a SLURM array task, with as many torch threads as SLURM gave
    the task CPUs (:func:`slurm_threads`), not torch's default of every core of the node."""
    threads = slurm_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return attempt_pickled(payload, config, reserved)
