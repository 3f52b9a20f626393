"""The cluster path of :func:`jacnb.lab.store.run_grid` without a cluster: the ``squeue`` watch
that notices SLURM tasks ended without a result (a fake ``squeue`` on ``PATH``), the submitter's
claims on queued runs (a second submitter sends nothing), the worker's thread count from
``SLURM_CPUS_PER_TASK``, and a dead task's claim released by its SLURM task id. The real
cluster is in tests/test_slurm.py."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from jacnb.lab.store import LostRun, LostRunsError, ResultStore, run_grid
from jacnb.lab.store.slurm import GONE, SlurmWatch, squeue_states
from jacnb.lab.store.worker import attempt_in_slurm_task, slurm_threads


@pytest.fixture
def fake_squeue(tmp_path: Path, monkeypatch):
    """A ``squeue`` on PATH that prints ``tmp_path/squeue.out`` (and its stderr file, exiting
    with the code in ``squeue.rc``); returns a setter ``(stdout, rc=0, stderr="")``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "squeue"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/squeue.args\n'
        f"cat {tmp_path}/squeue.out\ncat {tmp_path}/squeue.err >&2\n"
        f"exit $(cat {tmp_path}/squeue.rc)\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def answer(stdout: str, rc: int = 0, stderr: str = "") -> None:
        (tmp_path / "squeue.out").write_text(stdout)
        (tmp_path / "squeue.err").write_text(stderr)
        (tmp_path / "squeue.rc").write_text(str(rc))

    return answer


def test_squeue_states_reads_one_line_per_array_task(fake_squeue, tmp_path: Path) -> None:
    fake_squeue("12_0 RUNNING\n12_1 CANCELLED+\n13_0 PENDING\n")
    assert squeue_states(["12_0", "12_1", "13_0"]) == {
        "12_0": "RUNNING",
        "12_1": "CANCELLED",
        "13_0": "PENDING",
    }
    args = (tmp_path / "squeue.args").read_text().split()
    assert args[args.index("-j") + 1] == "12,13" and "-r" in args and "all" in args
    fake_squeue("", rc=1, stderr="slurm_load_jobs error: Invalid job id specified")
    assert squeue_states(["12_0"]) == {}  # none known any more: all gone
    fake_squeue("", rc=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    assert squeue_states(["12_0"]) is None  # no answer: decide nothing


def test_watch_reports_an_ended_task_only_after_the_grace(fake_squeue) -> None:
    fake_squeue("12_0 RUNNING\n12_1 CANCELLED\n12_2 PENDING\n")
    watch = SlurmWatch(state_seconds=0.0, lost_grace_seconds=0.3)
    jobs = ["12_0", "12_1", "12_2", "12_3"]
    watch.refresh(jobs)
    assert [watch.lost(j) for j in jobs] == [None] * 4  # its result file may still come
    time.sleep(0.35)
    watch.refresh(jobs)
    assert [watch.lost(j) for j in jobs] == [None, "CANCELLED", None, GONE]
    fake_squeue("12_0 PENDING\n")  # requeued: running again later, not lost
    watch.refresh(["12_0"])
    assert watch.lost("12_0") is None


def test_watch_decides_nothing_when_squeue_fails(fake_squeue) -> None:
    fake_squeue("", rc=1, stderr="Unable to contact slurm controller")
    watch = SlurmWatch(state_seconds=0.0, lost_grace_seconds=0.0)
    with pytest.warns(RuntimeWarning, match="squeue"):
        watch.refresh(["12_0"])
    assert watch.lost("12_0") is None


class QueuedExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose tasks wait for ``gate`` before starting, as array tasks wait in a
    SLURM queue; counts what was submitted."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__(4)
        self.gate = gate
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1

        def queued():
            self.gate.wait(30)
            return fn(*args, **kwargs)

        return super().submit(queued)


def test_a_second_submitter_sends_nothing_while_the_first_ones_runs_wait_in_the_queue(
    tmp_path: Path,
) -> None:
    store = ResultStore(tmp_path)
    configs = [{"experiment": "queue", "seed": s} for s in range(4)]
    counts = tmp_path / "counts"
    counts.mkdir()

    def run(config):  # sent to the workers by value: count in files
        (counts / f"{config['seed']}-{time.time_ns()}").touch()
        return {"seed": config["seed"]}

    gate = threading.Event()
    first, second = QueuedExecutor(gate), QueuedExecutor(gate)
    with first, second:
        a = threading.Thread(
            target=run_grid, args=(configs, run, store), kwargs=dict(executor=first, poll=0.05)
        )
        a.start()
        deadline = time.monotonic() + 10
        while first.submitted < len(configs) and time.monotonic() < deadline:
            time.sleep(0.01)
        b = threading.Thread(
            target=run_grid, args=(configs, run, store), kwargs=dict(executor=second, poll=0.05)
        )
        b.start()
        time.sleep(0.5)  # the second submitter looks while every run is queued
        gate.set()
        a.join(30)
        b.join(30)
    assert first.submitted == len(configs)
    assert second.submitted == 0
    assert sorted(int(p.name.split("-")[0]) for p in counts.iterdir()) == [0, 1, 2, 3]
    assert not list(tmp_path.glob(".claims/*/*.claim"))  # reservations and claims released


def test_slurm_task_takes_its_thread_count_from_slurm(monkeypatch, tmp_path: Path) -> None:
    import cloudpickle

    for env, want in [
        ({"SLURM_CPUS_PER_TASK": "3", "SLURM_CPUS_ON_NODE": "8"}, 3),
        ({"SLURM_CPUS_ON_NODE": "2"}, 2),
        ({}, None),
        ({"SLURM_CPUS_PER_TASK": "x"}, None),
    ]:
        for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert slurm_threads() == want

    def run(config):
        return {"threads": torch.get_num_threads()}

    store = ResultStore(tmp_path)
    before = torch.get_num_threads()
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    torch.set_num_threads(2)  # what torch would take on a node with more cores
    try:
        config = {"experiment": "threads"}
        assert attempt_in_slurm_task(cloudpickle.dumps((run, store)), config) == "done"
    finally:
        torch.set_num_threads(before)
    assert store.get(config) == {"threads": 1}


def test_a_dead_tasks_claim_is_released_by_its_slurm_task_id(tmp_path: Path, monkeypatch) -> None:
    store = ResultStore(tmp_path)
    mine, other = {"experiment": "e", "seed": 0}, {"experiment": "e", "seed": 1}
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    claim = store.claim(mine)
    assert json.loads(claim.path.read_text())["slurm_task"] == "77_3"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    claim_other = store.claim(other)
    assert store.release_task_claims(mine, "77_4") == []  # not that task's
    assert store.release_task_claims(mine, "77_3") == [claim.path]
    assert not claim.path.exists() and claim_other.path.exists()


def test_a_reservation_is_taken_over_by_its_worker_only(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    config = {"experiment": "e", "seed": 0}
    reservation = store.claim(config)  # the submitter's, alive (this process)
    generation = int(reservation.path.name.split(".")[1])
    assert store.claim(config) is None  # anyone else: busy
    assert store.claim(config, reserved=generation + 1) is None  # a stale reservation number
    taken = store.claim(config, reserved=generation)
    assert taken is not None and int(taken.path.name.split(".")[1]) == generation + 1
    assert not reservation.path.exists()


def test_lost_runs_error_names_each_run_and_says_what_to_do() -> None:
    err = LostRunsError([LostRun({"experiment": "e", "seed": 3}, "12_1", "TIMEOUT", "12_1.err")])
    text = str(err)
    assert "'seed': 3" in text and "12_1" in text and "TIMEOUT" in text and "again" in text
