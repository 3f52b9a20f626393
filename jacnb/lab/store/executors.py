"""Executors for :func:`jacnb.lab.store.run_grid`: a local process pool (:class:`LocalPool`),
SLURM job arrays through submitit (:func:`slurm_executor`), and the submit/wait loop that sends
one task per missing run to any of them (or to any ``concurrent.futures.Executor``).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jacnb.lab.store.worker import BUSY, attempt_pickled
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


def slurm_executor(
    folder: str | Path,
    partition: str | None = None,
    gpus: int = 0,
    timeout_min: int = 24 * 60,
    cpus_per_task: int | None = None,
    mem_gb: float | None = None,
    parallel: int | None = None,
    **slurm: Any,
) -> Any:
    """A submitit executor that runs a grid as one SLURM job array (one task per missing run).

    ``folder`` holds submitit's job scripts and logs; ``parallel`` caps how many array tasks run
    at once (``slurm_array_parallelism``); further ``slurm_*`` keywords go to submitit (e.g.
    ``slurm_account="..."``, ``slurm_qos="..."``). The store must be on storage every node sees.
    """
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, Any] = {"timeout_min": timeout_min, "gpus_per_node": gpus, **slurm}
    if partition is not None:
        params["slurm_partition"] = partition
    if cpus_per_task is not None:
        params["cpus_per_task"] = cpus_per_task
    if mem_gb is not None:
        params["mem_gb"] = mem_gb
    if parallel is not None:
        params["slurm_array_parallelism"] = parallel
    executor.update_parameters(**params)
    return executor


def _is_submitit(executor: Any) -> bool:
    return type(executor).__module__.startswith("submitit") and hasattr(executor, "batch")


def _submit(executor: Any, payload: bytes, configs: list[Mapping[str, Any]]) -> list[Any]:
    if _is_submitit(executor):
        with executor.batch():  # one job array
            jobs = [executor.submit(attempt_pickled, payload, dict(c)) for c in configs]
        return jobs
    return [executor.submit(attempt_pickled, payload, dict(c)) for c in configs]


def _wait_round(
    handles: list[Any], poll: float, bar: Any
) -> tuple[list[int], BaseException | None]:
    """Wait for every handle (futures or submitit jobs); the indices that came back ``busy`` and
    the first error. After an error, handles not yet started are cancelled."""
    busy: list[int] = []
    error: BaseException | None = None
    remaining = set(range(len(handles)))
    while remaining:
        futures = [handles[i] for i in remaining]
        if all(isinstance(f, concurrent.futures.Future) for f in futures):
            concurrent.futures.wait(futures, timeout=poll, return_when="FIRST_COMPLETED")
        for i in sorted(remaining):
            handle = handles[i]
            if not handle.done():
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
    return busy, error


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


def run_with(executor, todo, run, store, poll, bar) -> None:
    import cloudpickle

    payload = cloudpickle.dumps((run, store))
    pending = list(todo)
    while pending:
        pending = [c for c in pending if not store.has(c)]
        ready = [c for c in pending if not store.claimed(c)]
        if not ready:
            if pending:
                bar.set_postfix_str(f"waiting for {len(pending)} runs claimed by other workers")
                time.sleep(poll)
            continue
        handles = _submit(executor, payload, ready)
        busy, error = _wait_round(handles, poll, bar)
        if error is not None:
            raise error
        waiting = [c for c in pending if not any(c is r for r in ready)]
        pending = waiting + [ready[i] for i in busy]
        if pending:
            time.sleep(poll)
