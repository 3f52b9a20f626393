"""The book's data paths on tiny datasets in the real on-disk layouts (tests/data_fixtures.py):
torchvision's ``cifar-10-batches-py`` pickles, a LaRED folder, an ImageNet ``ImageFolder`` tree.

The readers are checked against torchvision's own (CIFAR-10) and against the files written; then
every chapter that reads these datasets runs at ``smoke`` end to end with ``$JACNB_DATA`` /
``$JACNB_IMAGENET`` pointing at the fixtures, through the same code a user with the real data
runs, and its frames must name the real dataset (not a stand-in).
"""

from __future__ import annotations

import copy
import importlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from jacnb.core.data import (
    DatasetMissingError,
    FolderDataset,
    load_dataset,
    load_imagenet,
    read_cifar10_folder,
)
from jacnb.core.distributed import FitConfig, fit
from jacnb.lab import datasets
from tests.data_fixtures import IMAGENET_WNIDS, write_cifar10, write_imagenet, write_lared


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    """``<root>/data`` (CIFAR-10 and LaRED under the data root) and ``<root>/imagenet``."""
    root = tmp_path_factory.mktemp("layouts")
    write_cifar10(root / "data")
    write_lared(root / "data" / "lared")
    write_imagenet(root / "imagenet")
    return root


@pytest.fixture
def on_fixtures(fixture_root: Path, tmp_path: Path, monkeypatch) -> Path:
    """The environment a user with the datasets sets: data root, ImageNet folder, a fresh
    result store; every in-process dataset cache emptied before and after."""
    monkeypatch.setenv("JACNB_DATA", str(fixture_root / "data"))
    monkeypatch.setenv("JACNB_IMAGENET", str(fixture_root / "imagenet"))
    monkeypatch.setenv("JACNB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    _clear_caches()
    yield fixture_root
    _clear_caches()


def _clear_caches() -> None:
    from jacnb.chapters import resnet

    datasets.clear_cache()
    resnet.tensor_data.cache_clear()


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def test_cifar10_reader_matches_torchvision(fixture_root: Path, monkeypatch) -> None:
    """Our reader and torchvision's ``CIFAR10`` (its checksum check switched off: the fixture is
    not the official release) read the same images, labels and class names."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tvc

    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)
    root = fixture_root / "data"
    ours = read_cifar10_folder(root / "cifar-10-batches-py")
    for train, part in ((True, "train"), (False, "test")):
        tv = tvd.CIFAR10(str(root), train=train)
        assert np.array_equal(ours[f"x_{part}"], tv.data.transpose(0, 3, 1, 2))
        assert ours[f"y_{part}"].tolist() == tv.targets
        assert ours["classes"] == tv.classes
    assert ours["official"] is False  # generated files are never passed off as the release


def test_cifar10_dataset_from_the_layout(fixture_root: Path) -> None:
    ds = load_dataset("cifar10", root=fixture_root / "data")
    assert (ds.n_train, ds.n_test, ds.n_classes, ds.input_shape) == (1000, 200, 10, (3, 32, 32))
    assert float(ds.x_train.min()) >= 0 and float(ds.x_train.max()) <= 1
    assert "NOT those of the official release" in ds.source
    # brute force: image 0 of data_batch_2 is row 0 of its pickled "data", planes R, G, B
    with open(fixture_root / "data" / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    row = torch.from_numpy(entry["data"][0].astype(np.float32) / 255)
    assert torch.equal(ds.x_train[200, 0].flatten(), row[:1024])
    assert torch.equal(ds.x_train[200, 2, 1], row[2048 + 32 : 2048 + 64])
    assert int(ds.y_train[200]) == entry["labels"][0]


def test_cifar10_missing_file_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetMissingError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path)


def test_lared_from_the_layout(fixture_root: Path) -> None:
    ds = load_dataset("lared", root=fixture_root / "data", cache=False)
    assert ds.n_classes == 3 and ds.input_shape == (1, 32, 32)
    assert ds.n_train + ds.n_test == 6 * 3 * 30 and len(ds.meta["y_test_other"]) == 4 * 3 * 30
    assert ds.meta["subjects"] == [f"s{i}" for i in range(1, 11)]


def test_imagenet_from_the_layout_with_balanced_subsets(fixture_root: Path) -> None:
    ds = load_imagenet(fixture_root / "imagenet", size=16)
    assert isinstance(ds, FolderDataset)
    assert (ds.n_train, ds.n_test, ds.n_classes) == (32, 24, 4)
    assert ds.classes == IMAGENET_WNIDS
    x, y = ds.train[0]
    assert x.shape == (3, 16, 16) and 0 <= float(x.min()) <= float(x.max()) <= 1 and y == 0
    sub = load_imagenet(fixture_root / "imagenet", size=16, n_train=12, n_test=8, seed=1)
    assert (sub.n_train, sub.n_test) == (12, 8)
    labels = [sub.train.dataset.targets[i] for i in sub.train.indices]
    assert np.bincount(labels).tolist() == [3, 3, 3, 3]
    again = load_imagenet(fixture_root / "imagenet", size=16, n_train=12, n_test=8, seed=1)
    assert again.train.indices == sub.train.indices
    assert "balanced" in sub.source and str(fixture_root / "imagenet") in sub.source


def test_imagenet_registry_follows_env(fixture_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("JACNB_IMAGENET", str(fixture_root / "imagenet"))
    ds = load_dataset("imagenet", root=fixture_root / "nowhere", size=8)
    assert ds.n_classes == 4
    monkeypatch.delenv("JACNB_IMAGENET")
    with pytest.raises(DatasetMissingError, match="ImageFolder"):
        load_dataset("imagenet", root=fixture_root / "nowhere")


def test_imagenet_trains_with_loader_processes(fixture_root: Path) -> None:
    """The full-size path: images decoded in loader processes (what the ResNet chapter uses
    from :data:`jacnb.chapters.resnet.LOADER_WORKERS_FROM` images on)."""
    ds = load_imagenet(fixture_root / "imagenet", size=16)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 14 * 14, 4))
    cfg = FitConfig(
        schedule=[(0.1, 1)], batch_size=8, augment="crop_colour", crop=14, num_workers=2
    )
    result = fit(model, ds.train, ds.test, cfg)
    assert 0 <= result["test_acc"] <= 1


# ---------------------------------------------------------------------------------------------
# The chapters at smoke on the fixtures
# ---------------------------------------------------------------------------------------------


def _smoke(monkeypatch, chapter: str, **overrides) -> None:
    """Narrow a chapter's ``smoke`` settings for these tests (the code path is unchanged): the
    panels of the datasets under test only, fewer cells where a cell is slow."""
    module = importlib.import_module(f"jacnb.chapters.{chapter}")
    smoke = module.settings("smoke")
    for key, value in overrides.items():
        block, _, name = key.rpartition("__")
        (smoke[block] if block else smoke)[name] = value
    monkeypatch.setattr(module, "settings", lambda profile="smoke": copy.deepcopy(smoke))


def test_fully_connected_reads_cifar10(on_fixtures: Path, monkeypatch) -> None:
    """Fig. 3 on CIFAR-10 (its nets are as wide as the input: 3072) at one depth, size and seed."""
    from jacnb.chapters import fully_connected as ch

    cifar = {"paper": "CIFAR-10", "candidates": ["cifar10"]}
    _smoke(
        monkeypatch,
        "fully_connected",
        panels=[cifar],
        depths=[2],
        n_train=[300],
        seeds=[0],
        projection_cell=None,
    )
    result = ch.run("smoke")
    (panel,) = result.panels
    assert (panel.dataset, panel.label) == ("cifar10", "CIFAR-10")
    assert str(on_fixtures / "data" / "cifar-10-batches-py") in panel.note
    frames = {k: f for k, f in result.frames().items() if "dataset" in f.columns and len(f)}
    assert frames, "no frame names its dataset"
    for f in frames.values():
        assert set(f["dataset"]) <= {"cifar10", "CIFAR-10"}, set(f["dataset"])


def test_convolutional_reads_lared_and_cifar10(on_fixtures: Path, monkeypatch) -> None:
    """Table II's LaRED panel and Table III's CIFAR-10 panel (the MNIST panel left out) at one
    size and seed."""
    from jacnb.chapters import convolutional as ch

    smoke = ch.settings("smoke")
    lared = [{**p, "n_train": [200]} for p in smoke["table2"]["panels"] if p["paper"] == "LaRED"]
    cifar = [{**p, "n_train": [50]} for p in smoke["table3"]["panels"]]
    _smoke(
        monkeypatch,
        "convolutional",
        table2__panels=lared,
        table2__seeds=[0],
        table3__panels=cifar,
        table3__seeds=[0],
    )
    result = ch.run("smoke")
    frames = result.frames()
    for table, name in (("table2", "lared"), ("table3", "cifar10")):
        for kind in ("runs", "selection"):
            assert set(frames[f"{table}_{kind}"]["dataset"]) == {name}, (table, kind)
    # LaRED's two test sets: the same subjects and the four other subjects
    columns = set(frames["table2_runs"]["column"])
    assert {"LaRED (same subject)", "LaRED (different subject)"} <= columns, columns
    labels = [p.label for p, _ in ch.plan_table(ch.table_settings(ch.settings("smoke"), "table3"))]
    assert labels == ["CIFAR-10, resized to 16x16"], labels


def test_resnet_reads_cifar10_and_imagenet(on_fixtures: Path) -> None:
    from jacnb.chapters import resnet as ch

    result = ch.run("smoke")
    assert (result.dataset4, result.dataset5) == ("cifar10", "imagenet")
    frames = result.frames()
    assert set(frames["table4_runs"]["dataset"]) == {"cifar10"}
    assert set(frames["table5_runs"]["dataset"]) == {"imagenet"}
    assert len(frames["fig5_curves"])
    assert result.label("table5") == "ImageNet" and "stand-in" not in result.label("table4")
    assert os.environ["JACNB_IMAGENET"] == str(on_fixtures / "imagenet")


def test_low_rank_reads_cifar10(on_fixtures: Path, monkeypatch) -> None:
    """Oymak et al.'s Sec. 4 on CIFAR-10 (the dataset of the ``paper`` profile) at ``smoke``:
    the training runs read the fixture's pickles, and the page's panel names CIFAR-10 itself,
    not a stand-in."""
    from jacnb.chapters import low_rank_jacobian as ch

    _smoke(
        monkeypatch,
        "low_rank_jacobian",
        dataset="cifar10",
        datasets=("cifar10",),
        epochs_clean=3,
        epochs_noisy=3,
        n_checkpoints=3,
        bench_n=20,
    )
    result = ch.run("smoke")
    assert result.ran, result.missing
    assert result.dataset == "cifar10"
    assert str(on_fixtures / "data" / "cifar-10-batches-py") in result.source
    assert not result.stand_in
    assert set(result.ok["nK"]) and int(result.ok.iloc[0]["p"]) > 0
    frames = result.frames()
    assert len(frames["alignment_runs"]), "no alignment runs on the CIFAR-10 layout"
