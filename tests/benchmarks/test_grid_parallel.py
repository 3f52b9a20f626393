"""Smoke test of ``benchmarks/grid_parallel.py`` at a tiny size: both ways train the same runs
(equal losses) and the ratio is printed."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_grid_parallel_benchmark_smoke(capsys, monkeypatch) -> None:
    from benchmarks import grid_parallel

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    rows = grid_parallel.main(["--quick", "--workers", "2", "--nets", "fc784x3"])
    assert [r["net"] for r in rows] == ["fc784x3"]
    (row,) = rows
    assert row["loss_max_rel_diff"] < 1e-4  # the pool trains what the loop trains
    assert row["ratio"] > 0 and row["pool_s"] > 0 and row["threads_per_worker"] >= 1
    out = capsys.readouterr().out
    assert "ratio in-process/pool" in out and "counting its start" in out
