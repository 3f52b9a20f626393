"""The result store: one JSON record per finished run, keyed by a hash of its config.

Every chapter's grid goes through :func:`run_grid`, which skips every config with a valid
record, so re-running a notebook repeats nothing and a killed grid resumes where it stopped.
The store is built not to lie, whatever happens to the processes writing it:

* **Atomic writes.** A record is written to a temporary file in its own folder (``.tmp-*``),
  flushed to disk (``fsync``) and renamed over its final name (``os.replace``): a run killed
  mid-write leaves no record or a complete one. Temporary files are never read as records (only
  ``<16 hex digits>.json`` names are) and are removed once older than
  :data:`STALE_TMP_SECONDS` (:meth:`ResultStore.clean_tmp`, called by every :func:`run_grid`).
* **Validated reads.** A record counts only if it parses as UTF-8 JSON, is an object that carries
  its ``config`` and ``result``, and its ``key`` equals its file name (and its experiment its
  folder). A damaged one (truncated, empty, ``{}``, not UTF-8, ...) is moved to the folder's
  ``.quarantine/`` with a warning naming it, and its run is recomputed.
* **Honest values.** Records are strict JSON (``allow_nan=False``): a non-finite float is stored
  as ``null`` and listed under the record's ``nonfinite`` entry (its path and ``"nan"``,
  ``"inf"`` or ``"-inf"``), from which :meth:`ResultStore.get`, :meth:`~ResultStore.records` and
  :meth:`~ResultStore.frame` restore it. Every record has a ``status``: ``"ok"`` or
  ``"diverged"`` (with a ``reason``), see :func:`run_grid`.
* **One run trained once.** Before training a config, a worker *claims* it
  (:meth:`ResultStore.claim`): an exclusively created file holding its host, pid and start
  time, touched every :data:`HEARTBEAT_SECONDS` while the run trains. Workers skip configs claimed
  by live workers and come back for them at the end (waiting for their records); a claim whose
  owner died (its pid is gone on the same host, or its heartbeat is older than
  :data:`STALE_CLAIM_SECONDS`) is taken over. Record layout, claims and writes are the same
  whichever executor runs the grid (in-process, a local process pool, any
  ``concurrent.futures.Executor``, submitit/SLURM job arrays), so the records of a parallel run
  are byte-identical to those of a sequential one.
* **Early failure.** Before training anything, :func:`run_grid` checks that the store is
  writable (a probe file is written and removed) and that its disk has room for the records and
  checkpoints still to come (:meth:`ResultStore.check_room`).

Used by every notebook (``notebooks/01_theory`` ... ``07_low_rank_jacobian``) and by
``python -m jacnb.run`` (a chapter's grid without its notebook).

Parallel and distributed grids (``executor=``)::

    run_grid(configs, fn, store)                              # in-process, as always
    run_grid(configs, fn, store, executor="local")            # one process per core
    run_grid(configs, fn, store, executor=LocalPool(8))       # 8 processes, cores // 8 threads
    with ThreadPoolExecutor(4) as pool:                       # any concurrent.futures.Executor
        run_grid(configs, fn, store, executor=pool)
    run_grid(configs, fn, store, executor=slurm_executor("jobs", partition="gpu", gpus=1))

    # Dask: its client's executor is a concurrent.futures.Executor
    from distributed import Client
    run_grid(configs, fn, store, executor=Client("scheduler:8786").get_executor())

    # Ray: ObjectRef.future() is a concurrent.futures.Future, so a five-line adapter does
    import ray
    class RayExecutor(concurrent.futures.Executor):
        def submit(self, fn, /, *args, **kwargs):
            return ray.remote(fn).remote(*args, **kwargs).future()
    run_grid(configs, fn, store, executor=RayExecutor())

On a cluster the store (``$JACNB_RESULTS``) must be a folder every worker sees (shared storage);
the claims live in it too. ``fn`` is sent to the workers with ``cloudpickle`` (closures and
lambdas work); the workers write the records, the calling process waits and then reads them.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from jacnb.core.train import progress_off

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_root() -> Path:
    """``$JACNB_RESULTS`` or ``<repo>/results``."""
    return Path(os.environ.get("JACNB_RESULTS", REPO_ROOT / "results"))


def canonical(config: Mapping[str, Any]) -> str:
    """The config as canonical JSON (sorted keys), the input of :func:`config_key`."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_key(config: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit key: SHA-256 of the canonical JSON of the config."""
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:16]


#: Record statuses: a run that finished (``ok``) or was stopped because it diverged.
OK = "ok"
DIVERGED = "diverged"
STATUSES = (OK, DIVERGED)

#: Estimated disk use of one record, for the room check of :func:`run_grid`. Records of the
#: book's grids hold scalars and short curves: 0.5-5 KB at the ``smoke`` profile; 64 KiB leaves a
#: wide margin for longer curves and spectra at ``paper``.
RECORD_BYTES = 64 * 1024
#: A temporary file older than this is a leftover of a killed write (a record write takes
#: milliseconds, a checkpoint write seconds to minutes) and is removed.
STALE_TMP_SECONDS = 3600.0
#: How often a worker touches the claim of the run it trains.
HEARTBEAT_SECONDS = 30.0
#: A claim whose heartbeat is older than this (ten missed beats) has lost its owner: host down,
#: process frozen or killed on another machine. Hosts must agree on the time to within minutes.
STALE_CLAIM_SECONDS = 300.0
#: Suffix of a run's training checkpoint beside its record (``<key>.train.pt``, ResNet runs).
TRAIN_CHECKPOINT_SUFFIX = ".train.pt"

_TMP = ".tmp-"
_QUARANTINE = ".quarantine"
_CLAIMS = ".claims"
_RECORD_NAME = re.compile(r"^[0-9a-f]{16}\.json$")


class StoreError(OSError):
    """The store cannot take the grid's records (not writable, no room); nothing was trained."""


class InvalidRecordError(ValueError):
    """A record file that does not parse or does not carry its key, config and result."""


def _keep_weights_default() -> bool:
    return os.environ.get("JACNB_KEEP_WEIGHTS", "").lower() in ("1", "true", "yes")


class ResultStore:
    """A folder of ``<experiment>/<key>.json`` records:
    ``{"key", "config", "status", "reason", "result"[, "nonfinite"]}``.

    ``keep_weights``: keep a finished run's training checkpoint (``<key>.train.pt``, the model
    weights of a ResNet run) after its record is stored; default ``$JACNB_KEEP_WEIGHTS`` or
    ``False`` (the checkpoint is removed once the record is safe).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        keep_weights: bool | None = None,
        stale_claim_seconds: float = STALE_CLAIM_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.keep_weights = _keep_weights_default() if keep_weights is None else keep_weights
        self.stale_claim_seconds = stale_claim_seconds
        self.heartbeat_seconds = heartbeat_seconds

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r}, keep_weights={self.keep_weights})"

    def path(self, config: Mapping[str, Any]) -> Path:
        experiment = str(config.get("experiment", "misc"))
        return self.root / experiment / f"{config_key(config)}.json"

    # -- reading -------------------------------------------------------------------------------

    def has(self, config: Mapping[str, Any]) -> bool:
        """Whether a *valid* record exists (a damaged one is quarantined: ``False``)."""
        return self._load(self.path(config)) is not None

    def record(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The whole record (non-finite values restored), or ``None``."""
        return self._load(self.path(config))

    def get(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The run's result (non-finite values restored), or ``None`` if there is no valid one."""
        rec = self._load(self.path(config))
        return None if rec is None else rec["result"]

    def records(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """Every valid record (of one experiment), in file-name order. Temporary and quarantined
        files are never read; damaged records are quarantined with a warning and skipped."""
        if experiment is not None:
            folders = [self.root / experiment]
        elif self.root.is_dir():
            folders = sorted(
                d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
            )
        else:
            folders = []
        out = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if _RECORD_NAME.match(path.name):
                    rec = self._load(path)
                    if rec is not None:
                        out.append(rec)
        return out

    def frame(self, experiment: str | None = None) -> pd.DataFrame:
        """Tidy DataFrame: one row per run, config keys and scalar results as columns, then
        ``status`` and ``reason`` (``record_status``/``record_reason`` if those names are taken).

        Non-scalar results (curves, lists) stay in their cell as lists.
        """
        rows = []
        for rec in self.records(experiment):
            row = {"key": rec["key"], **rec["config"]}
            for name, value in rec["result"].items():
                row[name if name not in row else f"result_{name}"] = value
            for name in ("status", "reason"):
                row[name if name not in row else f"record_{name}"] = rec[name]
            rows.append(row)
        return pd.DataFrame(rows)

    def _load(self, path: Path) -> dict[str, Any] | None:
        """The validated record at ``path``; ``None`` if absent or damaged (then quarantined)."""
        try:
            before = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return _decode(_validate(path, data))
        except InvalidRecordError as err:
            with contextlib.suppress(FileNotFoundError):
                after = path.stat()
                if (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
                    return self._load(path)  # replaced by a writer meanwhile: read the new one
                self.quarantine(path, str(err))
            return None

    def quarantine(self, path: Path, why: str) -> Path | None:
        """Move a damaged file into ``<its folder>/.quarantine/`` with a warning naming it."""
        folder = path.parent / _QUARANTINE
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = folder / f"{path.name}.{stamp}-{os.getpid()}-{threading.get_ident() % 10**6}"
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            return None  # another reader moved it first
        warnings.warn(
            f"damaged file {path} ({why}) moved to {dest}; its run will be recomputed",
            UserWarning,
            stacklevel=4,
        )
        return dest

    # -- writing -------------------------------------------------------------------------------

    def put(
        self,
        config: Mapping[str, Any],
        result: Mapping[str, Any],
        *,
        status: str | None = None,
        reason: str | None = None,
    ) -> Path:
        """Write the record atomically (temp file, fsync, rename); returns its path.

        ``status``/``reason`` default to the result's own ``status``/``reason`` entries (which
        then move to the record's top level), else ``"diverged"`` with the result's ``diverged``
        message when that is a non-empty string (the chapters' convention), else ``"ok"``.
        Non-finite floats are stored as ``null`` and listed under ``nonfinite``. Once the record
        is on disk, the run's training checkpoint is removed unless ``keep_weights``.
        """
        path = self.path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = dict(result)
        if status is None and "status" in result:
            status = result.pop("status")
            reason = result.pop("reason", reason)
        if status is None:
            flagged = result.get("diverged")
            status = DIVERGED if isinstance(flagged, str) and flagged else OK
            reason = flagged if status == DIVERGED and reason is None else reason
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        nonfinite: list[dict[str, Any]] = []
        record = {
            "key": config_key(config),
            "config": _encode(dict(config), ["config"], nonfinite),
            "status": status,
            "reason": "" if reason is None else str(reason),
            "result": _encode(result, ["result"], nonfinite),
        }
        if nonfinite:
            record["nonfinite"] = nonfinite
        text = json.dumps(record, allow_nan=False)
        write_atomic(path, text.encode("utf-8"))
        if not self.keep_weights:
            self.discard_checkpoints(config)
        return path

    def checkpoint_path(self, config: Mapping[str, Any]) -> Path:
        """Where the model weights of a run are kept (beside its record)."""
        return self.path(config).with_suffix(".pt")

    def train_checkpoint_path(self, config: Mapping[str, Any]) -> Path:
        """Where a run's training checkpoint lives while it trains (``<key>.train.pt``)."""
        return self.path(config).with_suffix(TRAIN_CHECKPOINT_SUFFIX)

    def discard_checkpoints(self, config: Mapping[str, Any]) -> None:
        """Remove the run's training checkpoint and its previous generation."""
        ckpt = self.train_checkpoint_path(config)
        for path in (ckpt, ckpt.with_name(ckpt.name + ".prev")):
            path.unlink(missing_ok=True)

    def clean_tmp(self, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
        """Remove temporary files (``.tmp-*``) older than ``max_age`` seconds from the store
        (leftovers of writes killed mid-way; younger ones may belong to a live writer)."""
        if not self.root.is_dir():
            return []
        now = time.time()
        removed = []
        patterns = (f"{_TMP}*", f"*/{_TMP}*", f"{_CLAIMS}/*/{_TMP}*")
        for path in (p for pattern in patterns for p in self.root.glob(pattern)):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime >= max_age:
                    path.unlink()
                    removed.append(path)
        return removed

    # -- early checks --------------------------------------------------------------------------

    def check_writable(self, experiments: Iterable[str] = ()) -> None:
        """Write and remove a probe file in the root (and in each existing experiment folder);
        raise :class:`StoreError` saying what to do if that fails."""
        folders = [self.root] + [self.root / e for e in experiments if (self.root / e).is_dir()]
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=folder, prefix=f"{_TMP}probe-")
                try:
                    os.write(fd, b"probe")
                    os.fsync(fd)
                finally:
                    os.close(fd)
                    os.unlink(probe)
            except OSError as err:
                raise StoreError(
                    f"The result store {folder} is not writable ({err.strerror or err}); "
                    "nothing was trained. Make it writable, or point JACNB_RESULTS (or "
                    "ResultStore(root) / python -m jacnb.run --results) at a writable folder."
                ) from err

    def check_room(
        self,
        n_runs: int,
        record_bytes: int = RECORD_BYTES,
        checkpoint_bytes: int = 0,
        in_flight: int = 1,
    ) -> None:
        """Raise :class:`StoreError` unless the store's disk has room for ``n_runs`` records of
        ``record_bytes`` plus the checkpoints: ``checkpoint_bytes`` (a run's peak checkpoint
        use) for each of the ``in_flight`` runs trained at once, or for all ``n_runs`` when
        ``keep_weights``."""
        holders = n_runs if self.keep_weights else min(n_runs, max(1, in_flight))
        need = n_runs * record_bytes + holders * checkpoint_bytes
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < need:
            raise StoreError(
                f"The result store {self.root} has {_mb(free)} free, but the {n_runs} runs "
                f"still to train need about {_mb(need)} ({n_runs} records of {_mb(record_bytes)}"
                f" + {holders} x {_mb(checkpoint_bytes)} of checkpoints); nothing was trained. "
                "Free some space, or point JACNB_RESULTS (or ResultStore(root) / "
                "python -m jacnb.run --results) at a larger disk."
            )

    # -- claims --------------------------------------------------------------------------------

    def _claim_folder(self, config: Mapping[str, Any]) -> Path:
        return self.root / _CLAIMS / str(config.get("experiment", "misc"))

    def _claims_of(self, config: Mapping[str, Any]) -> list[tuple[int, Path]]:
        key = config_key(config)
        folder = self._claim_folder(config)
        found = []
        for path in folder.glob(f"{key}.*.claim") if folder.is_dir() else []:
            with contextlib.suppress(ValueError):
                found.append((int(path.name.split(".")[1]), path))
        return sorted(found)

    def claim_alive(self, path: Path) -> bool:
        """Whether the owner of the claim file ``path`` may still be training: its heartbeat is
        fresh and, on this host, its process exists."""
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        if age > self.stale_claim_seconds:
            return False
        try:
            owner = json.loads(path.read_text())
        except (OSError, ValueError):
            return True  # unreadable: trust the heartbeat alone
        if owner.get("host") == socket.gethostname():
            return _pid_alive(owner.get("pid"))
        return True

    def claimed(self, config: Mapping[str, Any]) -> bool:
        """Whether a live worker holds the claim on ``config``."""
        claims = self._claims_of(config)
        return bool(claims) and self.claim_alive(claims[-1][1])

    def claim(self, config: Mapping[str, Any]) -> Claim | None:
        """Claim ``config`` for training; ``None`` if a live worker holds it.

        Claims are files ``<root>/.claims/<experiment>/<key>.<generation>.claim`` created
        exclusively (``os.link`` of a complete temp file, else ``O_EXCL``), so of two workers
        only one gets a generation. A dead owner's claim (see :meth:`claim_alive`) is taken over
        by creating the next generation. Use the returned :class:`Claim` as a context manager:
        it heartbeats while the run trains and is released at the end.
        """
        claims = self._claims_of(config)
        generation = 1
        if claims:
            if self.claim_alive(claims[-1][1]):
                return None
            generation = claims[-1][0] + 1
        folder = self._claim_folder(config)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{config_key(config)}.{generation}.claim"
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        if not _create_exclusive(path, json.dumps(owner).encode()):
            return None
        for _, old in claims:  # the dead owners' generations
            old.unlink(missing_ok=True)
        return Claim(path, self.heartbeat_seconds)


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


# ---------------------------------------------------------------------------------------------
# Encoding, validation, atomic files
# ---------------------------------------------------------------------------------------------


def _json_key(key: Any) -> str:
    """``key`` as JSON writes a dict key."""
    return key if isinstance(key, str) else next(iter(json.loads(json.dumps({key: 0}))))


def _encode(value: Any, path: list[Any], nonfinite: list[dict[str, Any]]) -> Any:
    """``value`` as plain JSON data; non-finite floats become ``None`` and are listed."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        nonfinite.append({"path": path, "value": repr(float(value))})
        return None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {k: _encode(v, [*path, _json_key(k)], nonfinite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, [*path, i], nonfinite) for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors
        return _encode(value.tolist(), path, nonfinite)
    if hasattr(value, "item"):
        return _encode(value.item(), path, nonfinite)
    return str(value)


def _decode(record: dict[str, Any]) -> dict[str, Any]:
    """Restore the non-finite floats listed in ``record["nonfinite"]`` (in place)."""
    for entry in record.get("nonfinite", ()):
        *parents, last = entry["path"]
        node: Any = record
        for step in parents:
            node = node[step]
        node[last] = float(entry["value"])
    record.setdefault("status", OK)
    record.setdefault("reason", "")
    return record


def _validate(path: Path, data: bytes) -> dict[str, Any]:
    """The record in ``data`` (read from ``path``); :class:`InvalidRecordError` if none."""
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InvalidRecordError(f"not UTF-8: {err}") from err
    except json.JSONDecodeError as err:
        raise InvalidRecordError(f"not JSON ({len(data)} bytes): {err}") from err
    if not isinstance(record, dict):
        raise InvalidRecordError(f"not a JSON object but {type(record).__name__}")
    if record.get("key") != path.stem:
        raise InvalidRecordError(f"its key {record.get('key')!r} is not its file name")
    config = record.get("config")
    if not isinstance(config, dict):
        raise InvalidRecordError("no config")
    if str(config.get("experiment", "misc")) != path.parent.name:
        raise InvalidRecordError(f"its experiment is not its folder {path.parent.name!r}")
    if not isinstance(record.get("result"), dict):
        raise InvalidRecordError("no result")
    if record.get("status", OK) not in STATUSES:
        raise InvalidRecordError(f"unknown status {record.get('status')!r}")
    try:
        _decode(record)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise InvalidRecordError(f"bad nonfinite entry: {err}") from err
    return record


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder (a dot-name, never read
    as a record), fsync, rename. Records, model weights and the scorecard's verdict files use it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP, suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; ``True`` if this call created it.

    A complete temp file is hard-linked to ``path`` (atomic and exclusive, also on NFS), so a
    reader never sees a half-written claim; where hard links are not supported, ``O_EXCL``.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP, suffix=".claim")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE/SMB mounts)
            try:
                excl = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(excl, "wb") as fh:
                fh.write(data)
            return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def _pid_alive(pid: Any) -> bool:
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


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------
# Single trained models (weights kept beside the record)
# ---------------------------------------------------------------------------------------------


def trained_model(
    config: Mapping[str, Any],
    build: Callable[[], Any],
    fit: Callable[[Any], Mapping[str, Any]],
    store: ResultStore | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A model trained under ``config``: loaded from the store if it was trained before.

    ``build()`` returns a fresh ``nn.Module``; ``fit(model)`` trains it in place and returns its
    metrics. The weights are saved atomically before the record, so a record always has them;
    weights that do not load are quarantined (with a warning) and the model is trained again.
    """
    import torch

    store = store or ResultStore()
    model = build()
    ckpt = store.checkpoint_path(config)
    result = store.get(config)
    if result is not None and ckpt.exists():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 - any damage: set aside and retrain
            store.quarantine(ckpt, f"weights do not load: {type(err).__name__}: {err}")
            model = build()
        else:
            model.eval()
            return model, result
    result = dict(fit(model))
    model.cpu().eval()
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_atomic(ckpt, buffer.getvalue())
    store.put(config, result)
    return model, result


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@dataclass(frozen=True)
class LocalPool:
    """A pool of ``workers`` local worker processes (default: one per core), each running
    ``torch.set_num_threads(max(1, cores // workers))``. Pass it (or ``"local"``) as
    ``run_grid(..., executor=...)``. The processes are started with ``spawn`` on first use and
    kept for the next grids of this process (a chapter runs several), until :meth:`shutdown`,
    an interrupted grid, or the end of the process."""

    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise ValueError(f"LocalPool.workers must be a positive integer, got {self.workers!r}")

    @property
    def n_workers(self) -> int:
        return self.workers or available_cores()

    @property
    def threads_per_worker(self) -> int:
        return max(1, available_cores() // self.n_workers)

    def executor(self) -> concurrent.futures.ProcessPoolExecutor:
        """The running pool of this size (started if there is none, or it broke)."""
        pool = _LOCAL_POOLS.get(self)
        if pool is None or getattr(pool, "_broken", False) or getattr(pool, "_shutdown_thread", 0):
            pool = concurrent.futures.ProcessPoolExecutor(
                self.n_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads_per_worker,),
            )
            _LOCAL_POOLS[self] = pool
        return pool

    def shutdown(self) -> None:
        """Stop this pool's worker processes (runs not yet started are cancelled)."""
        pool = _LOCAL_POOLS.pop(self, None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_LOCAL_POOLS: dict[LocalPool, concurrent.futures.ProcessPoolExecutor] = {}


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


_DONE, _CACHED, _BUSY = "done", "cached", "busy"


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


def _attempt(
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    store: ResultStore,
    config: Mapping[str, Any],
) -> str:
    """Train and store ``config`` unless it is stored or claimed by a live worker: what every
    worker of every executor runs. Returns ``"done"``, ``"cached"`` or ``"busy"``."""
    if store.has(config):
        return _CACHED
    claim = store.claim(config)
    if claim is None:
        return _BUSY
    with claim:
        if store.has(config):  # finished by another worker between our check and our claim
            return _CACHED
        store.put(config, _call(run, config))
    return _DONE


_UNPICKLED: dict[bytes, Any] = {}


def _attempt_pickled(payload: bytes, config: Mapping[str, Any]) -> str:
    """:func:`_attempt` in a worker: ``payload`` is ``cloudpickle.dumps((run, store))``."""
    digest = hashlib.sha256(payload).digest()
    if digest not in _UNPICKLED:
        import cloudpickle

        _UNPICKLED.clear()
        _UNPICKLED[digest] = cloudpickle.loads(payload)
    run, store = _UNPICKLED[digest]
    return _attempt(run, store, config)


def _is_submitit(executor: Any) -> bool:
    return type(executor).__module__.startswith("submitit") and hasattr(executor, "batch")


def _submit(executor: Any, payload: bytes, configs: list[Mapping[str, Any]]) -> list[Any]:
    if _is_submitit(executor):
        with executor.batch():  # one job array
            jobs = [executor.submit(_attempt_pickled, payload, dict(c)) for c in configs]
        return jobs
    return [executor.submit(_attempt_pickled, payload, dict(c)) for c in configs]


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
            if outcome == _BUSY:
                busy.append(i)
            else:
                bar.update(1)
        if remaining and not all(
            isinstance(handles[i], concurrent.futures.Future) for i in remaining
        ):
            time.sleep(poll)
    return busy, error


def _resolve_executor(executor: Any) -> tuple[Any, LocalPool | None, int]:
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


def _run_here(todo, run, store, poll, bar) -> None:
    pending = list(todo)
    while pending:
        busy = []
        for config in pending:
            if _attempt(run, store, config) == _BUSY:
                busy.append(config)
            else:
                bar.update(1)
        pending = busy
        if pending:
            bar.set_postfix_str(f"waiting for {len(pending)} runs claimed by other workers")
            time.sleep(poll)


def _run_with(executor, todo, run, store, poll, bar) -> None:
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


def run_grid(
    configs: Iterable[Mapping[str, Any]],
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    store: ResultStore | None = None,
    desc: str = "runs",
    progress: bool = True,
    executor: Any = None,
    *,
    record_bytes: int = RECORD_BYTES,
    checkpoint_bytes: int = 0,
    poll: float = 5.0,
) -> pd.DataFrame:
    """Run ``run(config)`` for every config without a valid record; return all their records.

    ``executor``: ``None`` trains in this process, one run after the other; ``"local"`` or a
    :class:`LocalPool` trains in local worker processes; any ``concurrent.futures.Executor``
    (thread or process pools, Dask's ``Client.get_executor()``, a Ray adapter, see the module
    docstring) or a submitit executor (:func:`slurm_executor`: one SLURM job array) sends one
    task per missing run. Every path claims a config before training it and writes its record
    atomically, so concurrent grids (notebooks, batch jobs, cluster workers) on one store train
    each run once; configs claimed by live workers elsewhere are waited for (polling every
    ``poll`` seconds) and a dead worker's are taken over.

    ``run`` raising an exception with ``status == "diverged"``
    (:class:`jacnb.core.train.DivergedError`) stores the run as ``status: "diverged"`` with the
    message as ``reason`` (it is not retried);
    any other exception stops the grid (after the runs in flight are stored) and is raised.

    Before any training the store must be writable and its disk must have room for the missing
    records (``record_bytes`` each) and checkpoints (``checkpoint_bytes``: a run's peak checkpoint
    use, per run in flight), else :class:`StoreError` says what to do. Each finished run is stored
    before the grid goes on, so an interrupted grid loses at most the runs in flight.
    """
    store = store or ResultStore()
    configs = list(configs)
    store.clean_tmp()
    todo = [c for c in configs if not store.has(c)]
    if todo:
        pool, local, in_flight = (None, None, 1)
        if executor is not None:
            pool, local, in_flight = _resolve_executor(executor)
        try:
            store.check_writable({str(c.get("experiment", "misc")) for c in todo})
            store.check_room(len(todo), record_bytes, checkpoint_bytes, in_flight)
            with tqdm(
                total=len(todo),
                desc=f"{desc} ({len(configs) - len(todo)} cached)",
                disable=progress_off(progress),
            ) as bar:
                if pool is None:
                    _run_here(todo, run, store, poll, bar)
                else:
                    _run_with(pool, todo, run, store, poll, bar)
        except BaseException:
            if local is not None:  # stop its workers: nothing keeps training behind the user
                local.shutdown()
            raise
    keys = {config_key(c) for c in configs}
    frame = pd.concat([store.frame(e) for e in {str(c.get("experiment", "misc")) for c in configs}])
    return frame[frame["key"].isin(keys)].reset_index(drop=True) if len(frame) else frame
