"""Tiny CIFAR-10, LaRED and ImageNet written in the on-disk layouts a user with the real data
has (torchvision's ``cifar-10-batches-py`` pickles, the LaRED folder of
:func:`jacnb.core.data.load_lared`, an ``ImageFolder`` tree), for the tests that run the book's
data paths on them (tests/core/test_data_layouts.py).

Every image carries its class in its pixels (a class-dependent colour or hand shape plus noise),
so a net can learn something, and every file is made here: nothing is downloaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _cifar_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """``N x 3072`` uint8 rows (1024 red, 1024 green, 1024 blue values, row-major 32x32): a
    class-dependent colour per channel plus noise."""
    base = (np.arange(10)[:, None] * np.array([25, 11, 7])[None] + 20) % 256
    img = base[labels][:, :, None] + rng.normal(0, 30, size=(len(labels), 3, 1024))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def write_cifar10(root: Path, per_batch: int = 200, n_test: int = 200, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` as the official ``cifar-10-python.tar.gz`` extracts:
    ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (pickled dicts with ``batch_label``,
    ``labels`` (list of int), ``data`` (uint8 ``N x 3072``), ``filenames``) and
    ``batches.meta`` (``label_names``, ``num_cases_per_batch``, ``num_vis``), pickle protocol 2
    with ``str`` keys (what ``pickle.load(f, encoding="latin1")`` makes of the Python 2 files).
    Returns ``root``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    parts = [(f"data_batch_{i}", f"training batch {i} of 5", per_batch) for i in range(1, 6)]
    parts.append(("test_batch", "testing batch 1 of 1", n_test))
    for name, label, n in parts:
        labels = rng.permutation(np.arange(n) % 10)
        entry = {
            "batch_label": label,
            "labels": [int(v) for v in labels],
            "data": _cifar_images(rng, labels),
            "filenames": [f"{name}_{k:05d}.png" for k in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"num_cases_per_batch": per_batch, "label_names": CIFAR10_CLASSES, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root


#: LaRED's shape (Hsiao et al. 2014; Sokolić et al. Sec. VI-B): 10 subjects; the real set has
#: 81 gesture classes (27 gestures x 3 orientations) of ~300 frames per subject.
LARED_SUBJECTS = 10


def write_lared(
    folder: Path, classes: int = 3, frames: int = 30, size: tuple[int, int] = (30, 40)
) -> Path:
    """``folder/<subject>/<class>/<frame>_depth.png`` (16-bit depth) with ``<frame>_mask.png``
    (8-bit hand mask) beside it, for 10 subjects ``s1`` ... ``s10``; class ``c`` is a hand of
    ``c``-dependent shape at a random place. Returns ``folder``."""
    rng = np.random.default_rng(0)
    h, w = size
    for s in range(1, LARED_SUBJECTS + 1):
        for c in range(classes):
            cdir = folder / f"s{s}" / f"G{c + 1:02d}_O1"
            cdir.mkdir(parents=True)
            for f in range(frames):
                depth = rng.integers(1500, 3000, size=(h, w)).astype(np.uint16)
                mask = np.zeros((h, w), dtype=np.uint8)
                hh, ww = 8 + 4 * c, 20 - 4 * c
                top, left = rng.integers(0, h - hh), rng.integers(0, w - ww)
                mask[top : top + hh, left : left + ww] = 255
                depth[mask > 0] = rng.integers(600, 900, size=int((mask > 0).sum()))
                Image.fromarray(depth).save(cdir / f"{f:04d}_depth.png")
                Image.fromarray(mask).save(cdir / f"{f:04d}_mask.png")
    return folder


#: WordNet ids of the first ImageNet classes (the real tree has 1000 such folders).
IMAGENET_WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def write_imagenet(root: Path, train: int = 8, val: int = 6) -> Path:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (torchvision's
    ``ImageFolder`` layout of ILSVRC2012, validation images sorted into class folders) for four
    classes: RGB JPEGs of varied sizes, a class-dependent colour plus noise. Returns ``root``."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c, wnid in enumerate(IMAGENET_WNIDS):
            cdir = root / split / wnid
            cdir.mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.integers(24, 48)), int(rng.integers(24, 48))
                colour = np.array([60 * c, 255 - 60 * c, 128])
                img = np.clip(colour + rng.normal(0, 25, size=(h, w, 3)), 0, 255)
                if split == "train":
                    name = f"{wnid}_{i + 1}.JPEG"
                else:
                    name = f"ILSVRC2012_val_{c * n + i + 1:08d}.JPEG"
                Image.fromarray(img.astype(np.uint8)).save(cdir / name, format="JPEG")
    return root
