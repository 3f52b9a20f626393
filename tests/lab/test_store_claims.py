"""One run trained once, however many workers (issue 11): concurrent processes on one store
claim a config before training it; a claim whose owner died is taken over; a live claim is
waited for, not duplicated."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

from jacnb.lab.store import ResultStore, run_grid

REPO = Path(__file__).resolve().parents[2]
GRID = [{"experiment": "claims", "seed": s, "lam": lam} for s in range(4) for lam in (0.0, 0.1)]


def counted_run(config):
    """A cheap deterministic run that leaves one file per execution in ``$JACNB_TEST_COUNTS``."""
    counts = Path(os.environ["JACNB_TEST_COUNTS"])
    (counts / f"{config['seed']}-{config['lam']}-{os.getpid()}-{uuid.uuid4().hex}").touch()
    time.sleep(0.15)
    return {"value": config["seed"] * 10 + config["lam"], "curve": [config["seed"]] * 20}


def executions(counts: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in counts.iterdir():
        seed, lam = f.name.split("-")[:2]
        out[f"{seed}-{lam}"] = out.get(f"{seed}-{lam}", 0) + 1
    return out


def _worker(root: str, counts: str, barrier) -> None:
    os.environ["JACNB_TEST_COUNTS"] = counts
    barrier.wait()  # all start the grid at once
    run_grid(GRID, counted_run, ResultStore(root), progress=False, poll=0.05)


def _record_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "claims").glob("*.json"))}


def test_three_processes_train_each_config_once_and_match_a_sequential_run(
    tmp_path: Path, monkeypatch
) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_worker, args=(str(tmp_path / "par"), str(counts), barrier))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert executions(counts) == {f"{c['seed']}-{c['lam']}": 1 for c in GRID}

    seq_counts = tmp_path / "seq-counts"
    seq_counts.mkdir()
    monkeypatch.setenv("JACNB_TEST_COUNTS", str(seq_counts))
    run_grid(GRID, counted_run, ResultStore(tmp_path / "seq"), progress=False)
    parallel, sequential = _record_bytes(tmp_path / "par"), _record_bytes(tmp_path / "seq")
    assert len(parallel) == len(GRID)
    assert parallel == sequential  # byte-identical records


CLAIMER = textwrap.dedent(
    """
    import sys, time
    from jacnb.lab.store import ResultStore

    store = ResultStore(sys.argv[1])
    claim = store.claim({"experiment": "claims", "seed": 0})
    assert claim is not None
    with claim:
        print("claimed", flush=True)
        time.sleep(600)
    """
)


def test_claim_of_a_killed_worker_is_taken_over(tmp_path: Path, monkeypatch) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, str(tmp_path)], stdout=subprocess.PIPE, env=env, cwd=REPO
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"claimed"
    store = ResultStore(tmp_path)
    cfg = {"experiment": "claims", "seed": 0}
    assert store.claim(cfg) is None  # its owner is alive
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    calls: list[int] = []
    t0 = time.monotonic()
    run_grid([cfg], lambda c: calls.append(1) or {"v": 1}, store, progress=False, poll=0.05)
    assert calls == [1]
    assert time.monotonic() - t0 < 10  # no heartbeat timeout needed: the pid is gone


def test_claim_with_a_stale_heartbeat_is_taken_over(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cfg = {"experiment": "claims", "seed": 1}
    claim = store.claim(cfg)  # held by this (live) process, but never heartbeated
    assert claim is not None
    assert store.claim(cfg) is None
    old = time.time() - 3600
    os.utime(claim.path, (old, old))  # e.g. a worker on another host that lost power
    calls: list[int] = []
    run_grid([cfg], lambda c: calls.append(1) or {"v": 1}, store, progress=False, poll=0.05)
    assert calls == [1]


def test_live_claim_is_waited_for_not_retrained(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    busy = {"experiment": "claims", "seed": 2}
    free = {"experiment": "claims", "seed": 3}
    claim = store.claim(busy)
    assert claim is not None

    def other_worker() -> None:
        with claim:  # heartbeats while it "trains"
            time.sleep(1.0)
            store.put(busy, {"v": "from the other worker"})

    thread = threading.Thread(target=other_worker)
    thread.start()
    order: list[int] = []
    frame = run_grid(
        [busy, free],
        lambda c: order.append(c["seed"]) or {"v": "here"},
        store,
        progress=False,
        poll=0.05,
    )
    thread.join()
    assert order == [3]  # the free config was trained, the claimed one waited for
    assert sorted(frame["v"]) == ["from the other worker", "here"]
    assert list(tmp_path.rglob("*.claim")) == []  # claims are released
