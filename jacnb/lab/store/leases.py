"""Claims ("leases") on runs, so that workers sharing one result store train each run once.

Before training a config, a worker creates ``<root>/.claims/<experiment>/<key>.<generation>.claim``
exclusively (:func:`jacnb.lab.store.records.create_exclusive`) holding its host, pid and start
time, and touches it every :data:`HEARTBEAT_SECONDS` while the run trains (:class:`Claim`). A
claim whose owner died (its pid is gone on the same host, or its heartbeat is older than
:data:`STALE_CLAIM_SECONDS`) is taken over by creating the next generation. Used through
:meth:`jacnb.lab.store.ResultStore.claim` by every grid of the book.

A submitter that sends runs to other processes or a cluster queue claims each run itself before
submitting it (a *reservation*, heartbeaten by the submitter), so that a second submitter does not
send it again while it waits in the queue; the worker is told the reservation's generation and
takes it over (:func:`take_claim` with ``reserved``). A claim made inside a SLURM task names the
task, so that the submitter can release it as soon as SLURM says the task ended
(:func:`release_task_claims`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from jacnb.lab.store.records import create_exclusive

#: How often a worker touches the claim of the run it trains.
HEARTBEAT_SECONDS = 15.0
#: A claim whose heartbeat is older than this (six missed beats) has lost its owner: host down,
#: process frozen or killed on another machine. Six beats rather than two or three because NFS
#: clients may cache a file's modification time for up to 60 s; hosts must agree on the time to
#: within a few tens of seconds. On the claim's own host the owner is checked directly instead
#: (:func:`owner_alive`): a dead, stopped or replaced owner loses its claim at once.
STALE_CLAIM_SECONDS = 6 * HEARTBEAT_SECONDS

CLAIMS_FOLDER = ".claims"


def claim_files(folder: Path, key: str) -> list[tuple[int, Path]]:
    """The claim files of ``key`` in ``folder`` as ``(generation, path)``, oldest first."""
    found = []
    for path in folder.glob(f"{key}.*.claim") if folder.is_dir() else []:
        with contextlib.suppress(ValueError):
            found.append((int(path.name.split(".")[1]), path))
    return sorted(found)


def claim_alive(path: Path, stale_seconds: float = STALE_CLAIM_SECONDS) -> bool:
    """Whether the owner of the claim file ``path`` may still be training: its heartbeat is
    fresh and, on this host, its process is the one that claimed (:func:`owner_alive`)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > stale_seconds:
        return False
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # unreadable: trust the heartbeat alone
    if isinstance(owner, dict) and owner.get("host") == socket.gethostname():
        return owner_alive(owner)
    return True


def this_process() -> dict[str, Any]:
    """What a claim records of its owner: host, pid, the process's start time (``start``,
    clock ticks after boot: a later process with the same pid has another), the kernel's boot
    id and the pid namespace (two containers with one host name do not share pids), and the
    time. In a SLURM task also the task (``slurm_task``: ``<array job>_<index>`` or the job id),
    so that a submitter told by SLURM that the task ended can release its claim at once."""
    pid = os.getpid()
    me: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": pid,
        "start": _proc_stat(pid)[1],
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "pidns": _pid_namespace(),
        "time": time.time(),
    }
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    task = f"{array}_{index}" if array and index else os.environ.get("SLURM_JOB_ID")
    if task:
        me["slurm_task"] = task
    return me


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process a claim on this host names is still the live owner: it exists, is
    neither a zombie nor stopped (``SIGSTOP``: it would not train until resumed, and a run
    stored meanwhile is not stored again), and has the recorded start time (not a new process
    that reuses the pid). A claim from another boot or pid namespace is judged by its heartbeat
    alone (``True`` here)."""
    boot, ns = owner.get("boot"), owner.get("pidns")
    if boot is not None and boot != _read("/proc/sys/kernel/random/boot_id"):
        return False  # the host rebooted since: every process of that boot is gone
    if ns is not None and ns != _pid_namespace():
        return True  # another container's pid: not ours to check
    pid = owner.get("pid")
    if not pid_alive(pid):
        return False
    state, start = _proc_stat(pid)
    if state == "T":
        return False
    recorded = owner.get("start")
    return recorded is None or start is None or recorded == start


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """``(state, start time)`` of process ``pid`` from ``/proc/<pid>/stat`` (fields 3 and 22);
    ``(None, None)`` where there is no ``/proc``."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None, None
    try:
        fields = text.rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None, None


def claim_generation(path: Path) -> int:
    """The generation of the claim file ``path`` (``<key>.<generation>.claim``)."""
    return int(path.name.split(".")[1])


def take_claim(
    folder: Path,
    key: str,
    stale_seconds: float = STALE_CLAIM_SECONDS,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    reserved: int | None = None,
) -> Claim | None:
    """Claim ``key`` in ``folder``; ``None`` if a live worker holds it (see
    :meth:`jacnb.lab.store.ResultStore.claim`).

    ``reserved``: the generation of a claim that a submitter took for this worker before
    submitting it (so that no other submitter sends the run again while it waits in a queue);
    if that claim is still the newest, the worker takes it over (next generation) whoever holds
    it."""
    claims = claim_files(folder, key)
    generation = 1
    if claims:
        if claims[-1][0] != reserved and claim_alive(claims[-1][1], stale_seconds):
            return None
        generation = claims[-1][0] + 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.{generation}.claim"
    if not create_exclusive(path, json.dumps(this_process()).encode()):
        return None
    for _, old in claims:  # the dead owners' generations
        old.unlink(missing_ok=True)
    return Claim(path, heartbeat_seconds)


def release_task_claims(folder: Path, key: str, slurm_task: str) -> list[Path]:
    """Remove the claims on ``key`` held by the SLURM task ``slurm_task`` (which SLURM says has
    ended: cancelled, killed, timed out); the removed files."""
    removed = []
    for _, path in claim_files(folder, key):
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(holder, dict) and holder.get("slurm_task") == slurm_task:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class Claim:
    """A held claim: heartbeats (touches its file) in a daemon thread while entered; released
    (its file removed) on exit."""

    def __init__(self, path: Path, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.path = path
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                warnings.warn(
                    f"claim {self.path} was taken over by another worker (this one was thought "
                    "dead); both may train this run (the records are identical)",
                    RuntimeWarning,
                    stacklevel=1,
                )
                return

    def __enter__(self) -> Claim:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path)
        self._thread = threading.Thread(target=self._beat, daemon=True, name="jacnb-claim")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.path.unlink(missing_ok=True)


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as dead)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
