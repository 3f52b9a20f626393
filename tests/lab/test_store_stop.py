"""Stopping is clean, and one lost worker loses one run: SIGTERM to ``python -m jacnb.run ...
--executor local`` stops the pool and its workers (no orphans), releases the claims and exits
non-zero saying how to resume; a pool worker that dies costs only its own run, which is retried.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from jacnb.lab.store import LocalPool, ResultStore, run_grid

REPO = Path(__file__).resolve().parents[2]

COMMAND = textwrap.dedent(
    """
    import sys, types
    from jacnb import run as cli

    def slow(config):
        import os, time
        from pathlib import Path
        Path(config["root"], f"pid-{config['seed']}").write_text(str(os.getpid()))
        time.sleep(120)
        return {"seed": config["seed"]}

    def chapter_run(profile, *, executor=None, store=None):
        from jacnb.lab.store import run_grid
        configs = [{"experiment": "e", "seed": s, "root": sys.argv[1]} for s in range(4)]
        run_grid(configs, slow, store, progress=False, executor=executor, poll=0.2)

    chapters = types.ModuleType("jacnb.chapters")
    chapters.__path__ = []
    fake = types.ModuleType("jacnb.chapters.fake")
    fake.run = chapter_run
    sys.modules["jacnb.chapters"] = chapters
    sys.modules["jacnb.chapters.fake"] = fake
    argv = ["fake", "--executor", "local", "--workers", "2", "--results", sys.argv[1]]
    raise SystemExit(cli.main(argv))
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_sigterm_stops_the_pool_releases_claims_and_says_how_to_resume(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", COMMAND, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("pid-*"))) < 2:  # both workers are training
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in tmp_path.glob("pid-*")]
        assert list((tmp_path / ".claims" / "e").glob("*.claim"))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM" in err.decode() and "Resume with the same command" in err.decode()
    time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)]  # no orphans
    assert not list((tmp_path / ".claims" / "e").glob("*.claim"))  # claims released
    assert ResultStore(tmp_path).records("e") == []


def _dies_once(config):
    """The first attempt at seed 1 kills its own worker process."""
    root = Path(config["root"])
    with open(root / "attempts", "a") as fh:
        fh.write(f"{config['seed']}\n")
    if config["seed"] == 1 and not (root / "died").exists():
        (root / "died").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)
    return {"seed": config["seed"]}


def test_a_dead_pool_worker_costs_only_its_run_which_is_retried(tmp_path: Path) -> None:
    pool = LocalPool(2)
    configs = [{"experiment": "e", "seed": s, "root": str(tmp_path)} for s in range(4)]
    try:
        frame = run_grid(
            configs, _dies_once, ResultStore(tmp_path), progress=False, executor=pool, poll=0.2
        )
    finally:
        pool.shutdown()
    assert sorted(frame["seed"]) == [0, 1, 2, 3]
    attempts = sorted(int(s) for s in (tmp_path / "attempts").read_text().split())
    assert attempts == [0, 1, 1, 2, 3]  # the dead worker's run twice, every other run once
