"""The :class:`ResultStore`: a folder of validated JSON records, one per finished run.

Reading validates every record (:func:`jacnb.lab.store.records.validate`) and quarantines a
damaged one; writing is atomic; claims (:mod:`jacnb.lab.store.leases`) keep concurrent workers
from training a run twice; the early checks make a grid fail before training when the store
cannot take its records. See :mod:`jacnb.lab.store` for the guarantees.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from jacnb.lab.store.leases import (
    CLAIMS_FOLDER,
    HEARTBEAT_SECONDS,
    STALE_CLAIM_SECONDS,
    Claim,
    claim_alive,
    claim_files,
    release_task_claims,
    take_claim,
)
from jacnb.lab.store.records import (
    OK,
    QUARANTINE_FOLDER,
    RECORD_BYTES,
    RECORD_NAME,
    STALE_TMP_SECONDS,
    STATUSES,
    TMP_PREFIX,
    TRAIN_CHECKPOINT_SUFFIX,
    InvalidRecordError,
    StoreError,
    check_config,
    config_key,
    default_root,
    encode,
    mb,
    publish,
    record_bytes,
    validate,
    write_atomic,
)
from jacnb.lab.store.schema import ResultSchema

#: Files a stored run keeps: its record and (while it trains) its claim.
INODES_PER_RUN = 2
#: Files a run in flight may hold at once: temporary files and checkpoint generations.
INODES_IN_FLIGHT = 4
#: ``errno`` values that mean "this process may not change the store here".
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def _keep_weights_default() -> bool:
    return os.environ.get("JACNB_KEEP_WEIGHTS", "").lower() in ("1", "true", "yes")


class ResultStore:
    """A folder of ``<experiment>/<key>.json`` records:
    ``{"key", "config", "status", "reason", "result"[, "nonfinite"]}``.

    ``schemas``: per experiment, the :class:`~jacnb.lab.store.schema.ResultSchema` its finished
    runs' results must meet (besides the naming conventions every record meets).
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
        schemas: Mapping[str, ResultSchema] | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.keep_weights = _keep_weights_default() if keep_weights is None else keep_weights
        self.stale_claim_seconds = stale_claim_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.schemas: dict[str, ResultSchema] = dict(schemas or {})

    def with_schema(self, experiments: Iterable[str], schema: ResultSchema) -> ResultStore:
        """A copy of this store that also checks every result of ``experiments`` against
        ``schema`` (records that fail are quarantined on read)."""
        other = copy.copy(self)
        other.schemas = {**self.schemas, **dict.fromkeys(experiments, schema)}
        return other

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
                if RECORD_NAME.match(path.name):
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
            return validate(path, data, self.schemas.get(path.parent.name))
        except InvalidRecordError as err:
            with contextlib.suppress(FileNotFoundError):
                after = path.stat()
                if (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
                    return self._load(path)  # replaced by a writer meanwhile: read the new one
                self.quarantine(path, str(err))
            return None

    def quarantine(self, path: Path, why: str) -> Path | None:
        """Move a damaged file into ``<its folder>/.quarantine/`` with a warning naming it.

        On a store this process may not change (a read-only volume, another user's folder) the
        file stays where it is, with a warning saying what would be done; it is never read as
        a record either way."""
        folder = path.parent / QUARANTINE_FOLDER
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = folder / f"{path.name}.{stamp}-{os.getpid()}-{threading.get_ident() % 10**6}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        except FileNotFoundError:
            return None  # another reader moved it first
        except OSError as err:
            if err.errno not in READ_ONLY_ERRNOS:
                raise
            warnings.warn(
                f"damaged file {path} ({why}) is skipped; it would be moved to {folder}, but "
                f"the store is read-only here ({err.strerror}); its run is not shown",
                UserWarning,
                stacklevel=4,
            )
            return None
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
        replace: bool = False,
    ) -> Path:
        """Write the record atomically (temp file, fsync, rename); returns its path.

        A run is stored once: if a valid record of ``config`` is already there (another worker
        finished the run, e.g. after taking over the claim of this one, thought dead), this
        result is dropped with a warning and the stored record kept, unless ``replace``.
        ``config`` must pass :func:`~jacnb.lab.store.records.check_config`, and the record
        must be one a reader accepts (its result meeting the metric conventions and the
        experiment's schema), else ``ValueError`` and nothing is stored.

        ``status``/``reason`` default to the result's own ``status``/``reason`` entries (which
        then move to the record's top level), else ``"ok"``.
        Non-finite floats are stored as ``null`` and listed under ``nonfinite``. Once the record
        is on disk, the run's training checkpoint is removed unless ``keep_weights``.
        """
        check_config(config)
        path = self.path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = dict(result)
        if status is None and "status" in result:
            status = result.pop("status")
            reason = result.pop("reason", reason)
        if status is None:
            status = OK
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        nonfinite: list[dict[str, Any]] = []
        record = {
            "key": config_key(config),
            "config": encode(dict(config), ["config"], nonfinite),
            "status": status,
            "reason": "" if reason is None else str(reason),
            "result": encode(result, ["result"], nonfinite),
        }
        if nonfinite:
            record["nonfinite"] = nonfinite
        data = record_bytes(record)
        try:  # what a reader would see: a result it would quarantine is not stored
            validate(path, data, self.schemas.get(path.parent.name))
        except InvalidRecordError as err:
            raise ValueError(
                f"the result of run {path.stem} ({path.parent.name}) is not stored because it "
                f"would not be valid: {err}"
            ) from err
        if replace:
            write_atomic(path, data)
        else:
            while not publish(path, data):
                if self._load(path) is not None:  # a damaged one is quarantined: try again
                    warnings.warn(
                        f"{path} was already stored by another worker; this result of the same "
                        "run was dropped (a run is stored once)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    break
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
        removed: list[Path] = []
        kept: list[Path] = []
        errors: set[str] = set()
        patterns = (f"{TMP_PREFIX}*", f"*/{TMP_PREFIX}*", f"{CLAIMS_FOLDER}/*/{TMP_PREFIX}*")
        for path in (p for pattern in patterns for p in self.root.glob(pattern)):
            try:
                if now - path.stat().st_mtime >= max_age:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
            except OSError as err:
                if err.errno not in READ_ONLY_ERRNOS:
                    raise
                kept.append(path)
                errors.add(str(err.strerror))
        if kept:
            warnings.warn(
                f"{len(kept)} stale temporary file(s) in {self.root} (e.g. {kept[0].name}) "
                f"would be removed, but the store is read-only here ({', '.join(errors)}); "
                "they are never read as records",
                UserWarning,
                stacklevel=2,
            )
        return removed

    # -- early checks --------------------------------------------------------------------------

    def check_writable(self, experiments: Iterable[str] = ()) -> None:
        """Write and remove a probe file in the root (and in each existing experiment folder);
        raise :class:`StoreError` saying what to do if that fails."""
        folders = [self.root] + [self.root / e for e in experiments if (self.root / e).is_dir()]
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=folder, prefix=f"{TMP_PREFIX}probe-")
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
        ``keep_weights``; and free inodes (files) for them: :data:`INODES_PER_RUN` per run
        and :data:`INODES_IN_FLIGHT` per run in flight (a volume out of inodes refuses new
        files however many bytes are free)."""
        holders = n_runs if self.keep_weights else min(n_runs, max(1, in_flight))
        need = n_runs * record_bytes + holders * checkpoint_bytes
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < need:
            raise StoreError(
                f"The result store {self.root} has {mb(free)} free, but the {n_runs} runs "
                f"still to train need about {mb(need)} ({n_runs} records of {mb(record_bytes)}"
                f" + {holders} x {mb(checkpoint_bytes)} of checkpoints); nothing was trained. "
                "Free some space, or point JACNB_RESULTS (or ResultStore(root) / "
                "python -m jacnb.run --results) at a larger disk."
            )
        stats = os.statvfs(probe)
        files = n_runs * INODES_PER_RUN + min(n_runs, max(1, in_flight)) * INODES_IN_FLIGHT
        if stats.f_files and stats.f_favail < files:  # f_files == 0: no inode limit here
            raise StoreError(
                f"The result store {self.root} has {stats.f_favail} free inodes (files), but "
                f"the {n_runs} runs still to train need about {files}; nothing was trained. "
                "Remove files on that volume, or point JACNB_RESULTS (or ResultStore(root) / "
                "python -m jacnb.run --results) at another one."
            )

    # -- claims --------------------------------------------------------------------------------

    def _claim_folder(self, config: Mapping[str, Any]) -> Path:
        return self.root / CLAIMS_FOLDER / str(config.get("experiment", "misc"))

    def claim_alive(self, path: Path) -> bool:
        """Whether the owner of the claim file ``path`` may still be training: its heartbeat is
        fresh and, on this host, its process exists."""
        return claim_alive(path, self.stale_claim_seconds)

    def claimed(self, config: Mapping[str, Any]) -> bool:
        """Whether a live worker holds the claim on ``config``."""
        claims = claim_files(self._claim_folder(config), config_key(config))
        return bool(claims) and self.claim_alive(claims[-1][1])

    def claim(self, config: Mapping[str, Any], reserved: int | None = None) -> Claim | None:
        """Claim ``config`` for training; ``None`` if a live worker holds it.

        Claims are files ``<root>/.claims/<experiment>/<key>.<generation>.claim`` created
        exclusively (``os.link`` of a complete temp file, else ``O_EXCL``), so of two workers
        only one gets a generation. A dead owner's claim (see :meth:`claim_alive`) is taken over
        by creating the next generation. Use the returned :class:`Claim` as a context manager:
        it heartbeats while the run trains and is released at the end. ``reserved``: the
        generation of the claim a submitter took for this worker (the worker takes it over).
        """
        return take_claim(
            self._claim_folder(config),
            config_key(config),
            self.stale_claim_seconds,
            self.heartbeat_seconds,
            reserved,
        )

    def release_task_claims(self, config: Mapping[str, Any], slurm_task: str) -> list[Path]:
        """Remove the claims on ``config`` held by the SLURM task ``slurm_task``, which SLURM
        says has ended; the removed files."""
        return release_task_claims(self._claim_folder(config), config_key(config), slurm_task)
