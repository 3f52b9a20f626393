"""The result store cannot lie (issue 11): temp files are never records, damaged records are
quarantined and recomputed, non-finite values are valid JSON, a kill during a write leaves a
store that opens, and a store that cannot be written to (or is full) fails before any training.
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jacnb.lab.store import ResultStore, run_grid

REPO = Path(__file__).resolve().parents[2]


def _square(config):
    return {"value": config["seed"] ** 2}


def _counting(calls):
    def run(config):
        calls.append(config["seed"])
        return {"value": config["seed"] ** 2}

    return run


# -- temp files --------------------------------------------------------------------------------


def test_planted_temp_files_are_never_read_as_records(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg = {"experiment": "e", "seed": 0}
    path = store.put(cfg, {"value": 1})
    (path.parent / ".tmp-empty.json").write_text("")  # a write killed before its first byte
    shutil.copy(path, path.parent / ".tmp-complete.json")  # killed between fsync and rename
    assert len(store.records("e")) == 1
    assert len(store.records()) == 1
    assert len(store.frame("e")) == 1
    calls: list[int] = []
    frame = run_grid([cfg], _counting(calls), store, progress=False)
    assert calls == [] and len(frame) == 1


def test_stale_temp_files_are_removed_and_fresh_ones_kept(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg = {"experiment": "e", "seed": 0}
    path = store.put(cfg, {"value": 1})
    stale = path.parent / ".tmp-stale.json"
    stale.write_text('{"key": ')
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    fresh = path.parent / ".tmp-fresh.json"  # may belong to a writer that is alive right now
    fresh.write_text("")
    run_grid([cfg], _square, store, progress=False)
    assert not stale.exists()
    assert fresh.exists()


# -- damaged records ---------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGES = {
    "truncated": _truncate,
    "empty": lambda p: p.write_text(""),
    "empty-object": lambda p: p.write_text("{}"),
    "not-utf8": lambda p: p.write_bytes(b"\xff\xfe\x00garbage\x80"),
    "a-list": lambda p: p.write_text("[1, 2]"),
    "no-config": lambda p: p.write_text(json.dumps({"key": p.stem, "result": {"value": 1}})),
    "wrong-key": lambda p: p.write_text(
        json.dumps({"key": "0" * 16, "config": {"experiment": "e", "seed": 3}, "result": {}})
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_record_is_quarantined_and_recomputed(tmp_path: Path, damage: str) -> None:
    store = ResultStore(tmp_path)
    cfg = {"experiment": "e", "seed": 3}
    other = {"experiment": "e", "seed": 4}
    path = store.put(cfg, {"value": 9, "curve": list(range(50))})
    store.put(other, {"value": 16})
    DAMAGES[damage](path)
    with pytest.warns(UserWarning, match=path.name):
        assert not store.has(cfg)
    assert not path.exists()
    moved = list(tmp_path.glob(f"*/.quarantine/{path.stem}*"))
    assert len(moved) == 1  # set aside for inspection, not deleted
    calls: list[int] = []
    frame = run_grid([cfg, other], _counting(calls), store, progress=False)
    assert calls == [3]  # only the damaged run is trained again
    assert sorted(frame["value"]) == [9, 16]
    assert store.get(cfg) == {"value": 9}


def test_reading_a_store_with_a_damaged_record_names_it_and_goes_on(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    good = store.put({"experiment": "e", "seed": 0}, {"value": 0})
    bad = store.put({"experiment": "e", "seed": 1}, {"value": 1})
    bad.write_text('{"key": "')
    with pytest.warns(UserWarning, match=bad.name):
        records = store.records("e")
    assert [r["key"] for r in records] == [good.stem]


# -- non-finite values -------------------------------------------------------------------------


def _strict_json(text: str):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_are_valid_json_and_read_back(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg = {"experiment": "e", "seed": 0}
    nan, inf = float("nan"), float("inf")
    path = store.put(cfg, {"acc": nan, "curve": [1.0, inf, -inf], "nested": {"x": nan}})
    record = _strict_json(path.read_text())  # what any other JSON reader sees
    assert record["result"]["acc"] is None
    assert record["result"]["curve"] == [1.0, None, None]
    assert record["status"] == "ok"
    back = store.get(cfg)
    assert math.isnan(back["acc"]) and math.isnan(back["nested"]["x"])
    assert back["curve"] == [1.0, inf, -inf]
    assert math.isnan(store.frame("e")["acc"].iloc[0])


def test_a_diverged_result_is_stored_with_its_status_and_reason(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg = {"experiment": "e", "seed": 0}

    class Diverged(RuntimeError):
        status = "diverged"

    def run(config):
        raise Diverged("loss 1.9e+04 above 100 x its initial value at epoch 0")

    frame = run_grid([cfg], run, store, progress=False)
    assert frame["status"].tolist() == ["diverged"]
    assert "initial value" in frame["reason"].iloc[0]
    record = _strict_json(store.path(cfg).read_text())
    assert record["status"] == "diverged" and "initial value" in record["reason"]
    assert store.has(cfg)  # a diverged run is a result: it is not retrained


# -- kill during a write -------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from jacnb.lab.store import ResultStore, run_grid

    fsync = os.fsync

    def slow_fsync(fd):  # a slow disk: each temp file lives 0.2 s before its rename
        print("fsync", flush=True)
        time.sleep(0.2)
        fsync(fd)

    os.fsync = slow_fsync

    def run(config):
        print("run", flush=True)  # the record is written right after this
        return {"seed": config["seed"], "blob": [float(i) for i in range(200_000)]}

    store = ResultStore(sys.argv[1])
    configs = [{"experiment": "big", "seed": s} for s in range(6)]
    run_grid(configs, run, store, progress=False)
    print("done", flush=True)
    """
)


def test_sigkill_during_writes_leaves_a_store_that_opens_and_counts_once(tmp_path: Path) -> None:
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    rng = random.Random(0)
    left_tmp: set[str] = set()
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, env=env, cwd=REPO
        )
        assert proc.stdout is not None
        line = b"fsync"
        while line == b"fsync":  # the store's probe before the grid
            line = proc.stdout.readline().strip()
        if line != b"run":  # all stored already: nothing to kill
            proc.wait()
            continue
        if rng.random() < 0.5:  # half the kills while a temp file is being written
            proc.stdout.readline()  # "fsync" of the record's temp file
            time.sleep(rng.uniform(0.0, 0.15))
        else:  # the others anywhere from the end of the run on
            time.sleep(rng.uniform(0.0, 0.45))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left_tmp |= {p.name for p in root.glob("*/.tmp-*")}
        store = ResultStore(root)
        records = store.records("big")  # reopening never crashes
        keys = [r["key"] for r in records]
        assert len(keys) == len(set(keys))
        assert all(len(r["result"]["blob"]) == 200_000 for r in records)
    assert left_tmp  # some kills did hit a write (between its temp file and its rename)
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(root)], capture_output=True, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr.decode()
    store = ResultStore(root)
    frame = store.frame("big")
    assert sorted(frame["seed"]) == list(range(6))  # every run once: no double count
    store.clean_tmp(max_age=0)
    assert list(root.glob("*/.tmp-*")) == []
    print(f"temp files left behind by the kills: {len(left_tmp)}")


# -- early failure -----------------------------------------------------------------------------


def _never(config):
    raise AssertionError("trained although the store cannot take its record")


def test_read_only_store_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    """A store that refuses writes (mocked: root ignores file modes, so chmod proves nothing)."""
    store = ResultStore(tmp_path / "results")
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OSError, match="not writable") as err:
        run_grid([{"experiment": "e", "seed": 0}], _never, store, progress=False)
    assert str(tmp_path / "results") in str(err.value)
    assert "JACNB_RESULTS" in str(err.value)  # says what to do


@pytest.fixture
def small_mount(tmp_path: Path):
    """A real 256 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    point = tmp_path / "mnt"
    point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_read_only_mount_fails_before_training(small_mount: Path) -> None:
    (small_mount / "results").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    store = ResultStore(small_mount / "results")
    with pytest.raises(OSError, match="not writable"):
        run_grid([{"experiment": "e", "seed": 0}], _never, store, progress=False)


def test_full_disk_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    store = ResultStore(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=100_000))
    configs = [{"experiment": "e", "seed": s} for s in range(10)]
    with pytest.raises(OSError, match="free") as err:
        run_grid(configs, _never, store, progress=False, checkpoint_bytes=50_000_000)
    assert str(tmp_path) in str(err.value)
    # a grid whose records are all stored needs no room
    monkeypatch.undo()
    for c in configs:
        store.put(c, {"value": 0})
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=0))
    assert len(run_grid(configs, _never, store, progress=False)) == 10


def test_small_real_disk_fails_before_training(small_mount: Path) -> None:
    store = ResultStore(small_mount / "results")
    configs = [{"experiment": "e", "seed": s} for s in range(3)]
    with pytest.raises(OSError, match="free"):
        run_grid(configs, _never, store, progress=False, checkpoint_bytes=1_000_000)


def test_truncated_model_weights_are_set_aside_and_the_model_retrained(tmp_path: Path) -> None:
    import torch
    from torch import nn

    from jacnb.lab.store import trained_model

    store = ResultStore(tmp_path)
    cfg = {"experiment": "m", "seed": 0}
    fits: list[int] = []

    def fit(model):
        fits.append(1)
        with torch.no_grad():
            model.weight.fill_(3.0)
        return {"acc": 1.0}

    trained_model(cfg, lambda: nn.Linear(2, 2), fit, store)
    weights = store.checkpoint_path(cfg)
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.warns(UserWarning, match=weights.name):
        model, result = trained_model(cfg, lambda: nn.Linear(2, 2), fit, store)
    assert fits == [1, 1] and result == {"acc": 1.0}
    assert torch.equal(model.weight, torch.full((2, 2), 3.0))
    assert len(list((weights.parent / ".quarantine").iterdir())) == 1
