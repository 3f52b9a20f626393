"""A grid through a real SLURM: a one-node cluster stood up by ``scripts/slurm_local.sh``
(Debian's slurmctld, slurmd, slurm-client and munge; no accounting, no cgroups), a task cancelled
mid-array, the grid resubmitted by two submitters at once.

Marked ``slurm`` (``pytest -m slurm`` runs only this; ``-m "not slurm"`` leaves it out). It needs
root on Debian and skips with the stand-up script's reason elsewhere (not root, not Debian,
packages not installable). What it checks, on the cluster path of
:func:`jacnb.lab.store.run_grid` with :func:`jacnb.lab.store.slurm_executor`:

* a task cancelled with ``scancel`` (it writes no result; without accounting submitit would wait
  for it forever) makes the submitter return within :data:`CANCEL_BOUND_SECONDS`, raising
  :class:`jacnb.lab.store.LostRunsError` after the other runs are stored, and the cancelled
  task's claim is released;
* the two independent grids of the driver go out as one job array;
* resubmitting trains only the missing config (one array task in all, although two submitters
  run at once: the second finds the first one's claim and waits), and every config finished
  training exactly once;
* each task runs with ``SLURM_CPUS_PER_TASK`` torch threads (one here), not the machine's cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from jacnb.lab.store import ResultStore

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
DRIVER = REPO / "tests" / "slurm_grid.py"
N = 5
HELD = "c1"
#: The submitter must return this soon after the held task is cancelled. The driver asks SLURM
#: for task states every 1 s and gives an ended task 3 s to show its result file, and polls every
#: 0.5 s: about 5 s on an idle machine; the rest is slack for a loaded one (15.8 s measured with
#: a load average of 15 on 2 cores). Without the watch the submitter waited forever.
CANCEL_BOUND_SECONDS = 30.0


@pytest.fixture(scope="module")
def slurm():
    """A running one-node SLURM (partition ``debug``), brought down again afterwards if this
    test stood it up."""
    was_up = subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0
    t0 = time.monotonic()
    up = subprocess.run([SCRIPT, "up"], capture_output=True, text=True, timeout=900)
    if up.returncode == 77:
        pytest.skip(up.stderr.strip().splitlines()[-1])
    assert up.returncode == 0, up.stderr
    print(f"SLURM stood up in {time.monotonic() - t0:.1f} s: {up.stderr.strip()}")
    yield
    if not was_up:
        subprocess.run([SCRIPT, "down"], capture_output=True, timeout=120)


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(what: str, check, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"submitter exited ({proc.returncode}) while waiting for {what}: "
                        f"{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _submitter(root: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO)  # the tasks import this checkout's jacnb
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(root), str(N)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_cancelled_task_is_reported_in_bounded_time_and_resubmission_trains_it_once(
    slurm, tmp_path: Path
) -> None:
    t_start = time.monotonic()
    store = tmp_path / "store" / "slurm_test"
    (tmp_path / f"hold-{HELD}").touch()
    first = _submitter(tmp_path)

    # the held task has started (it holds a slot) and every other config is stored
    started = _wait_for(
        f"{HELD} to start",
        lambda: [t for name, t in _lines(tmp_path / "starts") if name == HELD],
        90, first,
    )
    _wait_for(
        f"{N - 1} records",
        lambda: len(list(store.glob("*.json"))) == N - 1,
        90, first,
    )
    arrays = {task.split("_")[0] for _, task in _lines(tmp_path / "starts")}
    assert len(arrays) == 1, f"two grids, one submission: one job array, not {arrays}"
    t_cancel = time.monotonic()
    subprocess.run(["scancel", started[0]], check=True, timeout=30)
    try:
        out, _ = first.communicate(timeout=CANCEL_BOUND_SECONDS + 60)
    except subprocess.TimeoutExpired:
        first.kill()
        pytest.fail(f"the submitter still waits {CANCEL_BOUND_SECONDS + 60} s after scancel")
    waited = time.monotonic() - t_cancel
    print(f"submitter returned {waited:.1f} s after scancel of {started[0]}: {out.strip()}")
    assert first.returncode == 3, out
    assert HELD in out and "CANCELLED" in out, out
    assert waited <= CANCEL_BOUND_SECONDS, f"{waited:.1f} s > {CANCEL_BOUND_SECONDS} s"
    assert len(list(store.glob("*.json"))) == N - 1
    assert not list((tmp_path / "store" / ".claims").rglob("*.claim")), "claim not released"

    # resubmit, twice at once: one task for the one missing config
    (tmp_path / f"hold-{HELD}").unlink()
    second, third = _submitter(tmp_path), _submitter(tmp_path)
    for proc in (second, third):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out

    assert len(list(store.glob("*.json"))) == N
    finishes = Counter(name for name, _ in _lines(tmp_path / "finishes"))
    assert finishes == Counter({f"c{i}": 1 for i in range(N)}), finishes
    starts = Counter(name for name, _ in _lines(tmp_path / "starts"))
    assert starts == Counter({f"c{i}": 2 if f"c{i}" == HELD else 1 for i in range(N)}), starts
    submitted = sorted(p.name for p in (tmp_path / "jobs").glob("*_submitted.pkl"))
    assert len(submitted) == N + 1, submitted

    results = [rec["result"] for rec in ResultStore(tmp_path / "store").records("slurm_test")]
    assert {r["cpus_per_task"] for r in results} == {"1"}
    assert {r["threads"] for r in results} == {1}
    print(f"test took {time.monotonic() - t_start:.1f} s")
