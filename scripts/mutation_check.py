"""Mutation check: plant known bugs in a copy of the package and make sure the tests catch them.

Each entry of :data:`MUTANTS` names a file (candidate paths, tried in order: the flat layout and
the ``jacnb/core`` / ``jacnb/chapters`` layout of issue 10), an exact piece of text, its
replacement, and the tests that must fail once the text is replaced. For every mutant the script

1. copies ``jacnb/``, ``tests/`` and ``pyproject.toml`` into a temporary directory,
2. replaces the text -- which must occur exactly once, else the script fails (a table that no
   longer matches the code cannot rot silently),
3. runs ``python -m pytest -x -q`` on the listed tests with the copy first on ``PYTHONPATH``,

and it exits non-zero unless the unmutated copy passes those tests and every mutant makes at
least one of them *fail* (pytest exit code 1; an import or collection error does not count as a
catch). Run by ``make test`` after the test suite::

    python scripts/mutation_check.py [--jobs 2] [--only NAME ...] [--list]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# --- the mutant table (update the paths here when files move) --------------------------------

BOUNDS = ("jacnb/bounds.py", "jacnb/core/bounds.py")
JACOBIAN = ("jacnb/jacobian.py", "jacnb/core/jacobian.py")
REGULARIZERS = ("jacnb/regularizers.py", "jacnb/core/regularizers.py")
CHECKS = ("jacnb/checks.py", "jacnb/chapters/theory.py")
SELECTION = ("jacnb/lab/selection.py",)
GATES = ("jacnb/lab/gates.py",)
T_SELECTION = ("tests/lab/test_selection.py",)
T_GATES = ("tests/lab/test_gates.py",)
T_BOUNDS = ("tests/test_bounds.py", "tests/core/test_bounds.py")
T_JACOBIAN = ("tests/test_jacobian.py", "tests/core/test_jacobian.py")
T_REGULARIZERS = ("tests/test_regularizers.py", "tests/core/test_regularizers.py")
T_CHECKS = (
    "tests/test_checks.py",
    "tests/chapters/test_checks.py",
    "tests/chapters/test_theory.py",
)


@dataclass(frozen=True)
class Mutant:
    """One planted bug: ``old`` -> ``new`` in the first existing ``path``; ``tests``: pairs of
    (candidate test-file paths, ``-k`` expression or ``""`` for the whole file)."""

    name: str
    path: tuple[str, ...]
    old: str
    new: str
    tests: tuple[tuple[tuple[str, ...], str], ...]


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "score x2 (printed constant as the unit score, eq. 33)",
        BOUNDS,
        'return gap / SQRT2 if scale == "unit" else gap * SQRT2',
        'return gap * SQRT2 if scale == "unit" else gap * SQRT2',
        ((T_BOUNDS, "unit_score or theorem4_ordering"),),
    ),
    Mutant(
        "sum instead of mean over samples in R_F (eq. 49)",
        REGULARIZERS,
        "return logits, fro.mean()",
        "return logits, fro.sum()",
        ((T_REGULARIZERS, "jacobian_regularizer_matches_full_jacobians"),),
    ),
    Mutant(
        "softmax dropped in R_F (eq. 17)",
        JACOBIAN,
        'f = torch.softmax(logits, dim=-1) if output == "softmax" else logits',
        "f = logits",
        ((T_JACOBIAN, "frobenius_exact_value or projection_is_differentiable"),),
    ),
    Mutant(
        "softmax dropped in network_output (eq. 17)",
        JACOBIAN,
        'return torch.softmax(logits, dim=-1) if output == "softmax" else logits',
        "return logits",
        ((T_JACOBIAN, "input_jacobian_matches_autograd"),),
    ),
    Mutant(
        "softmax dropped in the per-layer regularizer (eq. 52)",
        REGULARIZERS,
        'f = torch.softmax(logits, dim=-1) if self.output == "softmax" else logits',
        "f = logits",
        ((T_REGULARIZERS, "per_layer"),),
    ),
    Mutant(
        "last row of J not rebuilt from the C-1 rows",
        JACOBIAN,
        "return torch.cat([head, -head.sum(dim=1, keepdim=True)], dim=1)",
        "return torch.cat([head, torch.zeros_like(head[:, :1])], dim=1)",
        ((T_JACOBIAN, "input_jacobian_matches_autograd or frobenius_exact"),),
    ),
    Mutant(
        "projection estimator without the factor C",
        JACOBIAN,
        "return logits, n_out * g.pow(2).flatten(2).sum(-1).mean(0)",
        "return logits, g.pow(2).flatten(2).sum(-1).mean(0)",
        ((T_JACOBIAN, "projection_is_differentiable"),),
    ),
    Mutant(
        "batch statistics coupled (not detached) in fixed_batch_statistics",
        JACOBIAN,
        "zs = z.detach().to(dtype)",
        "zs = z.to(dtype)",
        ((T_REGULARIZERS, "training_batch_norm"),),
    ),
    Mutant(
        "per-layer regularizer defaults to coupled batch statistics",
        REGULARIZERS,
        "    generator: torch.Generator | None = field(default=None, repr=False)\n"
        '    batch_norm: BatchNormMode = "fixed"',
        "    generator: torch.Generator | None = field(default=None, repr=False)\n"
        '    batch_norm: BatchNormMode = "coupled"',
        ((T_REGULARIZERS, "per_sample_under_training_batch_norm"),),
    ),
    Mutant(
        "Jacobian regularizer defaults to coupled batch statistics",
        REGULARIZERS,
        '    batch_norm: BatchNormMode = "fixed"\n'
        "    generator: torch.Generator | None = field(default=None, repr=False)",
        '    batch_norm: BatchNormMode = "coupled"\n'
        "    generator: torch.Generator | None = field(default=None, repr=False)",
        ((T_REGULARIZERS, "jacobian_regularizer_is_per_sample"),),
    ),
    Mutant(
        "per-layer penalty summed, not averaged, over samples",
        REGULARIZERS,
        "total = total + _layer_input_grad(layer, g, shape).pow(2).sum() / x.shape[0]",
        "total = total + _layer_input_grad(layer, g, shape).pow(2).sum()",
        ((T_REGULARIZERS, "per_layer_regularizer_value"),),
    ),
    Mutant(
        "in-place check of the per-layer hooks removed",
        REGULARIZERS,
        "if out._version != version:",
        "if False:",
        ((T_REGULARIZERS, "in_place"),),
    ),
    Mutant(
        "projection draws ignore the regularizer's generator",
        REGULARIZERS,
        "            self.generator,\n            self.batch_norm,",
        "            None,\n            self.batch_norm,",
        ((T_REGULARIZERS, "generator"),),
    ),
    Mutant(
        "weight decay also decays batch-norm scales",
        REGULARIZERS,
        "if isinstance(module, nn.Linear | nn.modules.conv._ConvNd):",
        "if isinstance(module, nn.Linear | nn.modules.conv._ConvNd | nn.BatchNorm2d):",
        ((T_REGULARIZERS, "weight_decay"),),
    ),
    Mutant(
        "eval-mode batch norm not folded into the operator norm",
        BOUNDS,
        "w = w * d_out.view(-1, *([1] * (w.dim() - 1)))",
        "w = w",
        ((T_BOUNDS, "eval_batch_norm"),),
    ),
    Mutant(
        "overlapping max-pooling taken as norm 1",
        BOUNDS,
        "count *= math.ceil((dd * (kk - 1) + 1) / ss)",
        "count *= 1",
        ((T_BOUNDS, "max_pool"),),
    ),
    Mutant(
        "norm product uses Frobenius norms for gamma_3",
        BOUNDS,
        "spec *= n.spectral",
        "spec *= n.frobenius",
        ((T_BOUNDS, "norm_products"),),
    ),
    Mutant(
        "local sup samples outside the ball (radius x2)",
        BOUNDS,
        "pts = x + d * (u * radius).view(view)",
        "pts = x + d * (2 * u * radius).view(view)",
        ((T_BOUNDS, "local_sup"),),
    ),
    Mutant(
        "covering_cube rounds down",
        BOUNDS,
        "return math.ceil(math.sqrt(k) / (2 * rho)) ** k",
        "return math.floor(math.sqrt(k) / (2 * rho)) ** k",
        ((T_BOUNDS, "covering"),),
    ),
    Mutant(
        "eq. (8) without the number of partitions K",
        BOUNDS,
        "(2 * n_partitions * math.log(2) + 2 * math.log(1 / delta)) / m",
        "(2 * math.log(2) + 2 * math.log(1 / delta)) / m",
        ((T_BOUNDS, "covering_numbers"),),
    ),
    Mutant(
        "signed instead of absolute generalization error (eq. 3)",
        CHECKS,
        '"measured GE": abs(test_err - train_err),',
        '"measured GE": test_err - train_err,',
        ((T_CHECKS, "absolute"),),
    ),
    Mutant(
        "factor choice excludes factors whose selection nets miss the fit (the old rule)",
        SELECTION,
        "        pool = means  # every factor competes: validation accuracy alone decides",
        "        pool = means[fits] if fits.any() else means",
        ((T_SELECTION, "compete"),),
    ),
    Mutant(
        "accuracy ties go to the smallest factor, not the lower validation loss",
        SELECTION,
        "        if len(tied) > 1 and loss.notna().all():",
        "        if False:",
        ((T_SELECTION, "tie"),),
    ),
    Mutant(
        "a grid's lower edge at 0 counted as an edge (or any bottom edge as interior)",
        GATES,
        '    at_floor = g[0] == 0.0 and lam == 0.0',
        '    at_floor = lam == g[0]',
        ((T_GATES, "zero"),),
    ),
)

# ----------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _first_existing(root: Path, candidates: tuple[str, ...]) -> str:
    for rel in candidates:
        if (root / rel).is_file():
            return rel
    raise SystemExit(f"mutation_check: none of {candidates} exists; update the table")


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(ROOT / "jacnb", dest / "jacnb", ignore=ignore)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _resolve_tests(root: Path, m: Mutant) -> list[tuple[str, str]]:
    return [(_first_existing(root, paths), expr) for paths, expr in m.tests]


def _plant(copy: Path, m: Mutant) -> None:
    rel = _first_existing(copy, m.path)
    target = copy / rel
    text = target.read_text()
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(
            f"mutation_check: [{m.name}] expected the text exactly once in {rel}, found it "
            f"{count} times; update the table:\n{m.old}"
        )
    target.write_text(text.replace(m.old, m.new))


def _pytest_args(path: str, expr: str) -> list[str]:
    return ["-x", "-q", "-p", "no:cacheprovider", path, *(["-k", expr] if expr else [])]


def _child(copy: Path, tests: list[tuple[str, str]], log: Path) -> None:
    """In a forked child: pytest on the copy (the parent has imported torch, not jacnb)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    rc = 3
    try:
        os.chdir(copy)
        sys.path.insert(0, str(copy))
        import pytest

        rc = 0
        for path, expr in tests:
            rc = int(pytest.main(_pytest_args(path, expr)))
            if rc != 0:
                break
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _subprocess(copy: Path, tests: list[tuple[str, str]], log: Path) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as fh:
        for path, expr in tests:
            cmd = [sys.executable, "-m", "pytest", *_pytest_args(path, expr)]
            rc = subprocess.run(cmd, cwd=copy, env=env, stdout=fh, stderr=fh).returncode
            if rc != 0:
                return rc
    return 0


@dataclass
class Job:
    name: str
    copy: Path
    tests: list[tuple[str, str]]
    log: Path
    start: float = 0.0


def run_jobs(jobs: list[Job], parallel: int, fork: bool) -> dict[str, tuple[int, float, str]]:
    """``{name: (pytest exit code, seconds, log tail)}``; at most ``parallel`` at once.

    With ``fork`` every job is a ``fork()`` of this process, which has imported torch once
    (importing it dominates a short pytest run); otherwise one ``python -m pytest`` per group.
    """
    results: dict[str, tuple[int, float, str]] = {}

    def finish(job: Job, rc: int) -> None:
        tail = job.log.read_text()[-4000:] if job.log.exists() else ""
        results[job.name] = (rc, time.perf_counter() - job.start, tail)

    if not fork:
        for job in jobs:
            job.start = time.perf_counter()
            finish(job, _subprocess(job.copy, job.tests, job.log))
        return results
    queue, running = list(jobs), {}
    while queue or running:
        while queue and len(running) < parallel:
            job = queue.pop(0)
            job.start = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                _child(job.copy, job.tests, job.log)
            running[pid] = job
        pid, status = os.wait()
        job = running.pop(pid)
        finish(job, os.waitstatus_to_exitcode(status))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants run in parallel")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of mutant names")
    parser.add_argument("--list", action="store_true", help="print the table and exit")
    parser.add_argument("--no-fork", action="store_true", help="one python process per run")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if args.only is None or any(s in m.name for s in args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.name}: {_first_existing(ROOT, m.path)} -> {_resolve_tests(ROOT, m)}")
        return 0
    # every substitution must apply to the real tree (checked before anything runs)
    for m in mutants:
        rel = _first_existing(ROOT, m.path)
        count = (ROOT / rel).read_text().count(m.old)
        if count != 1:
            print(f"FAIL [{m.name}]: text found {count} times in {rel} (need exactly 1)")
            return 1
    fork = hasattr(os, "fork") and not args.no_fork
    if fork:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # third-party imports that dominate a short pytest run, done once and inherited by
        # every forked run (jacnb itself must be imported fresh from each copy)
        import numpy  # noqa: F401
        import pandas  # noqa: F401
        import pytest  # noqa: F401
        import torch
        import torch.func  # noqa: F401

        torch.set_num_threads(1)

        if "jacnb" in sys.modules:
            raise SystemExit("mutation_check: jacnb imported before forking")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as base_dir:
        base = Path(base_dir)
        clean = base / "clean"
        _copy_tree(clean)
        # the clean copy must pass every selected test: one run per test file
        by_file: dict[str, list[str]] = {}
        for m in mutants:
            for path, expr in _resolve_tests(clean, m):
                by_file.setdefault(path, []).append(f"({expr})" if expr else "")
        clean_jobs = [
            Job(
                f"clean {path}",
                clean,
                [(path, "" if "" in exprs else " or ".join(dict.fromkeys(exprs)))],
                base / f"clean-{i}.log",
            )
            for i, (path, exprs) in enumerate(by_file.items())
        ]
        mutant_jobs = []
        for i, m in enumerate(mutants):
            copy = base / f"mutant-{i}"
            _copy_tree(copy)
            _plant(copy, m)
            mutant_jobs.append(Job(m.name, copy, _resolve_tests(copy, m), base / f"m-{i}.log"))
        results = run_jobs(clean_jobs + mutant_jobs, max(1, args.jobs), fork)
    failed = False
    for job in clean_jobs:
        rc, secs, tail = results[job.name]
        print(f"{'passes' if rc == 0 else 'FAILS '}  {secs:5.1f} s  {job.name} (unmutated)")
        if rc != 0:
            failed = True
            print(tail)
    missed = 0
    for job in mutant_jobs:
        rc, secs, tail = results[job.name]
        caught = rc == 1  # tests failed; 2-5 (errors, nothing collected) do not count
        print(f"{'caught' if caught else 'MISSED'}  {secs:5.1f} s  {job.name}")
        if not caught:
            missed += 1
            print(f"  pytest exit code {rc}\n{tail}")
    total = time.perf_counter() - start
    print(f"{len(mutants) - missed}/{len(mutants)} mutants caught in {total:.0f} s")
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
