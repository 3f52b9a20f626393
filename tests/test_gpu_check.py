"""scripts/gpu_check.py (``make gpu-check``) at its small size, as it runs without CUDA: Table VI
with ratios to the plain step of the same run, the dry run, one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_small_writes_one_json(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    out = tmp_path / "check.json"
    env = {
        **os.environ,
        "JACNB_RESULTS": str(tmp_path / "results"),
        "JACNB_DATA": str(tmp_path / "data"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--small", "--out", str(out),
           "--chapters", "weight_norm", "theory"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["small"] is True
    assert result["device_type"] == ("cuda" if torch.cuda.is_available() else "cpu")
    nets = {r["net"] for r in result["table6"]}
    assert nets == {"mnist_convnet", "mnist_fc", "resnet18"}
    for r in result["table6"]:
        if r["regularizer"] == "none":
            assert r["ratio"] == pytest.approx(1.0)
        assert r["sec_per_batch"] > 0
    chapters = {c["chapter"]: c for c in result["dry_run"]["chapters"]}
    assert set(chapters) == {"weight_norm", "theory"}
    assert all(c["failures"] == 0 and c["steps"] > 0 for c in chapters.values())
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))
