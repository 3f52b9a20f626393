"""Fashion-MNIST preparation on a fresh machine (jacnb.core.prepare, jacnb.book.prepare).

The sources are tried in order: a user folder, Debian's installed package, torchvision's
download, ``apt-get install dataset-fashion-mnist`` (as root); with none, the book build reports
the dataset absent and goes on. apt and the network are mocked; the IDX files are tiny ones
written here, and the test reads them back through the real loader."""

from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jacnb import book
from jacnb.core import prepare as pd_mod
from jacnb.core.data import IDX_FILES, load_dataset


def _idx_bytes(a: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array (magic 0x0000 08 ndim, big-endian dims)."""
    head = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(np.uint8).tobytes()


def _write_fake_debian(folder: Path, n: int = 5) -> dict[str, np.ndarray]:
    """Write the four gzipped IDX files the way Debian's package lays them out."""
    rng = np.random.default_rng(0)
    arrays = {
        IDX_FILES["train_images"]: rng.integers(0, 256, (n, 28, 28)),
        IDX_FILES["train_labels"]: rng.integers(0, 10, n),
        IDX_FILES["test_images"]: rng.integers(0, 256, (n - 2, 28, 28)),
        IDX_FILES["test_labels"]: rng.integers(0, 10, n - 2),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write(_idx_bytes(a))
    return arrays


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A machine without Fashion-MNIST: empty data root, no Debian files, no user folder, no
    network (torchvision's download fails), running as root with apt-get on the PATH."""
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(pd_mod, "FASHION_MNIST_DEBIAN_DIR", debian)
    monkeypatch.delenv(pd_mod.FASHION_MNIST_DIR_ENV, raising=False)
    monkeypatch.delenv("JACNB_NO_APT", raising=False)
    monkeypatch.setattr(pd_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(pd_mod.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    calls: list[str] = []

    def offline(root):
        calls.append("download")
        return "torchvision download failed (URLError)"

    monkeypatch.setattr(pd_mod, "_download_fashion_mnist", offline)
    return {"root": tmp_path / "data", "debian": debian, "calls": calls}


def _fake_apt(fresh, monkeypatch, installs: bool = True):
    """Mock subprocess.run for apt-get: 'install' writes the package's files."""
    commands: list[list[str]] = []

    def run(cmd, env=None, **_):
        if not cmd[0].endswith("apt-get"):  # npm pack, dpkg-query: fail as offline tools would
            return subprocess.CompletedProcess(cmd, 1, "", "offline")
        commands.append(cmd)
        fresh["calls"].append(f"apt-get {cmd[1]}")
        assert env["DEBIAN_FRONTEND"] == "noninteractive"
        if cmd[1] == "install" and installs:
            fresh["arrays"] = _write_fake_debian(fresh["debian"])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(pd_mod.subprocess, "run", run)
    return commands


def test_fresh_machine_installs_debian_package_after_download_fails(fresh, monkeypatch):
    commands = _fake_apt(fresh, monkeypatch)
    pd_mod.prepare(["fashion-mnist"], fresh["root"], download=True, apt=True)
    # Order: the download first, then apt-get update, then the install of the one package.
    assert fresh["calls"][:3] == ["download", "apt-get update", "apt-get install"]
    assert commands[1][-1] == "dataset-fashion-mnist" and "-y" in commands[1]
    raw = fresh["root"] / "FashionMNIST" / "raw"
    assert "Debian package dataset-fashion-mnist" in (raw / "PROVENANCE.txt").read_text()
    ds = load_dataset("fashion-mnist", root=fresh["root"])
    want = fresh["arrays"]
    np.testing.assert_array_equal(
        (ds.x_train.numpy()[:, 0] * 255).round(), want[IDX_FILES["train_images"]]
    )
    np.testing.assert_array_equal(ds.y_test.numpy(), want[IDX_FILES["test_labels"]])
    # Idempotent: a second call touches neither apt nor the network.
    fresh["calls"].clear()
    pd_mod.prepare(["fashion-mnist"], fresh["root"], download=True, apt=True)
    assert fresh["calls"] == []


def test_installed_debian_package_is_used_without_network_or_apt(fresh, monkeypatch):
    _write_fake_debian(fresh["debian"])
    _fake_apt(fresh, monkeypatch)
    pd_mod.prepare(["fashion-mnist"], fresh["root"], download=True, apt=True)
    assert fresh["calls"] == []


def test_user_folder_comes_first(fresh, monkeypatch, tmp_path):
    _write_fake_debian(tmp_path / "mine")
    monkeypatch.setenv(pd_mod.FASHION_MNIST_DIR_ENV, str(tmp_path / "mine"))
    _fake_apt(fresh, monkeypatch)
    pd_mod.prepare(["fashion-mnist"], fresh["root"], download=True, apt=True)
    assert fresh["calls"] == []
    raw = fresh["root"] / "FashionMNIST" / "raw"
    assert str(tmp_path / "mine") in (raw / "PROVENANCE.txt").read_text()


def test_not_root_means_no_apt_and_a_message_naming_every_source(fresh, monkeypatch):
    commands = _fake_apt(fresh, monkeypatch)
    monkeypatch.setattr(pd_mod.os, "geteuid", lambda: 1000)
    with pytest.raises(pd_mod.PrepareError) as err:
        pd_mod.prepare(["fashion-mnist"], fresh["root"], download=True, apt=True)
    assert commands == []
    msg = str(err.value)
    for part in ("not installed", "torchvision download failed", "not root", "sudo apt-get"):
        assert part in msg


def test_no_apt_env_var_forbids_the_install(fresh, monkeypatch):
    commands = _fake_apt(fresh, monkeypatch)
    monkeypatch.setenv("JACNB_NO_APT", "1")
    with pytest.raises(pd_mod.PrepareError, match="JACNB_NO_APT"):
        pd_mod.prepare(["fashion-mnist"], fresh["root"], download=True, apt=True)
    assert commands == []


def test_failed_apt_update_is_reported_not_raised(fresh, monkeypatch):
    def run(cmd, **_):
        return subprocess.CompletedProcess(cmd, 100, "", "E: Could not get lock")

    monkeypatch.setattr(pd_mod.subprocess, "run", run)
    assert "exited 100: E: Could not get lock" in pd_mod.apt_install("dataset-fashion-mnist")


def test_book_prepare_reports_absent_fashion_mnist_and_goes_on(fresh, monkeypatch, capsys):
    """What `make book` does on a machine with no source: a clear message, no exception."""
    _fake_apt(fresh, monkeypatch, installs=False)
    monkeypatch.setenv("JACNB_DATA", str(fresh["root"]))
    status = book.prepare("smoke", ["05_resnet"])
    assert status["fashion-mnist"] == "absent"
    out = capsys.readouterr().out
    assert 'fashion-mnist: absent; the chapters that need it say "not run: dataset absent"' in out
    assert "datasets: " in out
