"""Run one chapter's grid from the command line, without its notebook; the notebook afterwards
only reads the records (Sokolic et al. 2017 and Oymak et al. 2019 grids, ``notebooks/02`` ...
``07``).

::

    python -m jacnb.run fully_connected --profile paper                      # in this process
    python -m jacnb.run fully_connected --profile paper --executor local --workers 8
    python -m jacnb.run fully_connected --profile paper --executor slurm --partition gpu --gpus 1

``<chapter>`` names a module of :mod:`jacnb.chapters` (``fully_connected``, ``weight_norm``,
``convolutional``, ``resnet``, ``timing``, ``low_rank_jacobian``, ...); its
``run(profile, executor=..., store=...)`` hands the executor to
:func:`jacnb.lab.store.run_grid`. ``--executor local`` trains in ``--workers`` local processes
(default: one per core, each with ``cores // workers`` torch threads); ``--executor slurm``
submits the missing runs as SLURM job arrays through submitit, one per set of grids that do not
depend on each other (:func:`jacnb.lab.store.run_grids`; ``--partition``, ``--gpus`` per task,
``--timeout-min``, ``--cpus-per-task``, ``--mem-gb``, ``--parallel`` = most array tasks at once;
job scripts and logs in ``--folder``, default ``<results>/.submitit``). The result store
(``--results`` or ``$JACNB_RESULTS``) must then be on storage every node sees. Any number of
such commands, notebooks and jobs can share one store: each run is claimed before it is
submitted or trains. A SLURM task that ends without a result (cancelled, killed, out of time) is
reported (:class:`jacnb.lab.store.LostRunsError`, exit status 3) once the other runs are
stored; the same command again trains it.

``--dry-run`` (one chapter, or all without a name) builds every config of the profile at its
shapes and times a few steps of each distinct shape on the device at hand instead of training
(:mod:`jacnb.lab.dryrun`); ``--json PATH`` saves its table (``book/_static/paper_cost.json`` is
what the page "What the ``paper`` profile costs" shows)::

    python -m jacnb.run --profile paper --dry-run --json book/_static/paper_cost.json

Also here: the checks that make a mistyped or unknown notebook parameter (``-p profle paper``,
``-p epochs 1``) an error naming the valid ones, instead of papermill's warning and a silent run
at the default profile: :func:`check_parameters`, which :func:`jacnb.book.execute_notebook`
calls before it starts a notebook, and :func:`check_notebook_parameters`, which every notebook
calls right after its parameters cell, so that the papermill command a page prints (or any
other way of running the notebook with papermill) refuses them too.

SIGTERM (what ``kill`` and a scheduler's time limit send) stops this command like Ctrl-C: the
runs in flight are stopped, their claims released, local worker processes ended, and the
command exits with status 143 saying how to resume (the same command: finished runs are stored).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

EXECUTORS = ("none", "local", "slurm")
#: Exit status of ``python -m jacnb.run`` when SLURM tasks ended without a result.
LOST_EXIT = 3


def check_parameters(notebook_path: str | Path, parameters: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the notebook's valid parameters if ``parameters`` has a name
    its ``parameters`` cell does not define (read with ``papermill.inspect_notebook``)."""
    import papermill

    valid = sorted(papermill.inspect_notebook(str(notebook_path)))
    unknown = sorted(set(parameters) - set(valid))
    if unknown:
        raise _unknown(unknown, valid, Path(notebook_path).name)


#: The first line of the cell papermill injects after a notebook's parameters cell.
_INJECTED_HEADER = "# Parameters"


def check_notebook_parameters(namespace: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the valid parameters if papermill injected one that the
    notebook's parameters cell does not define. Each notebook calls
    ``check_notebook_parameters(globals())`` first thing after its parameters cell.

    Read from the kernel's input history (``_ih``): the cell papermill injected (its first line
    is ``# Parameters``) and the cell before it, the notebook's parameters cell. Outside
    papermill (JupyterLab, a plain kernel) nothing was injected and nothing is checked."""
    history = list(namespace.get("_ih", ()))
    for i in range(len(history) - 1, 0, -1):
        lines = str(history[i]).splitlines()
        if lines and lines[0].strip() == _INJECTED_HEADER:
            given, valid = _assigned(history[i]), _assigned(history[i - 1])
            unknown = sorted(set(given) - set(valid))
            if unknown:
                raise _unknown(unknown, sorted(valid), "this notebook")
            return


def _assigned(source: str) -> list[str]:
    """The names a cell's top-level statements assign."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _unknown(unknown: list[str], valid: list[str], where: str) -> ValueError:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        if close:
            hints.append(f"{name!r} -> {close[0]!r}?")
    return ValueError(
        f"unknown parameter(s) {unknown} for {where}; valid: {valid}"
        + (f" (did you mean {', '.join(hints)})" if hints else "")
    )


def chapter_names() -> list[str]:
    """The runnable chapters: the public modules of :mod:`jacnb.chapters`."""
    try:
        package = importlib.import_module("jacnb.chapters")
    except ImportError:
        return []
    return sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    )


def make_executor(args: argparse.Namespace, results: Path) -> Any:
    """The executor the command line asks for (``None`` for in-process)."""
    from jacnb.lab.store import LocalPool, slurm_executor

    if args.executor == "none":
        return None
    if args.executor == "local":
        return LocalPool(workers=args.workers)
    folder = Path(args.folder) if args.folder else results / ".submitit"
    return slurm_executor(
        folder,
        partition=args.partition,
        gpus=args.gpus,
        timeout_min=args.timeout_min,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        parallel=args.parallel,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jacnb.run", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    p.add_argument(
        "chapter",
        nargs="?",
        help="a module of jacnb.chapters, e.g. fully_connected (with --dry-run: default all)",
    )
    p.add_argument("--profile", default="cpu", help="smoke | cpu | paper | auto (default: cpu)")
    p.add_argument("--executor", choices=EXECUTORS, default="none")
    p.add_argument("--workers", type=int, default=None, help="local: processes (default: cores)")
    p.add_argument("--partition", default=None, help="slurm: partition")
    p.add_argument("--gpus", type=int, default=0, help="slurm: GPUs per task")
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="slurm: minutes per task")
    p.add_argument("--cpus-per-task", type=int, default=None, help="slurm: CPUs per task")
    p.add_argument("--mem-gb", type=float, default=None, help="slurm: memory per task")
    p.add_argument("--parallel", type=int, default=None, help="slurm: most tasks at once")
    p.add_argument("--folder", default=None, help="slurm: job scripts and logs")
    p.add_argument("--results", default=None, help="result store (default: $JACNB_RESULTS)")
    p.add_argument(
        "--keep-weights", action="store_true", help="keep finished runs' training checkpoints"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build every config at the profile's shapes, time a few steps, project the cost; "
        "trains nothing to the end and writes no record (jacnb.lab.dryrun)",
    )
    p.add_argument("--steps", type=int, default=2, help="dry run: timed steps per shape")
    p.add_argument("--json", default=None, help="dry run: write its table to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from jacnb.lab.store import LostRunsError, ResultStore

    p = parser()
    args = p.parse_args(argv)
    if args.dry_run:
        return dry_run(p, args)
    if args.chapter is None:
        p.error("name a chapter (all chapters only with --dry-run)")
    module = f"jacnb.chapters.{args.chapter}"
    try:
        chapter = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name not in (module, "jacnb.chapters"):
            raise
        chapter = None
    if chapter is None or args.chapter.startswith("_") or not hasattr(chapter, "run"):
        names = chapter_names()
        p.error(f"unknown chapter {args.chapter!r}; valid: {names or 'none (no jacnb.chapters)'}")
    if args.workers is not None and args.executor != "local":
        p.error("--workers needs --executor local")
    store = None
    if args.results is not None or args.keep_weights:
        store = ResultStore(args.results, keep_weights=args.keep_weights)
    root = store.root if store is not None else ResultStore().root
    executor = make_executor(args, root)
    try:
        with sigterm_as_interrupt():
            chapter.run(args.profile, executor=executor, store=store)
    except LostRunsError as err:
        print(f"[jacnb.run] {args.chapter}: {err}", file=sys.stderr)
        return LOST_EXIT
    except KeyboardInterrupt as err:
        command = " ".join(["python -m jacnb.run", *(sys.argv[1:] if argv is None else argv)])
        why = "SIGTERM" if isinstance(err, Terminated) else "interrupted"
        print(
            f"[jacnb.run] {args.chapter} stopped ({why}): the runs in flight were stopped and "
            f"their claims released; every finished run is stored in {root}. Resume with the "
            f"same command: {command}",
            file=sys.stderr,
        )
        return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)
    print(f"[jacnb.run] {args.chapter} at profile {args.profile}: records in {root}")
    return 0


def dry_run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--dry-run``: :func:`jacnb.lab.dryrun.dry_run_all` for the chapter (or every chapter
    with a ``dry_run`` hook) on the device at hand; prints the per-shape lines and the
    per-chapter table, writes the JSON with ``--json``. Exit status 1 if any config failed."""
    import torch

    from jacnb.lab import dryrun
    from jacnb.lab.settings import resolve_profile

    names = [args.chapter] if args.chapter else chapter_names()
    modules = {}
    for name in names:
        try:
            module = importlib.import_module(f"jacnb.chapters.{name}")
        except ModuleNotFoundError:
            module = None
        if module is None or not hasattr(module, "dry_run"):
            if args.chapter:
                p.error(f"chapter {name!r} has no dry run; valid: {dry_run_chapters()}")
            continue
        modules[name] = module
    profile = resolve_profile(args.profile)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = dryrun.dry_run_all(modules, profile, device, steps=args.steps)
    print(dryrun.format_table(dryrun.table(result)))
    total = dryrun.total_hours(result)
    print(
        f"[jacnb.run] dry run of profile {profile} on {result['device']} in "
        f"{result['wall_seconds']:.0f} s ({result['cpu_seconds']:.0f} CPU seconds): the full "
        f"profile would take {dryrun.months(total)} here (every config built and checked; "
        f"up to {args.steps} timed steps per distinct cost shape, which configs differing only "
        "by factor, seed, learning rate or training-set size share)"
    )
    if args.json:
        print(f"[jacnb.run] table written to {dryrun.save(result, args.json)}")
    failures = sum(c["failures"] for c in result["chapters"])
    if failures:
        print(f"[jacnb.run] {failures} rows FAILED (see FAIL lines above)")
    return 1 if failures else 0


def dry_run_chapters() -> list[str]:
    """The chapters with a dry-run hook (``dry_run(settings, device)``)."""
    out = []
    for name in chapter_names():
        if hasattr(importlib.import_module(f"jacnb.chapters.{name}"), "dry_run"):
            out.append(name)
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises ``KeyboardInterrupt``, so that the
    same clean-up runs (claims released, local workers stopped)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (in the main thread only; elsewhere
    nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
