"""Record files of the result store: keys, the JSON encoding of a record, its validation on
read, and atomic file writes.

A record is ``<root>/<experiment>/<key>.json``, its key the first 16 hex digits of the SHA-256 of
the canonical JSON of its config (:func:`config_key`). Records are strict JSON: a non-finite
float is stored as ``null`` and listed under the record's ``nonfinite`` entry (:func:`encode`,
restored by :func:`decode`). A file counts as a record only if :func:`validate` accepts it.
Every file is written by :func:`write_atomic` (temporary ``.tmp-*`` file in the same folder,
fsync, rename), so a killed writer leaves no file or a complete one. Used by
:class:`jacnb.lab.store.ResultStore` and by the scorecard's verdict files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]


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
#: Suffix of a run's training checkpoint beside its record (``<key>.train.pt``, ResNet runs).
TRAIN_CHECKPOINT_SUFFIX = ".train.pt"

TMP_PREFIX = ".tmp-"
QUARANTINE_FOLDER = ".quarantine"
RECORD_NAME = re.compile(r"^[0-9a-f]{16}\.json$")


class StoreError(OSError):
    """The store cannot take the grid's records (not writable, no room); nothing was trained."""


class InvalidRecordError(ValueError):
    """A record file that does not parse or does not carry its key, config and result."""


# ---------------------------------------------------------------------------------------------
# Encoding, validation, atomic files
# ---------------------------------------------------------------------------------------------


def _json_key(key: Any) -> str:
    """``key`` as JSON writes a dict key."""
    return key if isinstance(key, str) else next(iter(json.loads(json.dumps({key: 0}))))


def encode(value: Any, path: list[Any], nonfinite: list[dict[str, Any]]) -> Any:
    """``value`` as plain JSON data; non-finite floats become ``None`` and are listed."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        nonfinite.append({"path": path, "value": repr(float(value))})
        return None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {k: encode(v, [*path, _json_key(k)], nonfinite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v, [*path, i], nonfinite) for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors
        return encode(value.tolist(), path, nonfinite)
    if hasattr(value, "item"):
        return encode(value.item(), path, nonfinite)
    return str(value)


def decode(record: dict[str, Any]) -> dict[str, Any]:
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


def validate(path: Path, data: bytes) -> dict[str, Any]:
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
        decode(record)
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
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


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; ``True`` if this call created it.

    A complete temp file is hard-linked to ``path`` (atomic and exclusive, also on NFS), so a
    reader never sees a half-written claim; where hard links are not supported, ``O_EXCL``.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=".claim")
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


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"
