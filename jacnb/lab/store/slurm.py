"""SLURM job arrays for :func:`jacnb.lab.store.run_grid`, through submitit, and a watch on the
tasks' SLURM states so that a task that ends without a result never leaves the submitter waiting.

submitit decides whether a task is done from its result file and from ``sacct``; on a cluster
without accounting ``sacct`` fails ("Bypassing sacct error ... status may be inaccurate") and a
task that was cancelled, killed or timed out, and so wrote no result, is waited for forever (with
accounting, submitit notices it only after its polling has backed off to minutes). Here the
submitter reads the tasks' states itself with ``squeue`` (which needs no accounting) every
``state_seconds``: a task that is no longer pending or running, or that has left the queue, and
whose result file has not appeared ``lost_grace_seconds`` later (shared file systems show files
late), is *lost*. Its claim is released, it is not stored, and once the other tasks are done
:func:`jacnb.lab.store.run_grid` raises :class:`LostRunsError` naming it, so that the next
submission trains it. A lost task is therefore noticed at most ``state_seconds`` + SLURM's
``KillWait`` + ``lost_grace_seconds`` + one ``poll`` after it ended.

Each task runs ``torch.set_num_threads($SLURM_CPUS_PER_TASK)`` (else the CPUs SLURM gave the
job, ``$SLURM_CPUS_ON_NODE``) before training, not torch's default of every core of the node.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: How often the submitter asks SLURM (``squeue``) for the states of its tasks.
STATE_SECONDS = 30.0
#: How long after its task left the queue a result file may take to appear (shared storage).
LOST_GRACE_SECONDS = 60.0
#: SLURM job states (``squeue -t all``) after which a task runs no more.
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
#: What the watch reports for a task that ``squeue`` no longer lists (purged after MinJobAge).
GONE = "GONE"


@dataclass(frozen=True)
class SlurmArrayExecutor:
    """A submitit SLURM executor (``executor``) and how the submitter watches its tasks
    (:data:`STATE_SECONDS`, :data:`LOST_GRACE_SECONDS`); made by :func:`slurm_executor`."""

    executor: Any
    state_seconds: float = STATE_SECONDS
    lost_grace_seconds: float = LOST_GRACE_SECONDS

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.executor.submit(fn, *args, **kwargs)


def slurm_executor(
    folder: str | Path,
    partition: str | None = None,
    gpus: int = 0,
    timeout_min: int = 24 * 60,
    cpus_per_task: int | None = None,
    mem_gb: float | None = None,
    parallel: int | None = None,
    *,
    state_seconds: float = STATE_SECONDS,
    lost_grace_seconds: float = LOST_GRACE_SECONDS,
    **slurm: Any,
) -> SlurmArrayExecutor:
    """An executor that runs a grid as one SLURM job array (one task per missing run).

    ``folder`` holds submitit's job scripts and logs; ``parallel`` caps how many array tasks run
    at once (``slurm_array_parallelism``); further ``slurm_*`` keywords go to submitit (e.g.
    ``slurm_account="..."``, ``slurm_qos="..."``). The store must be on storage every node sees.
    ``state_seconds`` and ``lost_grace_seconds``: see the module docstring.
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
    return SlurmArrayExecutor(executor, state_seconds, lost_grace_seconds)


def is_submitit(executor: Any) -> bool:
    """Whether ``executor`` is a submitit executor (its ``batch()`` makes one job array)."""
    return type(executor).__module__.startswith("submitit") and hasattr(executor, "batch")


def is_slurm(executor: Any) -> bool:
    """Whether ``executor`` (a submitit one) submits to SLURM, not to local processes."""
    if isinstance(executor, SlurmArrayExecutor):
        return True
    if getattr(executor, "cluster", None) == "slurm":  # submitit.AutoExecutor
        return True
    return type(executor).__name__ == "SlurmExecutor"


def result_ready(job: Any) -> bool:
    """Whether submitit's result file of ``job`` exists (refreshing the folder's attribute cache
    first, as submitit does, for NFS)."""
    folder = job.paths.folder
    try:
        folder.chmod(folder.stat().st_mode)
    except OSError:
        pass
    return job.paths.result_pickle.exists()


def squeue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """``{task id: state}`` for the array jobs of ``job_ids`` (``squeue -h -r -t all``, one
    line per array task); ``None`` if ``squeue`` is missing or fails for another reason than
    that none of the jobs is known any more."""
    arrays = sorted({str(j).split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    cmd = [squeue, "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(arrays)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1].rstrip("+")
    return states


@dataclass
class SlurmWatch:
    """Decides which of the submitter's SLURM tasks are lost (see the module docstring)."""

    state_seconds: float = STATE_SECONDS
    lost_grace_seconds: float = LOST_GRACE_SECONDS
    _states: dict[str, str] = field(default_factory=dict)
    _asked: float = float("-inf")
    _ended: dict[str, float] = field(default_factory=dict)
    _warned: bool = False

    def refresh(self, job_ids: Sequence[str]) -> None:
        """Ask ``squeue`` for the states of ``job_ids`` if the last answer is older than
        ``state_seconds``."""
        now = time.monotonic()
        if now - self._asked < self.state_seconds:
            return
        self._asked = now
        states = squeue_states(job_ids)
        if states is None:
            if not self._warned:
                warnings.warn(
                    "squeue is missing or fails: tasks that die without a result are not "
                    "noticed until submitit notices them (which, without SLURM accounting, may "
                    "be never)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._warned = True
            return
        self._states = {str(j): states.get(str(j), GONE) for j in job_ids}
        for job_id, state in self._states.items():
            if state in ENDED_STATES or state == GONE:
                self._ended.setdefault(job_id, now)
            else:  # pending again (requeued) or running
                self._ended.pop(job_id, None)

    def lost(self, job_id: str) -> str | None:
        """The state of ``job_id`` if it ended ``lost_grace_seconds`` ago (the caller has seen
        no result file since), else ``None``."""
        ended = self._ended.get(str(job_id))
        if ended is None or time.monotonic() - ended < self.lost_grace_seconds:
            return None
        return self._states.get(str(job_id), GONE)


@dataclass(frozen=True)
class LostRun:
    """A task that ended without a result: its config, SLURM task id and last state (``GONE``:
    no longer listed), and its log file."""

    config: Mapping[str, Any]
    job_id: str
    state: str
    log: str


class LostRunsError(RuntimeError):
    """Tasks ended without a result (cancelled, killed, timed out, node failure): they are not
    stored and the next submission of the grid trains them; ``lost`` lists them."""

    def __init__(self, lost: Sequence[LostRun]) -> None:
        self.lost = list(lost)
        names = "; ".join(
            f"{dict(r.config)} (SLURM task {r.job_id}, {r.state}, log {r.log})" for r in self.lost
        )
        super().__init__(
            f"{len(self.lost)} run(s) ended without a result and were not stored: {names}. The "
            "grid's other runs are stored; run the grid again to train these."
        )


def unwrap(executor: Any) -> Any:
    """The object to submit to: the submitit executor inside a :class:`SlurmArrayExecutor`,
    else ``executor`` itself."""
    return executor.executor if isinstance(executor, SlurmArrayExecutor) else executor


def watch_for(executor: Any) -> SlurmWatch | None:
    """A :class:`SlurmWatch` for a SLURM executor (with its settings, or the defaults for a bare
    submitit one), ``None`` for any other executor (its futures say themselves when they end)."""
    if isinstance(executor, SlurmArrayExecutor):
        return SlurmWatch(executor.state_seconds, executor.lost_grace_seconds)
    if is_submitit(executor) and is_slurm(executor):
        return SlurmWatch()
    return None
