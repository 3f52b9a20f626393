"""The LaRED loader (Sec. VI-B) on a small fake folder in the documented layout: the paper's
subject split (first 6 subjects -> train / same-subject test, last 4 -> different-subject test),
the hand-mask preprocessing, the cache, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jacnb.core import data
from jacnb.core.data import DatasetMissingError, lared_hand_image, load_dataset, load_lared

N_SUBJECTS, CLASSES, FRAMES = 10, ("g1_o1", "g1_o2", "g2_o1"), 5
H, W = 20, 24


def _frame(subject: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth everywhere (background too); the hand is an 8x8 square whose left half has depth
    100 and right half 100 + 10 * subject, so the scaled left half reads 100 / (100 + 10 s)."""
    depth = np.full((H, W), 900, dtype=np.uint16)
    depth[6:14, 4:8] = 100
    depth[6:14, 8:12] = 100 + 10 * subject
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[6:14, 4:12] = 255
    return depth, mask


def make_fake_lared(root: Path) -> Path:
    """``root/subject<s>/<class>/<frame>_depth.png`` + ``_mask.png``; subject 3 stores .npy."""
    for s in range(1, N_SUBJECTS + 1):
        for c in CLASSES:
            folder = root / f"subject{s}" / c
            folder.mkdir(parents=True)
            for f in range(FRAMES):
                depth, mask = _frame(s)
                if s == 3:
                    np.save(folder / f"f{f:03d}_depth.npy", depth)
                    np.save(folder / f"f{f:03d}_mask.npy", mask)
                else:
                    Image.fromarray(depth).save(folder / f"f{f:03d}_depth.png")
                    Image.fromarray(mask).save(folder / f"f{f:03d}_mask.png")
    return root


def _subject_of(images: torch.Tensor) -> list[int]:
    left = images[:, 0, 16, 0].double()
    return [round((100 / v - 100) / 10) for v in left.tolist()]


def test_paper_split_first_six_subjects_train_and_test_last_four_other(tmp_path):
    ds = load_lared(make_fake_lared(tmp_path / "lared"))
    assert ds.n_classes == 3 and ds.input_shape == (1, 32, 32)
    # natural order: subject10 is the last subject, not the second
    assert ds.meta["subjects"] == [f"subject{s}" for s in range(1, 11)]
    n_first = 6 * len(CLASSES) * FRAMES
    assert ds.n_train + ds.n_test == n_first and ds.n_test == round(0.2 * n_first)
    x_other, y_other = ds.meta["x_test_other"], ds.meta["y_test_other"]
    assert len(y_other) == 4 * len(CLASSES) * FRAMES
    # the images themselves say which subject they come from (see _frame)
    assert set(_subject_of(ds.x_train)) | set(_subject_of(ds.x_test)) == set(range(1, 7))
    assert set(_subject_of(x_other)) == set(range(7, 11))
    assert _subject_of(ds.x_train) == (ds.meta["subject_train"] + 1).tolist()
    assert _subject_of(x_other) == (ds.meta["subject_other"] + 1).tolist()
    # same-subject train and test do not overlap and cover the 6 subjects' frames
    ids = {(s, int(y)) for s, y in zip(_subject_of(ds.x_train), ds.y_train, strict=True)}
    assert len(ids) == 6 * len(CLASSES)
    assert torch.bincount(ds.y_test).tolist() == [6, 6, 6]  # class-stratified test split
    assert sorted(torch.bincount(y_other).tolist()) == [20, 20, 20]
    assert "different subject" in ds.source and "subject7" in ds.source


def test_split_is_seeded_and_disjoint(tmp_path):
    root = make_fake_lared(tmp_path / "lared")
    a, b = load_lared(root, seed=1), load_lared(root, seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_lared(root, seed=2)
    assert not torch.equal(a.meta["subject_test"], c.meta["subject_test"]) or not torch.equal(
        a.y_test, c.y_test
    )


def test_hand_image_masks_crops_and_scales():
    depth, mask = _frame(5)
    img = lared_hand_image(depth, mask, size=32)
    assert img.shape == (32, 32) and img.min() >= 0 and img.max() == pytest.approx(1.0)
    assert img[16, 0] == pytest.approx(100 / 150) and img[16, -1] == pytest.approx(1.0)
    # an L-shaped hand: the bounding-box pixels outside the mask are background (0)
    mask_l = mask.copy()
    mask_l[6:10, 8:12] = 0
    img_l = lared_hand_image(depth, mask_l, size=32)
    assert img_l[:14, 18:].max() == 0 and img_l[18:, 18:].min() > 0  # away from the blur
    # a non-square hand keeps its aspect ratio: zero rows pad the square
    mask_w = np.zeros_like(mask)
    mask_w[8:12, 4:12] = 1
    img_w = lared_hand_image(depth, mask_w, size=32)
    assert img_w[:6].max() == 0 and img_w[-6:].max() == 0 and img_w[16].min() > 0
    assert lared_hand_image(depth, np.zeros_like(mask)) is None


def test_cache_is_used_and_rebuilt_when_files_change(tmp_path, monkeypatch):
    root = make_fake_lared(tmp_path / "lared")
    first = load_lared(root)
    assert (root / ".jacnb-lared-32.npz").is_file()

    def no_reading(path):
        raise AssertionError("read an image although the cache is valid")

    monkeypatch.setattr(data, "_read_lared_image", no_reading)
    again = load_lared(root)
    assert torch.equal(first.x_train, again.x_train)
    monkeypatch.undo()
    depth, mask = _frame(1)
    Image.fromarray(depth).save(root / "subject1" / CLASSES[0] / "f999_depth.png")
    Image.fromarray(mask).save(root / "subject1" / CLASSES[0] / "f999_mask.png")
    assert load_lared(root).n_train + load_lared(root).n_test == first.n_train + first.n_test + 1


def test_registry_and_errors(tmp_path):
    make_fake_lared(tmp_path / "lared")
    ds = load_dataset("lared", root=tmp_path)
    assert ds.name == "lared" and "x_test_other" in ds.meta
    with pytest.raises(DatasetMissingError, match="lared"):
        load_lared(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetMissingError, match="layout"):
        load_lared(tmp_path / "empty")
    few = tmp_path / "few"
    for s in range(1, 7):
        folder = few / f"s{s}" / "c"
        folder.mkdir(parents=True)
        depth, mask = _frame(s)
        Image.fromarray(depth).save(folder / "a_depth.png")
        Image.fromarray(mask).save(folder / "a_mask.png")
    with pytest.raises(ValueError, match="more than 6"):
        load_lared(few, test_fraction=0.5)
    (few / "s1" / "c" / "b_depth.png").write_bytes((few / "s1" / "c" / "a_depth.png").read_bytes())
    with pytest.raises(ValueError, match="no mask"):
        load_lared(few)
