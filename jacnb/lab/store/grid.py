"""The grid runner, :func:`run_grid`: every chapter's runs go through it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from jacnb.core.train import progress_off
from jacnb.lab.store.executors import resolve_executor, run_with
from jacnb.lab.store.records import RECORD_BYTES, check_config, config_key
from jacnb.lab.store.result_store import ResultStore
from jacnb.lab.store.schema import ResultSchema
from jacnb.lab.store.worker import BUSY, attempt


def _run_here(todo, run, store, poll, bar) -> None:
    pending = list(todo)
    while pending:
        busy = []
        for config in pending:
            if attempt(run, store, config) == BUSY:
                busy.append(config)
            else:
                bar.update(1)
        pending = busy
        if pending:
            bar.set_postfix_str(f"waiting for {len(pending)} runs claimed by other workers")
            time.sleep(poll)


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

    ``executor``: ``None`` trains in this process, one run after the other; ``"local"`` or a
    :class:`LocalPool` trains in local worker processes; any ``concurrent.futures.Executor``
    (thread or process pools, Dask's ``Client.get_executor()``, a Ray adapter, see the module
    docstring) or a submitit executor (:func:`slurm_executor`: one SLURM job array) sends one
    task per missing run. Every path claims a config before training it and writes its record
    atomically, so concurrent grids (notebooks, batch jobs, cluster workers) on one store train
    each run once; configs claimed by live workers elsewhere are waited for (polling every
    ``poll`` seconds) and a dead worker's are taken over.

    ``run`` raising an exception with ``status == "diverged"``
    (:class:`jacnb.core.train.DivergedError`) stores the run as ``status: "diverged"`` with the
    message as ``reason`` (it is not retried);
    any other exception stops the grid (after the runs in flight are stored) and is raised.

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
    store = store or ResultStore()
    configs = list(configs)
    for config in configs:
        check_config(config)
    if not configs:
        return pd.DataFrame(columns=["key"])
    experiments = {str(c.get("experiment", "misc")) for c in configs}
    if schema is not None:
        store = store.with_schema(experiments, schema)
    store.clean_tmp()
    todo = [c for c in configs if not store.has(c)]
    if todo:
        pool, local, in_flight = (None, None, 1)
        if executor is not None:
            pool, local, in_flight = resolve_executor(executor)
        try:
            store.check_writable({str(c.get("experiment", "misc")) for c in todo})
            store.check_room(len(todo), record_bytes, checkpoint_bytes, in_flight)
            with tqdm(
                total=len(todo),
                desc=f"{desc} ({len(configs) - len(todo)} cached)",
                disable=progress_off(progress),
            ) as bar:
                if pool is None:
                    _run_here(todo, run, store, poll, bar)
                else:
                    run_with(pool, todo, run, store, poll, bar)
        except BaseException:
            if local is not None:  # stop its workers: nothing keeps training behind the user
                local.stop()
            raise
    keys = {config_key(c) for c in configs}
    frame = pd.concat([store.frame(e) for e in sorted(experiments)])
    return frame[frame["key"].isin(keys)].reset_index(drop=True) if len(frame) else frame
