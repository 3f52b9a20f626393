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
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jacnb.lab.store.schema import ResultSchema, problems

REPO_ROOT = Path(__file__).resolve().parents[3]


def default_root() -> Path:
    """``$JACNB_RESULTS`` or ``<repo>/results``."""
    return Path(os.environ.get("JACNB_RESULTS", REPO_ROOT / "results"))


def canonical(config: Mapping[str, Any]) -> str:
    """The config as canonical JSON (sorted keys), the input of :func:`config_key`. NumPy and
    torch scalars and arrays count as the plain numbers and lists they hold (as they are
    stored); anything else JSON cannot hold as its string."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


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


def validate(path: Path, data: bytes, schema: ResultSchema | None = None) -> dict[str, Any]:
    """The record in ``data`` (read from ``path``), non-finite values restored;
    :class:`InvalidRecordError` if none.

    A record proves itself: its ``key`` is its file name *and* the key of its stored config
    (an edited config no longer hashes to it), its experiment is its folder, its ``checksum``
    (:func:`checksum`) matches its content (an edited result or status no longer does), and its
    result passes :func:`jacnb.lab.store.schema.problems` (``schema``: the experiment's own).
    A record written before records carried a checksum is accepted on its key alone.
    """
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
    stored_checksum = record.get("checksum")
    if stored_checksum is not None and stored_checksum != checksum(record):
        raise InvalidRecordError("its checksum does not match its content (edited?)")
    try:
        decode(record)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise InvalidRecordError(f"bad nonfinite entry: {err}") from err
    if config_key(record["config"]) != path.stem:
        raise InvalidRecordError("its config does not hash to its key (edited?)")
    found = problems(record["result"], record["status"], schema)
    if found:
        raise InvalidRecordError(f"its result breaks the schema: {'; '.join(found)}")
    return record


def _canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The record without its checksum as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def checksum(record: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of the record as stored (every entry but the
    checksum itself: key, config, status, reason, result, non-finite list), so that an edit of
    any of them is seen on read."""
    return "sha256:" + hashlib.sha256(_canonical_bytes(record)).hexdigest()


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """The file content of ``record`` (plain JSON data): its canonical JSON with its
    :func:`checksum` added as the last entry (one serialization for both)."""
    body = _canonical_bytes(record)
    digest = hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"checksum":"sha256:' + digest.encode() + b'"}'


#: Config fields the store itself uses (a config field ``key`` would hide the record's key in
#: :meth:`~jacnb.lab.store.ResultStore.frame`).
RESERVED_FIELDS = ("key",)
#: An experiment is one folder of the store: a plain name.
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_config(config: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``config`` can be stored and found again: a mapping with
    string field names, none of them :data:`RESERVED_FIELDS`, an ``experiment`` (if any) that
    is a plain folder name (:data:`EXPERIMENT_NAME`: not ``""``, ``"fc/select"``, ``".x"``),
    and values that survive the JSON round trip unchanged (so that the key computed from the
    stored config is the key it was stored under: plain numbers, strings, bools, ``None``,
    lists and string-keyed dicts of them)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"a config must be a mapping, got {type(config).__name__}")
    bad_names = [k for k in config if not isinstance(k, str)]
    if bad_names:
        raise ValueError(f"config field names must be strings, got {bad_names!r}")
    reserved = [k for k in RESERVED_FIELDS if k in config]
    if reserved:
        raise ValueError(
            f"config field(s) {reserved} are reserved by the result store (the record's own "
            f"{reserved[0]!r}); rename them"
        )
    if "experiment" in config:
        name = config["experiment"]
        if not isinstance(name, str) or not EXPERIMENT_NAME.match(name) or name in (".", ".."):
            raise ValueError(
                f"experiment {name!r} is not a plain folder name (letters, digits, '.', '_', "
                "'-'; not starting with '.' or '-'; no '/')"
            )
    odd = [k for k, v in config.items() if not _is_data(v)]
    if odd:
        raise ValueError(
            f"config field(s) {odd} hold {[type(config[k]).__name__ for k in odd]}, which do not "
            "survive being stored as JSON; use plain numbers, strings, bools, None, lists and "
            "dicts with string keys (NumPy/torch scalars and arrays count as numbers and lists)"
        )
    nonfinite: list[dict[str, Any]] = []
    stored = {"config": encode(dict(config), ["config"], nonfinite), "nonfinite": nonfinite}
    restored = json.loads(json.dumps(stored))
    decode(restored)
    changed = [
        k for k in config if canonical({k: config[k]}) != canonical({k: restored["config"].get(k)})
    ]
    if changed:
        raise ValueError(
            f"config field(s) {changed} do not survive being stored as JSON (values such as "
            f"{[config[k] for k in changed][:3]!r}); use plain numbers, strings, bools, None, "
            "lists and dicts with string keys"
        )


def _is_data(value: Any) -> bool:
    """Whether ``value`` is JSON data (or NumPy/torch numbers and arrays, stored as such)."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_is_data(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_data(v) for k, v in value.items())
    return hasattr(value, "tolist") or hasattr(value, "item")


def current_umask() -> int:
    """This process's umask (read from ``/proc/self/status``, which leaves it untouched)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (not thread-safe without the lock)
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


_UMASK_LOCK = threading.Lock()


def _share(fd: int) -> None:
    """Give a ``mkstemp`` file (created ``0600``) the mode an ordinary file gets under the
    umask (``0664`` under ``umask 002``: the group can read the store)."""
    os.fchmod(fd, 0o666 & ~current_umask())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _complete_tmp(path: Path, data: bytes, suffix: str) -> str:
    """A temporary file beside ``path`` holding ``data``, flushed to disk, mode per umask."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=suffix)
    try:
        _share(fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder (a dot-name, never read
    as a record), fsync, rename. Records, model weights and the scorecard's verdict files use it."""
    tmp = _complete_tmp(path, data, path.suffix)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def publish(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless ``path`` exists; ``True`` if this call wrote
    it. The complete temp file is hard-linked to ``path`` (atomic and exclusive, also on NFS), so
    of two workers that finish the same run only the first stores its record; where hard links
    are not supported, an existence check and a rename."""
    tmp = _complete_tmp(path, data, path.suffix)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE/SMB mounts)
            if path.exists():
                return False
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; ``True`` if this call created it.

    A complete temp file is hard-linked to ``path`` (atomic and exclusive, also on NFS), so a
    reader never sees a half-written claim; where hard links are not supported, ``O_EXCL``.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=".claim")
    try:
        _share(fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE/SMB mounts)
            try:
                excl = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(excl, "wb") as fh:
                fh.write(data)
            return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"
