"""Executors for :func:`jacnb.lab.store.run_grid`: a local process pool (:class:`LocalPool`),
and the submit/wait loop (:func:`run_with`) that sends one task per missing run to it, to any
``concurrent.futures.Executor`` or to SLURM (:func:`jacnb.lab.store.slurm.slurm_executor`: one
job array per round, watched with ``squeue``). The submitter claims each run before submitting it
(:class:`Reservations`), so a run that waits in a queue is not sent again by another submitter.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jacnb.lab.store.leases import Claim, claim_generation
from jacnb.lab.store.result_store import ResultStore
from jacnb.lab.store.slurm import (
    LostRun,
    LostRunsError,
    SlurmWatch,
    is_slurm,
    is_submitit,
    result_ready,
    unwrap,
    watch_for,
)
from jacnb.lab.store.worker import BUSY, attempt_in_slurm_task, attempt_pickled
from jacnb.lab.store.worker_pool import WorkerPool
from jacnb.lab.timing import default_threads


@dataclass(frozen=True)
class LocalPool:
    """A pool of ``workers`` local worker processes (default: one per core), each running
    ``torch.set_num_threads(max(1, cores // workers))``. Pass it (or ``"local"``) as
    ``run_grid(..., executor=...)``. The processes are started with ``spawn`` on first use and
    kept for the next grids of this process (a chapter runs several), until :meth:`shutdown`,
    an interrupted grid (:meth:`stop`), or the end of the process. A worker that dies costs
    only its run, which a fresh worker retries (:mod:`jacnb.lab.store.worker_pool`)."""

    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise ValueError(f"LocalPool.workers must be a positive integer, got {self.workers!r}")

    @property
    def n_workers(self) -> int:
        return self.workers or default_threads()

    @property
    def threads_per_worker(self) -> int:
        return max(1, default_threads() // self.n_workers)

    def executor(self) -> WorkerPool:
        """The running pool of this size (started if there is none, or it was stopped)."""
        pool = _LOCAL_POOLS.get(self)
        if pool is None or pool.closed:
            pool = WorkerPool(self.n_workers, self.threads_per_worker)
            _LOCAL_POOLS[self] = pool
        return pool

    def shutdown(self) -> None:
        """Stop this pool's worker processes once their runs are done (runs not yet started
        are cancelled)."""
        pool = _LOCAL_POOLS.pop(self, None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """Stop this pool's worker processes now: their runs unwind (claims released) and are
        lost; what they had stored stays stored."""
        pool = _LOCAL_POOLS.pop(self, None)
        if pool is not None:
            pool.stop()


_LOCAL_POOLS: dict[LocalPool, WorkerPool] = {}


@atexit.register
def _shutdown_local_pools() -> None:
    for pool in list(_LOCAL_POOLS):
        pool.shutdown()


class Reservations:
    """The claims a submitter takes on the runs it submits (see :mod:`jacnb.lab.store.leases`),
    so that another submitter does not send them again while they wait in a queue: touched every
    ``heartbeat`` seconds in one thread until their worker takes them over (their file is then
    gone); those still held are released when the grid ends, however it ends."""

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self._paths: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="jacnb-reserve")

    def __enter__(self) -> Reservations:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            for path in self._paths:
                path.unlink(missing_ok=True)
            self._paths.clear()

    def add(self, claim: Claim) -> int:
        """Hold ``claim`` for a worker; its generation, which the worker is given."""
        with self._lock:
            self._paths.add(claim.path)
        return claim_generation(claim.path)

    def release(self, path: Path) -> None:
        with self._lock:
            self._paths.discard(path)
        path.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                for path in list(self._paths):
                    try:
                        os.utime(path)
                    except FileNotFoundError:  # its worker took it over
                        self._paths.discard(path)


@dataclass(frozen=True)
class _Task:
    """One submitted run: which grid's payload, its config, its reservation."""

    grid: int
    config: Mapping[str, Any]
    reservation: Path
    generation: int


def _submit(executor: Any, payloads: Sequence[bytes], tasks: Sequence[_Task]) -> list[Any]:
    """Submit every task; to a submitit executor as one job array."""
    target = unwrap(executor)
    fn = attempt_in_slurm_task if is_submitit(target) and is_slurm(target) else attempt_pickled
    if is_submitit(target):
        with target.batch():  # one job array
            return [
                target.submit(fn, payloads[t.grid], dict(t.config), t.generation) for t in tasks
            ]
    return [target.submit(fn, payloads[t.grid], dict(t.config), t.generation) for t in tasks]


def _wait_round(
    handles: list[Any], poll: float, bar: Any, watch: SlurmWatch | None = None
) -> tuple[list[int], BaseException | None, list[tuple[int, str, str]]]:
    """Wait for every handle (futures or submitit jobs): the indices that came back ``busy``,
    the first error, and the SLURM tasks that ended without a result as ``(index, task id,
    state)`` (only with a ``watch``). After an error, handles not yet started are cancelled."""
    busy: list[int] = []
    lost: list[tuple[int, str, str]] = []
    error: BaseException | None = None
    remaining = set(range(len(handles)))
    while remaining:
        futures = [handles[i] for i in remaining]
        if all(isinstance(f, concurrent.futures.Future) for f in futures):
            concurrent.futures.wait(futures, timeout=poll, return_when="FIRST_COMPLETED")
        if watch is not None:
            finished = {i: result_ready(handles[i]) for i in remaining}
            watch.refresh([handles[i].job_id for i in remaining if not finished[i]])
        for i in sorted(remaining):
            handle = handles[i]
            if watch is not None:
                if not finished[i]:
                    state = watch.lost(handle.job_id)
                    if state is not None:
                        remaining.discard(i)
                        lost.append((i, str(handle.job_id), state))
                    continue
            elif not handle.done():
                continue
            remaining.discard(i)
            try:
                outcome = handle.result()
            except BaseException as err:  # noqa: BLE001 - re-raised once the others are done
                if error is None:
                    error = err
                    for j in remaining:
                        if isinstance(handles[j], concurrent.futures.Future):
                            handles[j].cancel()
                continue
            if outcome == BUSY:
                busy.append(i)
            else:
                bar.update(1)
        if remaining and not all(
            isinstance(handles[i], concurrent.futures.Future) for i in remaining
        ):
            time.sleep(poll)
    return busy, error, lost


#: The environment variable that names the executor of a grid called with ``executor=None``:
#: unset, empty or ``"none"`` -- in this process; ``"local"`` -- a :class:`LocalPool` with one
#: single-threaded worker per core. ``python -m jacnb.book`` sets it to ``"local"`` for the
#: ``cpu`` profile on a CPU of two or more cores (see :func:`jacnb.book.grid_executor`); the pool's
#: workers set it to ``"none"``, so a grid started inside a run stays in its worker.
EXECUTOR_ENV = "JACNB_EXECUTOR"


def default_executor() -> Any:
    """The executor of a grid called with ``executor=None``: ``$JACNB_EXECUTOR``
    (:data:`EXECUTOR_ENV`) -- ``None`` (in this process) or ``"local"``."""
    value = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if value in ("", "none"):
        return None
    if value == "local":
        return "local"
    raise ValueError(
        f"{EXECUTOR_ENV}={os.environ[EXECUTOR_ENV]!r} is not an executor; set it to 'local' "
        "(one worker process per core) or 'none' (train in this process), or unset it"
    )


def resolve_executor(executor: Any) -> tuple[Any, LocalPool | None, int]:
    """``(executor, local_pool, in_flight)``: the object to submit to, the :class:`LocalPool`
    it comes from (shut down if the grid is interrupted), and how many runs it trains at once
    (for the room check)."""
    if executor == "local":
        executor = LocalPool()
    if isinstance(executor, LocalPool):
        return executor.executor(), executor, executor.n_workers
    if isinstance(executor, str):
        raise ValueError(
            f"unknown executor {executor!r}; valid: None, 'local', a LocalPool, a "
            "concurrent.futures.Executor or a submitit executor"
        )
    if not hasattr(executor, "submit"):
        raise TypeError(f"executor {executor!r} has no submit()")
    return executor, None, int(getattr(executor, "_max_workers", 0) or 1 << 30)


def run_with(
    executor: Any,
    todo: Sequence[tuple[int, Mapping[str, Any]]],
    runs: Sequence[Callable[[Mapping[str, Any]], Mapping[str, Any]]],
    store: ResultStore,
    poll: float,
    bar: Any,
) -> None:
    """Train ``todo`` (``(grid, config)``: ``runs[grid](config)``) through ``executor``, all
    missing runs of all grids in one submission (one SLURM job array) per round.

    Before a run is submitted it must have no record and no live claim, and the submitter claims
    it (:class:`Reservations`); runs claimed elsewhere are waited for and submitted again only if
    their worker dies without a record. SLURM tasks that end without a result are released and,
    once the others are done, raised as :class:`~jacnb.lab.store.slurm.LostRunsError`."""
    import cloudpickle

    payloads = [cloudpickle.dumps((run, store)) for run in runs]
    watch = watch_for(executor)
    lost: list[LostRun] = []
    pending = list(todo)
    with Reservations(store.heartbeat_seconds) as held:
        while pending:
            tasks: list[_Task] = []
            waiting: list[tuple[int, Mapping[str, Any]]] = []
            for grid, config in pending:
                if store.has(config):
                    continue
                claim = store.claim(config)
                if claim is None:
                    waiting.append((grid, config))
                else:
                    tasks.append(_Task(grid, config, claim.path, held.add(claim)))
            if not tasks:
                if waiting:
                    bar.set_postfix_str(f"waiting for {len(waiting)} runs claimed by other workers")
                    time.sleep(poll)
                pending = waiting
                continue
            handles = _submit(executor, payloads, tasks)
            busy, error, gone = _wait_round(handles, poll, bar, watch)
            for i, job_id, state in gone:
                task = tasks[i]
                held.release(task.reservation)
                store.release_task_claims(task.config, job_id)
                log = getattr(getattr(handles[i], "paths", None), "stderr", "")
                lost.append(LostRun(task.config, job_id, state, str(log)))
            if error is not None:
                if lost:
                    warnings.warn(str(LostRunsError(lost)), RuntimeWarning, stacklevel=2)
                raise error
            pending = waiting + [(tasks[i].grid, tasks[i].config) for i in busy]
            if pending:
                time.sleep(poll)
    if lost:
        raise LostRunsError(lost)
