"""The local process pool behind :class:`jacnb.lab.store.LocalPool`: a
``concurrent.futures.Executor`` whose workers are independent, so that one lost worker loses
one run, and that stops its workers when told to or when its process dies.

``concurrent.futures.ProcessPoolExecutor`` treats a worker that dies (killed, out of memory) as
a broken pool: every run in flight fails with ``BrokenProcessPool``, the other workers are
terminated and the grid dies. Here each worker has its own pipe; the pool's dispatcher thread
hands one task at a time to an idle worker and watches every worker's process. A worker that
dies costs only the task it held, which is given to a fresh worker (up to :data:`RETRIES` more
times; then the task fails with :class:`WorkerLost`, e.g. a run that runs out of memory every
time). Through :func:`jacnb.lab.store.run_grid` a retried run claims its config again: the
dead worker's claim is stale at once (its pid is gone), so nothing waits.

Stopping: :meth:`WorkerPool.stop` sends SIGTERM to every worker; a worker turns it into
``SystemExit`` inside its run, so the run's claim is released and its temporary files removed
on the way out, then the worker exits; a worker still alive after :data:`STOP_GRACE_SECONDS` is
killed. Each worker also asks the kernel (Linux ``PR_SET_PDEATHSIG``) for SIGTERM when the
process that started it dies, so no worker trains on behind a killed ``python -m jacnb.run``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

#: How many times a task whose worker died is given to a fresh worker before it fails.
RETRIES = 2
#: How long :meth:`WorkerPool.stop` waits for workers to stop before it kills them.
STOP_GRACE_SECONDS = 10.0


class WorkerLost(RuntimeError):
    """A task's worker process died (killed, out of memory) each time it was tried."""


class _RemoteTraceback(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


_STOPPING = False
_RUNNING = False


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM in a worker: unwind the run in progress (its claim released), then exit; between
    runs (starting, importing, waiting) exit at once, without a traceback on the terminal."""
    global _STOPPING
    _STOPPING = True
    if not _RUNNING:
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent process dies (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _serve(conn: multiprocessing.connection.Connection, threads: int, parent: int) -> None:
    """A worker: run the tasks that come through ``conn`` one at a time, send back
    ``(ok, value, traceback)``; stop at ``None``, a closed pipe or SIGTERM."""
    global _RUNNING
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return
    import torch

    torch.set_num_threads(threads)
    os.environ["JACNB_EXECUTOR"] = "none"  # a grid started inside a run stays in this worker
    while not _STOPPING:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args, kwargs = task
        _RUNNING = True
        try:
            reply = (True, fn(*args, **kwargs), "")
        except BaseException as err:  # noqa: BLE001 - sent to the caller, who raises it
            reply = (False, err, traceback.format_exc())
        finally:
            _RUNNING = False
        try:
            conn.send(reply)
        except Exception as err:  # noqa: BLE001 - an unpicklable result or exception
            conn.send((False, RuntimeError(f"{reply[1]!r} cannot be sent back: {err}"), reply[2]))


class _Worker:
    def __init__(self, ctx: Any, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve, args=(child, threads, os.getpid()), daemon=True, name="jacnb-worker"
        )
        self.process.start()
        child.close()
        self.task: _Task | None = None
        #: The pipe reached its end (the process is dying): wait for its sentinel only.
        self.closed_pipe = False


class _Task:
    def __init__(self, future: concurrent.futures.Future, fn: Callable, args: tuple, kwargs: dict):
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs
        self.lost = 0


class WorkerPool(concurrent.futures.Executor):
    """``workers`` spawned processes, each with ``torch.set_num_threads(threads)``; see the
    module docstring. Processes start on the first :meth:`submit`."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._size, self._threads = workers, threads
        self._queue: collections.deque[_Task] = collections.deque()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        """Whether the pool was shut down or stopped (it takes no new tasks)."""
        return self._closed

    @property
    def _max_workers(self) -> int:  # read by run_grid's room check (runs in flight)
        return self._size

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._queue.append(_Task(future, fn, args, kwargs))
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, daemon=True)
                self._thread.start()
        self._wake()
        return future

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(None)

    def worker_pids(self) -> list[int]:
        """The pids of the live worker processes."""
        with self._lock:
            return [w.process.pid for w in self._workers if w.process.is_alive()]

    # -- the dispatcher thread -----------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                self._assign()
                if self._closed and not self._queue and not any(w.task for w in self._workers):
                    break
                waitables = [self._wake_r]
                for w in self._workers:
                    waitables += [w.process.sentinel] + ([] if w.closed_pipe else [w.conn])
            for ready in multiprocessing.connection.wait(waitables, timeout=1.0):
                if ready is self._wake_r:
                    while self._wake_r.poll():
                        self._wake_r.recv()
                    continue
                with self._lock:
                    worker = next(
                        (w for w in self._workers if ready in (w.conn, w.process.sentinel)), None
                    )
                    if worker is not None:
                        self._collect(worker)
            with self._lock:  # a safety net: no task stays with a worker that is gone
                for w in [w for w in self._workers if w.task and not w.process.is_alive()]:
                    self._collect(w)
        with self._lock:
            for w in self._workers:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            workers, self._workers = self._workers, []
        for w in workers:
            w.process.join(STOP_GRACE_SECONDS)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()

    def _assign(self) -> None:
        """Start workers up to the pool's size and give queued tasks to idle ones (lock held)."""
        self._workers = [w for w in self._workers if w.process.is_alive() or w.task]
        while len(self._workers) < self._size and self._queue:
            self._workers.append(_Worker(self._ctx, self._threads))
        for w in self._workers:
            while w.task is None and self._queue and not w.closed_pipe and w.process.is_alive():
                task = self._queue.popleft()
                if task.lost == 0 and not task.future.set_running_or_notify_cancel():
                    continue  # cancelled before it started
                try:
                    w.conn.send((task.fn, task.args, task.kwargs))
                except Exception as err:  # noqa: BLE001 - e.g. an unpicklable task
                    if isinstance(err, OSError):  # the worker is gone: the task waits
                        self._queue.appendleft(task)
                        break
                    task.future.set_exception(err)
                    continue
                w.task = task

    def _collect(self, worker: _Worker) -> None:
        """A worker's reply, or its death (lock held). A pipe at its end comes before the
        process is reaped: the task stays with the worker until its sentinel says it is gone."""
        reply = None
        if not worker.closed_pipe:
            try:
                if worker.conn.poll():
                    reply = worker.conn.recv()
            except (EOFError, OSError):
                worker.closed_pipe = True
        if reply is None and worker.process.is_alive():
            return
        task, worker.task = worker.task, None
        if reply is not None and task is not None:
            ok, value, text = reply
            if ok:
                task.future.set_result(value)
            else:
                if text:
                    value.__cause__ = _RemoteTraceback(text)
                task.future.set_exception(value)
            return
        if reply is not None:
            return
        worker.process.join()
        self._workers.remove(worker)
        if task is None:
            return
        task.lost += 1
        if task.lost > RETRIES or self._closed:
            task.future.set_exception(
                WorkerLost(
                    f"the worker running {getattr(task.fn, '__name__', task.fn)} died "
                    f"(exit code {worker.process.exitcode}) {task.lost} time(s)"
                    + ("; the pool was stopped" if self._closed else "")
                )
            )
        else:
            self._queue.appendleft(task)  # a fresh worker takes it

    # -- stopping ------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Let the running tasks finish (queued ones too, unless ``cancel_futures``), then end
        the workers."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while self._queue:
                    task = self._queue.popleft()
                    if task.lost == 0:
                        task.future.cancel()
                    else:
                        task.future.set_exception(WorkerLost("the pool was shut down"))
            thread = self._thread
        self._wake()
        if wait and thread is not None:
            thread.join()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop now: cancel queued tasks, SIGTERM every worker (its run unwinds, releasing its
        claim), kill those still alive after ``grace`` seconds."""
        self.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            processes = [w.process for w in self._workers]
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        self._wake()
        if self._thread is not None:
            self._thread.join(grace)
