"""A result store a lab can share and trust: a record proves itself (key recomputed from its
config, checksum of its content, result schema), records follow the umask, a read-only store is
fully readable whatever it holds, a store short of bytes or inodes fails before training, claims
of dead, stopped or replaced owners go stale at once, a run is stored once, and ``run_grid``
refuses configs it could not find again.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from jacnb.lab.store import ResultStore, StoreError, run_grid
from jacnb.lab.store.leases import HEARTBEAT_SECONDS, STALE_CLAIM_SECONDS, this_process
from jacnb.lab.store.schema import FRACTION, ResultSchema

CFG = {"experiment": "e", "seed": 0}


def _run(config):
    return {"test_acc": 0.5, "train_acc": 1.0, "seed": config["seed"]}


def _counting(calls):
    def run(config):
        calls.append(config["seed"])
        return _run(config)

    return run


def _never(config):
    raise AssertionError("trained although nothing was to be trained")


def _edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _quarantined(path: Path) -> list[Path]:
    return list((path.parent / ".quarantine").glob(f"{path.name}.*"))


# -- a record proves itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["config"].__setitem__("seed", 99),  # the key no longer matches its config
        lambda r: r["result"].__setitem__("test_acc", 0.0123),  # the checksum no longer matches
        lambda r: r.__setitem__("status", "diverged"),
    ],
    ids=["config", "result", "status"],
)
def test_a_hand_edited_record_is_quarantined_and_recomputed(tmp_path: Path, change) -> None:
    store = ResultStore(tmp_path)
    path = store.put(CFG, _run(CFG))
    _edit(path, change)
    with pytest.warns(UserWarning, match=str(path)):
        assert store.frame("e").empty  # never shown
    assert _quarantined(path) and not path.exists()
    calls: list[int] = []
    frame = run_grid([CFG], _counting(calls), store, progress=False)
    assert calls == [0] and frame["test_acc"].tolist() == [0.5]


def test_a_record_without_checksum_is_accepted_on_its_key(tmp_path: Path) -> None:
    """Records written before records carried a checksum stay valid while their config hashes
    to their key; an edited config is caught all the same."""
    store = ResultStore(tmp_path)
    path = store.put(CFG, _run(CFG))
    _edit(path, lambda r: r.pop("checksum"))
    assert store.get(CFG) == _run(CFG)
    _edit(path, lambda r: r["config"].__setitem__("seed", 99))
    with pytest.warns(UserWarning, match="does not hash to its key"):
        assert store.get(CFG) is None


@pytest.mark.parametrize(
    ("result", "why"),
    [
        ({"train_acc": 1.0}, "'test_acc' is missing"),
        ({"test_acc": "high", "train_acc": 1.0}, "not a number"),
        ({"test_acc": 1.7, "train_acc": 1.0}, "above 1.0"),
        ({"test_acc": float("nan"), "train_acc": 1.0}, "not finite"),
    ],
    ids=["missing", "string", "range", "nan"],
)
def test_a_result_that_breaks_its_schema_is_never_shown(tmp_path: Path, result, why) -> None:
    schema = ResultSchema({"test_acc": FRACTION, "train_acc": FRACTION})
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError, match=why):  # this store refuses to write it ...
        store.with_schema(["e"], schema).put(CFG, result)
    path = store.path(CFG)
    _edit_to(path, CFG, result)  # ... other code wrote it: valid JSON, right key, checksum
    calls: list[int] = []
    with pytest.warns(UserWarning, match=why):
        frame = run_grid([CFG], _counting(calls), store, progress=False, schema=schema)
    assert calls == [0] and frame["test_acc"].tolist() == [0.5]  # recomputed, then shown
    assert _quarantined(path)


def _edit_to(path: Path, config: dict, result: dict) -> None:
    """Write a record as other code would: right key and checksum, any result."""
    from jacnb.lab.store.records import config_key, record_bytes

    record = {"key": config_key(config), "config": config, "status": "ok", "reason": ""}
    record["result"] = {k: (None if v != v else v) for k, v in result.items()}
    nan = [{"path": ["result", k], "value": "nan"} for k, v in result.items() if v != v]
    if nan:
        record["nonfinite"] = nan
    path.write_bytes(record_bytes(record))


def test_metric_conventions_hold_without_a_schema(tmp_path: Path) -> None:
    """An accuracy is a number in [0, 1] in every experiment (``"high"`` crashed a page)."""
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError, match="not a number"):
        store.put(CFG, {"test_acc": "high"})
    path = store.path(CFG)
    _edit_to(path, CFG, {"test_acc": "high"})
    with pytest.warns(UserWarning, match="test_acc = 'high' is not a number"):
        assert store.records("e") == []
    # a diverged run may lack metrics and carry non-finite ones
    store.put({**CFG, "seed": 1}, {"final_loss": float("inf")}, status="diverged", reason="x")
    assert len(store.records("e")) == 1


# -- sharing -----------------------------------------------------------------------------------


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


def test_records_and_claims_follow_the_umask(tmp_path: Path, umask_002) -> None:
    store = ResultStore(tmp_path / "results")
    path = store.put(CFG, _run(CFG))
    assert stat.S_IMODE(path.stat().st_mode) == 0o664  # the group can read it
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o775
    claim = store.claim({**CFG, "seed": 1})
    assert claim is not None
    assert stat.S_IMODE(claim.path.stat().st_mode) == 0o664
    claim.release()
    os.umask(0o077)
    private = store.put({**CFG, "seed": 2}, _run(CFG))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


@pytest.fixture
def read_only(monkeypatch, tmp_path: Path):
    """``read_only()``: from then on every change under ``tmp_path`` fails with EROFS, as on a
    read-only volume (mocked: root ignores file modes; the real mount is tested below where
    mounting is allowed)."""
    return lambda: _refuse_changes(monkeypatch, str(tmp_path))


def _refuse_changes(monkeypatch, root: str) -> None:
    def refuse(real, *positions):
        def call(*args, **kwargs):
            if any(str(args[i]).startswith(root) for i in positions if i < len(args)):
                raise OSError(errno.EROFS, "Read-only file system", str(args[0]))
            return real(*args, **kwargs)

        return call

    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if str(path).startswith(root) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    for name in ("unlink", "mkdir", "utime", "rmdir"):
        monkeypatch.setattr(os, name, refuse(getattr(os, name), 0))
    for name in ("replace", "rename", "link"):
        monkeypatch.setattr(os, name, refuse(getattr(os, name), 0, 1))
    monkeypatch.setattr(os, "open", open_)


def _complete_store_with_leftovers(root: Path) -> tuple[ResultStore, list[dict]]:
    store = ResultStore(root)
    configs = [{**CFG, "seed": s} for s in range(3)]
    for c in configs:
        store.put(c, _run(c))
    old = root / "e" / ".tmp-killed.json"
    old.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    return store, configs


def test_a_read_only_store_with_a_leftover_is_fully_readable(tmp_path: Path, read_only) -> None:
    store, configs = _complete_store_with_leftovers(tmp_path / "results")
    read_only()
    with pytest.warns(UserWarning, match="would be removed.*read-only"):
        frame = run_grid(configs, _never, store, progress=False)
    assert sorted(frame["seed"]) == [0, 1, 2]


def test_a_damaged_record_on_a_read_only_store(tmp_path: Path, read_only) -> None:
    """Reading skips it with a warning naming it; training (its run is missing) fails with the
    store's own error, before any run."""
    store, configs = _complete_store_with_leftovers(tmp_path / "results")
    damaged = store.path(configs[1])
    damaged.write_text(damaged.read_text()[:40])  # truncated
    read_only()
    with pytest.warns(UserWarning, match=f"{damaged}.*would be moved"):
        assert sorted(r["config"]["seed"] for r in store.records("e")) == [0, 2]
    with pytest.raises(StoreError, match="not writable"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_grid(configs, _never, store, progress=False)
    assert damaged.exists()  # untouched


@pytest.fixture
def mount(tmp_path: Path):
    """Mount a small tmpfs with the given options (needs root and mount rights)."""
    points: list[Path] = []

    def make(options: str) -> Path:
        point = tmp_path / f"mnt{len(points)}"
        point.mkdir()
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
        )
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
        points.append(point)
        return point

    yield make
    for point in points:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_real_read_only_volume(mount) -> None:
    point = mount("size=1m")
    store, configs = _complete_store_with_leftovers(point / "results")
    damaged = store.path({**CFG, "seed": 7})
    store.put({**CFG, "seed": 7}, _run(CFG))
    damaged.write_text("")
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = run_grid(configs, _never, store, progress=False)
        assert sorted(frame["seed"]) == [0, 1, 2]
        assert len(store.records("e")) == 3
    said = " ".join(str(w.message) for w in caught)
    assert "would be removed" in said and "would be moved" in said
    with pytest.raises(StoreError, match="not writable"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_grid([*configs, {**CFG, "seed": 7}], _never, store, progress=False)


def test_a_store_short_of_inodes_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    real = os.statvfs

    def few_inodes(path):
        s = real(path)
        fields = list(s)
        fields[5], fields[7] = 1000, 10  # f_files, f_favail
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", few_inodes)
    configs = [{**CFG, "seed": s} for s in range(16)]
    with pytest.raises(StoreError, match="inodes"):
        run_grid(configs, _never, ResultStore(tmp_path), progress=False)


def test_a_real_volume_out_of_inodes(mount) -> None:
    point = mount("size=4m,nr_inodes=24")
    configs = [{**CFG, "seed": s} for s in range(16)]
    with pytest.raises(StoreError, match="inodes"):
        run_grid(configs, _never, ResultStore(point / "results"), progress=False)
    assert len(run_grid(configs[:2], _run, ResultStore(point / "results"), progress=False)) == 2


# -- claims and stopping -----------------------------------------------------------------------


def _plant_claim(store: ResultStore, config: dict, owner: dict, age: float = 0.0) -> Path:
    claim = store.claim(config)
    assert claim is not None
    claim.path.write_text(json.dumps(owner))
    then = time.time() - age
    os.utime(claim.path, (then, then))
    return claim.path


def test_a_claim_whose_pid_was_reused_is_taken_over_at_once(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    owner = this_process()
    owner["start"] = owner["start"] - 1000  # this pid, but an earlier process
    _plant_claim(store, CFG, owner)
    assert store.claim(CFG) is not None


def test_a_stopped_claim_holder_loses_its_claim_at_once(tmp_path: Path) -> None:
    code = "from jacnb.lab.store.leases import this_process; import json, time; "
    code += "print(json.dumps(this_process()), flush=True); time.sleep(60)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout is not None
        owner = json.loads(holder.stdout.readline())
        store = ResultStore(tmp_path)
        _plant_claim(store, CFG, owner)
        assert store.claim(CFG) is None  # a live, running holder keeps it
        holder.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        assert store.claim(CFG) is not None
    finally:
        holder.kill()
        holder.wait()


def test_another_hosts_claim_goes_stale_within_six_heartbeats(tmp_path: Path) -> None:
    assert STALE_CLAIM_SECONDS <= 6 * HEARTBEAT_SECONDS <= 90
    store = ResultStore(tmp_path)
    owner = {"host": "elsewhere", "pid": 1, "time": time.time()}
    _plant_claim(store, CFG, owner, age=STALE_CLAIM_SECONDS - 20)
    assert store.claim(CFG) is None
    _plant_claim_again = store._claim_folder(CFG)  # noqa: SLF001 - the planted claim's folder
    for path in _plant_claim_again.glob("*.claim"):
        then = time.time() - STALE_CLAIM_SECONDS - 1
        os.utime(path, (then, then))
    assert store.claim(CFG) is not None


def test_a_worker_that_wakes_after_a_takeover_does_not_store_twice(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    first = store.put(CFG, {"test_acc": 0.5})  # the worker that took the claim over
    inode = first.stat().st_ino
    with pytest.warns(RuntimeWarning, match="already stored"):
        store.put(CFG, {"test_acc": 0.6})  # the stopped worker, resumed
    assert first.stat().st_ino == inode and store.get(CFG) == {"test_acc": 0.5}
    assert store.put(CFG, {"test_acc": 0.6}, replace=True) == first  # explicit replacement
    assert store.get(CFG) == {"test_acc": 0.6}


# -- run_grid refuses what it could not find again ---------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"experiment": "fc/select", "seed": 0},
        {"experiment": "", "seed": 0},
        {"experiment": "../up", "seed": 0},
        {"experiment": ".hidden", "seed": 0},
        {"experiment": 3, "seed": 0},
        {"experiment": "e", "key": "mine"},
        {"experiment": "e", "when": object()},
    ],
    ids=["slash", "empty", "dotdot", "dot", "int", "key", "object"],
)
def test_run_grid_refuses_configs_it_could_not_find_again(tmp_path: Path, config) -> None:
    with pytest.raises(ValueError, match="experiment|reserved|survive"):
        run_grid([{"experiment": "e", "seed": 1}, config], _never, ResultStore(tmp_path))
    assert not (tmp_path / "e").exists()  # refused before anything ran


def test_an_empty_grid_returns_an_empty_frame(tmp_path: Path) -> None:
    frame = run_grid([], _never, ResultStore(tmp_path), progress=False)
    assert frame.empty


def test_numpy_and_tuple_values_are_stored_and_found_again(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    store = ResultStore(tmp_path)
    configs = [{"experiment": "e", "sizes": (1, 2), "seed": np.int64(3), "lam": np.float32(0.5)}]
    calls: list[int] = []
    run_grid(configs, _counting(calls), store, progress=False)
    run_grid(configs, _counting(calls), store, progress=False)
    assert calls == [3]
