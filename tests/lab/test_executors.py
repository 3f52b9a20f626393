"""Parallel and distributed execution of a grid through one interface (issue 11):
``run_grid(configs, fn, store, executor=...)`` with ``None``, ``"local"``, a
:class:`~jacnb.lab.store.LocalPool`, any ``concurrent.futures.Executor`` and submitit (its local
executor: real subprocesses, as SLURM job arrays would run them)."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jacnb.lab.store import ResultStore, run_grid

REPO = Path(__file__).resolve().parents[2]
GRID = [{"experiment": "pool", "seed": s} for s in range(6)]


def counted_run(config):
    counts = Path(os.environ["JACNB_TEST_COUNTS"])
    (counts / f"{config['seed']}-{os.getpid()}-{uuid.uuid4().hex}").touch()
    return {"value": config["seed"] ** 2}


def threads_run(config):
    import torch

    return {"threads": torch.get_num_threads(), "pid": os.getpid()}


def failing_run(config):
    if config["seed"] == 2:
        raise ValueError("seed 2 is broken")
    return {"value": config["seed"]}


@pytest.fixture
def counts(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "counts"
    folder.mkdir()
    monkeypatch.setenv("JACNB_TEST_COUNTS", str(folder))
    # workers import this checkout's jacnb, and this module (``counted_run``) by name
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(Path(__file__).parent)]))
    return folder


def _executions(counts: Path) -> list[int]:
    return sorted(int(f.name.split("-")[0]) for f in counts.iterdir())


def _bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "pool").glob("*.json"))}


def test_local_pool_trains_each_config_once_like_in_process(tmp_path: Path, counts: Path) -> None:
    from jacnb.lab.store import LocalPool

    frame = run_grid(GRID, counted_run, ResultStore(tmp_path / "a"), executor=LocalPool(2))
    assert _executions(counts) == list(range(6))
    assert sorted(frame["value"]) == [s**2 for s in range(6)]
    run_grid(GRID, counted_run, ResultStore(tmp_path / "b"), executor=None, progress=False)
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    # a second pass finds every record and trains nothing
    run_grid(GRID, counted_run, ResultStore(tmp_path / "a"), executor="local")
    assert len(_executions(counts)) == 12


def test_local_pool_workers_split_the_cores(tmp_path: Path, counts: Path) -> None:
    from jacnb.lab.store import LocalPool, default_threads

    frame = run_grid(GRID, threads_run, ResultStore(tmp_path), executor=LocalPool(2))
    assert set(frame["threads"]) == {max(1, default_threads() // 2)}
    assert os.getpid() not in set(frame["pid"])


def test_any_concurrent_futures_executor(tmp_path: Path, counts: Path) -> None:
    with ThreadPoolExecutor(3) as pool:
        frame = run_grid(GRID, counted_run, ResultStore(tmp_path), executor=pool)
    assert _executions(counts) == list(range(6))
    assert len(frame) == 6


def test_a_failing_run_is_raised_after_the_others_are_stored(tmp_path: Path, counts: Path) -> None:
    store = ResultStore(tmp_path)
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="seed 2"):
        run_grid(GRID, failing_run, store, executor=pool)
    assert not store.has(GRID[2])
    assert store.has(GRID[0]) and store.has(GRID[1])


def test_submitit_local_executor_runs_a_smoke_grid(tmp_path: Path, counts: Path) -> None:
    submitit = pytest.importorskip("submitit")
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=5)
    store = ResultStore(tmp_path / "results")
    frame = run_grid(GRID, counted_run, store, executor=executor, poll=0.2)
    assert _executions(counts) == list(range(6))
    assert sorted(frame["value"]) == [s**2 for s in range(6)]
    run_grid(GRID, counted_run, ResultStore(tmp_path / "seq"), progress=False)
    assert _bytes(tmp_path / "results") == _bytes(tmp_path / "seq")


def env_run(config):
    return {"pid": os.getpid(), "executor_env": os.environ.get("JACNB_EXECUTOR", "")}


def test_jacnb_executor_names_where_a_grid_without_executor_trains(
    tmp_path: Path, counts: Path, monkeypatch
) -> None:
    """``$JACNB_EXECUTOR`` (what ``python -m jacnb.book`` sets for the ``cpu`` profile): unset,
    the runs train in this process; ``local``, in worker processes, which set it to ``none`` so
    that a grid inside a run stays in its worker; ``executor="none"`` trains here whatever it
    says; a misspelt value fails at once, naming the valid ones."""
    grid = [{"experiment": "pool", "seed": s} for s in range(4)]
    monkeypatch.delenv("JACNB_EXECUTOR", raising=False)
    here = run_grid(grid, env_run, ResultStore(tmp_path / "a"), progress=False)
    assert set(here["pid"]) == {os.getpid()}
    monkeypatch.setenv("JACNB_EXECUTOR", "local")
    pooled = run_grid(grid, env_run, ResultStore(tmp_path / "b"), progress=False)
    assert os.getpid() not in set(pooled["pid"])
    assert set(pooled["executor_env"]) == {"none"}
    forced = run_grid(grid, env_run, ResultStore(tmp_path / "c"), progress=False, executor="none")
    assert set(forced["pid"]) == {os.getpid()}
    monkeypatch.setenv("JACNB_EXECUTOR", "lcoal")
    with pytest.raises(ValueError, match="'local'.*'none'"):
        run_grid(grid, env_run, ResultStore(tmp_path / "d"), progress=False)


def test_the_book_pools_its_grids_only_for_the_cpu_profile_without_cuda(monkeypatch) -> None:
    import torch

    from jacnb import book

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("jacnb.lab.timing.default_threads", lambda: 2)
    assert book.grid_executor("cpu") == "local"
    assert book.grid_executor("smoke") == "none" and book.grid_executor("paper") == "none"
    monkeypatch.setattr("jacnb.lab.timing.default_threads", lambda: 1)
    assert book.grid_executor("cpu") == "none"
    monkeypatch.setattr("jacnb.lab.timing.default_threads", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert book.grid_executor("cpu") == "none"
