"""The result store: one JSON record per finished run, keyed by a hash of its config.

Every chapter's grid goes through :func:`run_grid`, which skips every config with a valid
record, so re-running a notebook repeats nothing and a killed grid resumes where it stopped.
The store is built not to lie, whatever happens to the processes writing it:

* **Atomic writes.** A record is written to a temporary file in its own folder (``.tmp-*``),
  flushed to disk (``fsync``) and renamed over its final name (``os.replace``): a run killed
  mid-write leaves no record or a complete one. Temporary files are never read as records (only
  ``<16 hex digits>.json`` names are) and are removed once older than
  :data:`STALE_TMP_SECONDS` (:meth:`ResultStore.clean_tmp`, called by every :func:`run_grid`).
* **Validated reads: a record proves itself.** A record counts only if it parses as UTF-8 JSON,
  is an object that carries its ``config`` and ``result``, its ``key`` equals its file name and
  the key recomputed from its stored config (and its experiment its folder), its ``checksum``
  matches its content, and its result meets the metric conventions and its experiment's
  :class:`ResultSchema` (:mod:`~jacnb.lab.store.schema`). A damaged or edited one (truncated,
  empty, ``{}``, not UTF-8, a hand-edited seed or accuracy, a missing metric ...) is moved to the
  folder's ``.quarantine/`` with a warning naming it, and its run is recomputed. Records written
  before records carried a checksum are accepted on their key. On a store this process may not
  change (a read-only volume), clean-up and quarantine are skipped with a warning saying what
  would be done; reading works whatever the store holds.
* **Shared by a group.** Records, claims and folders get the modes the umask gives.
* **Honest values.** Records are strict JSON (``allow_nan=False``): a non-finite float is stored
  as ``null`` and listed under the record's ``nonfinite`` entry (its path and ``"nan"``,
  ``"inf"`` or ``"-inf"``), from which :meth:`ResultStore.get`, :meth:`~ResultStore.records` and
  :meth:`~ResultStore.frame` restore it. Every record has a ``status``: ``"ok"`` or
  ``"diverged"`` (with a ``reason``), see :func:`run_grid`.
* **One run trained once.** Before training a config, a worker *claims* it
  (:meth:`ResultStore.claim`): an exclusively created file holding its host, pid and start
  time, touched every :data:`HEARTBEAT_SECONDS` while the run trains. Workers skip configs claimed
  by live workers and come back for them at the end (waiting for their records); a claim whose
  owner died (on the same host: its process is gone, stopped, or its pid reused by another
  process; elsewhere: its heartbeat is older than :data:`STALE_CLAIM_SECONDS`) is taken over.
  A submitter claims each run before sending it to a pool or a queue, and its worker takes that
  claim over, so a run waiting in a queue is not sent again by another submitter. A record is
  published exclusively, so a run is stored once even if two workers finish it. Record layout,
  claims and writes are the same whichever executor runs the grid (in-process, a local process
  pool, any ``concurrent.futures.Executor``, submitit/SLURM job arrays): the same configs give
  the same keys and the same results, except measured times (``seconds``); float results agree
  to the last bit only between runs with the same number of torch threads (in-process: torch's
  default, a :class:`LocalPool` worker: ``cores // workers``, a SLURM task:
  ``$SLURM_CPUS_PER_TASK``).
* **Lost cluster tasks reported.** A SLURM task that ends without a result (cancelled, killed,
  out of time) is noticed from ``squeue`` within a bounded time, not stored, and raised as
  :class:`LostRunsError` once the other runs are stored (:mod:`jacnb.lab.store.slurm`).
* **Early failure.** Before training anything, :func:`run_grid` checks every config (a plain
  experiment name, no reserved field, JSON values), that the store is writable (a probe file is
  written and removed) and that its disk has room, bytes and inodes, for the records and
  checkpoints still to come (:meth:`ResultStore.check_room`).
* **Clean stops.** An interrupted grid (Ctrl-C, or SIGTERM through ``python -m jacnb.run``)
  stops its local workers, whose runs unwind and release their claims; a local worker that dies
  costs only its own run, which is retried.

Used by every notebook (``notebooks/01_theory`` ... ``07_low_rank_jacobian``) and by
``python -m jacnb.run`` (a chapter's grid without its notebook).

Parallel and distributed grids (``executor=``)::

    run_grid(configs, fn, store)                              # in-process, as always
    run_grid(configs, fn, store, executor="local")            # one process per core
    run_grid(configs, fn, store, executor=LocalPool(8))       # 8 processes, cores // 8 threads
    with ThreadPoolExecutor(4) as pool:                       # any concurrent.futures.Executor
        run_grid(configs, fn, store, executor=pool)
    run_grid(configs, fn, store, executor=slurm_executor("jobs", partition="gpu", gpus=1))

    # Dask: its client's executor is a concurrent.futures.Executor
    from distributed import Client
    run_grid(configs, fn, store, executor=Client("scheduler:8786").get_executor())

    # Ray: ObjectRef.future() is a concurrent.futures.Future, so a five-line adapter does
    import ray
    class RayExecutor(concurrent.futures.Executor):
        def submit(self, fn, /, *args, **kwargs):
            return ray.remote(fn).remote(*args, **kwargs).future()
    run_grid(configs, fn, store, executor=RayExecutor())

On a cluster the store (``$JACNB_RESULTS``) must be a folder every worker sees (shared storage);
the claims live in it too. ``fn`` is sent to the workers with ``cloudpickle`` (closures and
lambdas work); the workers write the records, the calling process waits and then reads them.

The modules, one job each: :mod:`~jacnb.lab.store.records` (keys, encoding, validation, atomic
writes), :mod:`~jacnb.lab.store.result_store` (:class:`ResultStore`),
:mod:`~jacnb.lab.store.leases` (claims and heartbeats), :mod:`~jacnb.lab.store.checkpoints`
(:func:`trained_model`), :mod:`~jacnb.lab.store.worker` (one config: claim, train, store),
:mod:`~jacnb.lab.store.executors` (:class:`LocalPool`, :func:`slurm_executor`, submit and wait),
:mod:`~jacnb.lab.store.worker_pool` (the local pool: one lost worker loses one run),
:mod:`~jacnb.lab.store.schema` (metric conventions, :class:`ResultSchema`)
and :mod:`~jacnb.lab.store.grid` (:func:`run_grid`). Every public name is importable from here.
"""

from jacnb.lab.store.checkpoints import trained_model
from jacnb.lab.store.executors import LocalPool
from jacnb.lab.store.grid import Grid, run_grid, run_grids
from jacnb.lab.store.leases import HEARTBEAT_SECONDS, STALE_CLAIM_SECONDS, Claim
from jacnb.lab.store.records import (
    DIVERGED,
    OK,
    RECORD_BYTES,
    REPO_ROOT,
    STALE_TMP_SECONDS,
    STATUSES,
    TRAIN_CHECKPOINT_SUFFIX,
    InvalidRecordError,
    StoreError,
    canonical,
    config_key,
    default_root,
    write_atomic,
)
from jacnb.lab.store.result_store import ResultStore
from jacnb.lab.store.schema import FRACTION, NON_NEGATIVE, Metric, ResultSchema
from jacnb.lab.store.slurm import LostRun, LostRunsError, SlurmArrayExecutor, slurm_executor
from jacnb.lab.timing import default_threads

__all__ = [
    "DIVERGED",
    "HEARTBEAT_SECONDS",
    "OK",
    "RECORD_BYTES",
    "REPO_ROOT",
    "STALE_CLAIM_SECONDS",
    "STALE_TMP_SECONDS",
    "STATUSES",
    "TRAIN_CHECKPOINT_SUFFIX",
    "FRACTION",
    "NON_NEGATIVE",
    "Claim",
    "Grid",
    "Metric",
    "ResultSchema",
    "InvalidRecordError",
    "LocalPool",
    "LostRun",
    "LostRunsError",
    "ResultStore",
    "SlurmArrayExecutor",
    "StoreError",
    "canonical",
    "config_key",
    "default_root",
    "default_threads",
    "run_grid",
    "run_grids",
    "slurm_executor",
    "trained_model",
    "write_atomic",
]
