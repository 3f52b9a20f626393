"""A tiny grid submitted to a real SLURM, driven by tests/test_slurm.py (not a test module).

::

    python tests/slurm_grid.py ROOT N

submits the configs ``c0 ... c{N-1}`` of experiment ``slurm_test``, as two independent grids
(``c0 ... c2`` and the rest, each with its own run function) in one job array, through
``run_grids(..., executor=slurm_executor(ROOT/"jobs", partition="debug", cpus_per_task=1))`` into
the store ``ROOT/store``. Each task appends ``<name> <array job>_<task>`` to ``ROOT/starts``
when it starts and to ``ROOT/finishes`` when it has trained, so the test counts how often each
config trained; while the file ``ROOT/hold-<name>`` exists the task waits (up to 120 s), so the
test can cancel it mid-array. Exit status: 0 every config stored, 3 some runs were lost (the
message names them; rerun to retry), anything else an error. The run function is defined here,
in ``__main__``, so cloudpickle sends it by value: the tasks need only ``jacnb`` on their path.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from jacnb.lab.store import Grid, LostRunsError, ResultStore, run_grids, slurm_executor

EXPERIMENT = "slurm_test"


def _log(root: Path, kind: str, name: str) -> None:
    task = f"{os.environ.get('SLURM_ARRAY_JOB_ID', '')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    fd = os.open(root / kind, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{name} {task}\n".encode())
    finally:
        os.close(fd)


def make_run(root: Path, grid: str):
    def run(config):
        import torch

        name = config["name"]
        assert name in GRIDS[grid], (name, grid)
        _log(root, "starts", name)
        hold = root / f"hold-{name}"
        deadline = time.time() + 120
        while hold.exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(config["seconds"])
        _log(root, "finishes", name)
        return {
            "threads": torch.get_num_threads(),
            "cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK"),
        }

    return run


def configs(n: int) -> list[dict]:
    return [{"experiment": EXPERIMENT, "name": f"c{i}", "seconds": 0.5} for i in range(n)]


#: The two grids' configs by name (the run functions check that they get only their own).
GRIDS = {"a": ("c0", "c1", "c2"), "b": tuple(f"c{i}" for i in range(3, 100))}


def main(argv: list[str]) -> int:
    root, n = Path(argv[0]), int(argv[1])
    executor = slurm_executor(
        root / "jobs",
        partition="debug",
        cpus_per_task=1,
        timeout_min=5,
        state_seconds=1.0,
        lost_grace_seconds=3.0,
    )
    t0 = time.monotonic()
    try:
        grids = [
            Grid([c for c in configs(n) if c["name"] in GRIDS[g]], make_run(root, g), desc=g)
            for g in GRIDS
        ]
        run_grids(grids, ResultStore(root / "store"), executor, poll=0.5, progress=False)
    except LostRunsError as err:
        print(f"[slurm_grid] lost after {time.monotonic() - t0:.1f} s: {err}", flush=True)
        return 3
    print(f"[slurm_grid] stored after {time.monotonic() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
