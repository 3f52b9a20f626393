"""The store under random kills and concurrent workers (bounded: about three seconds).

Three worker processes run the same grid on one store in random orders; every 0.05-0.3 s one of
them is killed with SIGKILL (mid-run, mid-claim, mid-write: wherever it is) and a fresh one
starts. Afterwards one grid in this process finishes what is left. Invariants:

* every key is stored once (a successful publish of its record happens once);
* no record is lost (every key stored during the chaos is still there, valid, at the end);
* no finished run is retrained (no run starts after its record was stored), and a run is
  trained again only when a kill stopped an earlier try (claims keep workers apart).

``JACNB_CHAOS_SEED`` picks the random draw (default 0); ``JACNB_CHAOS_SECONDS`` the duration.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import jacnb.lab.store.result_store as result_store
from jacnb.lab.store import ResultStore, config_key, run_grid

N_CONFIGS = 80
N_WORKERS = 3


def _log(root: Path, line: str) -> None:
    fd = os.open(root / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _configs() -> list[dict]:
    return [{"experiment": "chaos", "seed": s} for s in range(N_CONFIGS)]


def _logging_publish(root: Path):
    """``publish`` that logs each record it stores."""
    publish = result_store.publish

    def logged(path: Path, data: bytes) -> bool:
        stored = publish(path, data)
        if stored:
            _log(root, f"stored {path.stem}")
        return stored

    return logged


def _worker(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    result_store.publish = _logging_publish(root)  # in this forked process only

    def run(config):
        _log(root, f"train {config_key(config)}")
        time.sleep(rng.uniform(0.02, 0.12))
        return {"seed": config["seed"], "test_acc": 0.5}

    configs = _configs()
    rng.shuffle(configs)
    run_grid(configs, run, ResultStore(root / "store"), progress=False, poll=0.05)


def test_random_kills_and_concurrent_workers_keep_the_invariants(tmp_path: Path, monkeypatch):
    seed = int(os.environ.get("JACNB_CHAOS_SEED", "0"))
    seconds = float(os.environ.get("JACNB_CHAOS_SECONDS", "3"))
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("fork")  # no re-import: workers start in milliseconds

    def start() -> multiprocessing.Process:
        p = ctx.Process(target=_worker, args=(tmp_path, rng.randrange(1 << 30)), daemon=True)
        p.start()
        return p

    workers = [start() for _ in range(N_WORKERS)]
    kills = 0
    end = time.monotonic() + seconds
    # on a loaded machine fewer kills fit in the time: go on (10 s at most) until three did
    while time.monotonic() < end or (kills < 3 and time.monotonic() < end + 10):
        time.sleep(rng.uniform(0.05, 0.3))
        victim = rng.randrange(len(workers))
        if workers[victim].is_alive():
            os.kill(workers[victim].pid, signal.SIGKILL)
            kills += 1
        workers[victim].join()
        workers[victim] = start()
    for p in workers:  # the last ones are killed too, perhaps mid-run: those kills count
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.join()

    log = (tmp_path / "log").read_text().split("\n") if (tmp_path / "log").exists() else []
    stored_in_chaos = {line.split()[1] for line in log if line.startswith("stored")}

    calls: list[int] = []

    def finish(config):
        calls.append(config["seed"])
        _log(tmp_path, f"train {config_key(config)}")
        return {"seed": config["seed"], "test_acc": 0.5}

    monkeypatch.setattr(result_store, "publish", _logging_publish(tmp_path))
    store = ResultStore(tmp_path / "store")
    start = time.monotonic()
    frame = run_grid(_configs(), finish, store, progress=False, poll=0.05)
    assert time.monotonic() - start < 20  # the killed workers' claims were stale at once
    final_log = (tmp_path / "log").read_text().split("\n")

    keys = {config_key(c) for c in _configs()}
    stored = Counter(line.split()[1] for line in final_log if line.startswith("stored"))
    print(f"seed {seed}: {kills} kills, {len(stored_in_chaos)} runs stored during the chaos")
    assert kills >= 3 and stored_in_chaos  # the chaos did happen, and workers got work done
    assert sorted(frame["seed"]) == list(range(N_CONFIGS))  # every run, once
    assert all(n == 1 for n in stored.values()), stored.most_common(3)  # every key stored once
    assert len(stored) >= N_CONFIGS - kills  # at most one log line lost per kill
    trained = Counter(line.split()[1] for line in final_log if line.startswith("train"))
    assert sum(n - 1 for n in trained.values()) <= kills  # trained again only after a kill
    assert stored_in_chaos <= {r["key"] for r in store.records("chaos")} == keys  # none lost
    for key in keys:  # no finished run retrained
        lines = [i for i, line in enumerate(final_log) if line.endswith(key)]
        done = [i for i in lines if final_log[i].startswith("stored")]
        if done:
            assert not [i for i in lines if final_log[i].startswith("train") and i > done[0]]
    retrained = [
        c for c in calls if config_key({"experiment": "chaos", "seed": c}) in stored_in_chaos
    ]
    assert not retrained
