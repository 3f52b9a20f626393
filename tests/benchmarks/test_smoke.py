"""Every benchmark runs at a tiny size (issue 10: each benchmark has a smoke test), as a user
would start it: ``python -m benchmarks.<name> ...`` from the repository root. Costs are not
asserted (benchmarks report ratios, tests do not time); the run must finish and print its
table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "regularizer_cost": (
        [
            "--quick",
            "--device",
            "cpu",
            "--batch",
            "8",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--rounds",
            "1",
            "--draws",
            "4",
            "--agree-batch",
            "4",
            "--threads",
            "1",
        ],
        "projection",
    ),
    "lowrank_spectrum": (
        [
            "--quick",
            "--device",
            "cpu",
            "--k",
            "4",
            "--n-mlp",
            "20",
            "--width",
            "8",
            "--threads",
            "1",
        ],
        "lanczos",
    ),
    "stacked_training": (
        ["--quick", "--rows", "cpu", "--device", "cpu", "--repeats", "1", "--threads", "1"],
        "speedup",
    ),
    "per_layer_batch_norm_cost": (["--repeats", "1"], "fixed / plain"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_at_a_tiny_size(name: str, tmp_path: Path) -> None:
    args, expected = CASES[name]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args, "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expected.lower() in (proc.stdout + proc.stderr).lower(), proc.stdout[-2000:]
    assert out.is_file() and out.stat().st_size > 2
