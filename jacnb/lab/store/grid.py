"""The grid runner, :func:`run_grid`: every chapter's runs go through it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from jacnb.core.train import progress_off
from jacnb.lab.store.executors import default_executor, resolve_executor, run_with
from jacnb.lab.store.records import RECORD_BYTES, check_config, config_key
from jacnb.lab.store.result_store import ResultStore
from jacnb.lab.store.schema import ResultSchema
from jacnb.lab.store.worker import BUSY, attempt


@dataclass(frozen=True)
class Grid:
    """One grid of runs for :func:`run_grids`: ``run(config)`` for every config; ``desc`` names
    it in the progress bar; ``schema`` is :func:`run_grid`'s."""

    configs: Sequence[Mapping[str, Any]]
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    desc: str = "runs"
    schema: ResultSchema | None = None


def _run_here(todo, runs, store, poll, bar) -> None:
    pending = list(todo)
    while pending:
        busy = []
        for grid, config in pending:
            if attempt(runs[grid], store, config) == BUSY:
                busy.append((grid, config))
            else:
                bar.update(1)
        pending = busy
        if pending:
            bar.set_postfix_str(f"waiting for {len(pending)} runs claimed by other workers")
            time.sleep(poll)


def _experiments(configs: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(c.get("experiment", "misc")) for c in configs}


def _frame(store: ResultStore, configs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The store's records of ``configs`` (an empty grid: an empty frame with a ``key``)."""
    if not configs:
        return pd.DataFrame(columns=["key"])
    keys = {config_key(c) for c in configs}
    frame = pd.concat([store.frame(e) for e in sorted(_experiments(configs))])
    return frame[frame["key"].isin(keys)].reset_index(drop=True) if len(frame) else frame


def run_grids(
    grids: Iterable[Grid],
    store: ResultStore | None = None,
    executor: Any = None,
    *,
    progress: bool = True,
    record_bytes: int = RECORD_BYTES,
    checkpoint_bytes: int = 0,
    poll: float = 5.0,
) -> list[pd.DataFrame]:
    """:func:`run_grid` for several grids that do not depend on each other, in one submission:
    one SLURM job array (or one round of a pool) for all their missing runs; the records of each
    grid, in order. The arguments are those of :func:`run_grid`."""
    store = store or ResultStore()
    grids = [Grid(list(g.configs), g.run, g.desc, g.schema) for g in grids]
    for grid in grids:
        for config in grid.configs:
            check_config(config)
        if grid.schema is not None:
            store = store.with_schema(_experiments(grid.configs), grid.schema)
    store.clean_tmp()
    todo = [(i, c) for i, g in enumerate(grids) for c in g.configs if not store.has(c)]
    if todo:
        pool, local, in_flight = (None, None, 1)
        executor = default_executor() if executor is None else executor
        if executor is not None and executor != "none":
            pool, local, in_flight = resolve_executor(executor)
        try:
            store.check_writable(_experiments(c for _, c in todo))
            store.check_room(len(todo), record_bytes, checkpoint_bytes, in_flight)
            total = sum(len(g.configs) for g in grids)
            with tqdm(
                total=len(todo),
                desc=f"{' + '.join(g.desc for g in grids)} ({total - len(todo)} cached)",
                disable=progress_off(progress),
            ) as bar:
                runs = [g.run for g in grids]
                if pool is None:
                    _run_here(todo, runs, store, poll, bar)
                else:
                    run_with(pool, todo, runs, store, poll, bar)
        except BaseException:
            if local is not None:  # stop its workers: nothing keeps training behind the user
                local.stop()
            raise
    return [_frame(store, g.configs) for g in grids]


def run_grid(
    configs: Iterable[Mapping[str, Any]],
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    store: ResultStore | None = None,
    desc: str = "runs",
    progress: bool = True,
    executor: Any = None,
    *,
    record_bytes: int = RECORD_BYTES,
    checkpoint_bytes: int = 0,
    poll: float = 5.0,
    schema: ResultSchema | None = None,
) -> pd.DataFrame:
    """Run ``run(config)`` for every config without a valid record; return all their records.

    ``executor``: ``None`` trains where ``$JACNB_EXECUTOR`` says
    (:func:`~jacnb.lab.store.executors.default_executor`; unset: in this process, one run after
    the other); ``"none"``: in this process whatever the variable says; ``"local"`` or a
    :class:`LocalPool` trains in local worker processes; any ``concurrent.futures.Executor``
    (thread or process pools, Dask's ``Client.get_executor()``, a Ray adapter, see the module
    docstring) or a submitit executor (:func:`slurm_executor`: one SLURM job array) sends one
    task per missing run (:func:`run_grids`: the missing runs of several grids at once). Every
    path claims a config before training it (a submitter claims it before submitting it) and
    writes its record atomically, so concurrent grids (notebooks, batch jobs, cluster workers)
    on one store train each run once; configs claimed by live workers elsewhere are waited for
    (polling every ``poll`` seconds), not submitted, and a dead worker's are taken over.

    ``run`` raising an exception with ``status == "diverged"``
    (:class:`jacnb.core.train.DivergedError`) stores the run as ``status: "diverged"`` with the
    message as ``reason`` (it is not retried);
    any other exception stops the grid (after the runs in flight are stored) and is raised.
    A SLURM task that ends without a result (cancelled, killed, out of time or memory) is
    noticed from its ``squeue`` state within a bounded time (:mod:`jacnb.lab.store.slurm`), not
    stored, and once the other runs are stored raised as
    :class:`~jacnb.lab.store.slurm.LostRunsError`: running the grid again trains it.

    Before any training the store must be writable and its disk must have room for the missing
    records (``record_bytes`` each) and checkpoints (``checkpoint_bytes``: a run's peak checkpoint
    use, per run in flight), else :class:`StoreError` says what to do. Each finished run is stored
    before the grid goes on, so an interrupted grid loses at most the runs in flight.

    Every config must pass :func:`~jacnb.lab.store.records.check_config` (a plain experiment
    name, no reserved field, JSON values), checked before anything runs. ``schema``: what every
    finished run of these experiments must report (:class:`~jacnb.lab.store.schema.ResultSchema`);
    a stored record that fails it is quarantined and its run recomputed. An empty grid returns
    an empty frame.
    """
    return run_grids(
        [Grid(list(configs), run, desc, schema)],
        store,
        executor,
        progress=progress,
        record_bytes=record_bytes,
        checkpoint_bytes=checkpoint_bytes,
        poll=poll,
    )[0]
