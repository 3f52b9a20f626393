"""The GPU check's JSON (``make gpu-check``, ``scripts/gpu_check.py``) as the pages read it.

On a CUDA machine the check times Table VI of Sokolić et al. (Sec. VI-D: seconds per SGD step
with each regularizer and its ratio to the plain step of the same run) and runs the dry run of
the ``paper`` profile (:mod:`jacnb.lab.dryrun`), and writes both into one JSON,
:data:`DEFAULT_JSON`. Two pages show it: the timing page (``notebooks/06_timing.ipynb``,
:mod:`jacnb.chapters.timing`) and "What the ``paper`` profile costs" (``book/paper_cost.md``).
Both say "measured on <device>" when a full-size check from a GPU is there, and plainly that no
GPU run exists when it is not -- a check run without CUDA (its small size, which the tests run)
is no GPU measurement and is never shown as one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from jacnb.lab.timing import STEP_REGULARIZERS, step_label

__all__ = ["DEFAULT_JSON", "load", "gpu_measurement", "note", "table6_rows", "table6_frame"]

#: Where ``scripts/gpu_check.py`` writes its JSON and the pages look for it.
DEFAULT_JSON = Path(__file__).resolve().parents[2] / "book" / "_static" / "gpu_check.json"


def load(path: str | os.PathLike[str] = DEFAULT_JSON) -> dict[str, Any] | None:
    """The check at ``path``, ``None`` where there is none."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def gpu_measurement(check: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``check`` if it is a measurement of a GPU at the paper's sizes (device type ``cuda``, not
    the small size), else ``None``."""
    if check is None or check.get("device_type") != "cuda" or check.get("small", True):
        return None
    return check


def note(check: Mapping[str, Any] | None) -> str:
    """One sentence for a page: "Measured on <device> ..." for a GPU measurement, else that no
    GPU run exists (and what the check present, if any, was)."""
    gpu = gpu_measurement(check)
    if gpu is not None:
        return (
            f"Measured on {gpu['device']} by `make gpu-check` ({gpu['date']}, commit "
            f"`{gpu['commit']}`, torch {gpu.get('torch', '?')})."
        )
    if check is None:
        return (
            "No GPU run exists: no CUDA machine has run `make gpu-check` "
            "(`book/_static/gpu_check.json` is absent), so every number here is from this "
            "machine's CPU."
        )
    return (
        f"No GPU run exists: the GPU check present ran on {check.get('device', '?')} at its small "
        f"size ({check.get('date', '?')}), which tests the script and measures no GPU."
    )


def table6_rows(check: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Table VI's rows of a GPU measurement (first repetition: net, regularizer, batch, input,
    seconds per step, ratio to the plain step); ``[]`` without one."""
    gpu = gpu_measurement(check)
    if gpu is None:
        return []
    return [dict(r) for r in gpu.get("table6", []) if r.get("repetition", 0) == 0]


def table6_frame(check: Mapping[str, Any] | None) -> pd.DataFrame:
    """Table VI of a GPU measurement as the pages show it (the timing page and "What the
    ``paper`` profile costs"): per net and regularizer (its label,
    :attr:`jacnb.lab.timing.StepRegularizer.label`) the seconds per step and the ratio to the
    plain step of the same run, and the row's key in the JSON; empty without a GPU measurement
    (:func:`note` says why)."""
    rows = pd.DataFrame(table6_rows(check))
    if rows.empty:
        return rows
    rows = rows.assign(
        key=rows["regularizer"],
        regularizer=[step_label(r) if r in STEP_REGULARIZERS else r for r in rows["regularizer"]],
    )
    cols = {"net": "net", "regularizer": "regularizer", "batch": "batch", "input": "input",
            "sec_per_batch": "s / step", "ratio": "x no reg.", "key": "key in the JSON"}
    return rows[list(cols)].rename(columns=cols)
