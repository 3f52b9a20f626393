"""The fully connected nets of Figs. 3 and 4 (Sokolic et al. 2017, Sec. VI-A; pages
``notebooks/02_fully_connected.ipynb`` and ``notebooks/03_weight_norm.ipynb``): the net of a run
config, its dry-run view, and the cost arithmetic the two pages project the ``paper``
profile's GPU-hours with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from jacnb.core.data import Dataset
from jacnb.core.models import fully_connected
from jacnb.core.regularizers import regularizer_from_config
from jacnb.lab.datasets import get_dataset
from jacnb.lab.dryrun import DryConfig, batch_of
from jacnb.lab.pipeline import sgd_steps
from jacnb.lab.timing import make_step


def input_dim(ds: Dataset) -> int:
    """Input dimension of a dataset's (flattened) samples, the nets' width unit."""
    return int(math.prod(ds.input_shape))


def build_fc(config: Mapping[str, Any], ds: Dataset, weight_norm: bool) -> nn.Module:
    """The run's net (:func:`jacnb.core.models.fully_connected`: ``config["depth"]`` weight
    layers of width ``config["width"]``; all rows normalized, eq. 45, with ``weight_norm``),
    initialized from ``config["seed"]``."""
    torch.manual_seed(config["seed"])
    return fully_connected(
        input_dim(ds), ds.n_classes, config["depth"], config["width"], weight_norm=weight_norm
    )


def fc_params(in_dim: int, n_classes: int, depth: int, width: int) -> int:
    """Weights and biases of :func:`jacnb.core.models.fully_connected`."""
    dims = [in_dim] + [width] * (depth - 1) + [n_classes]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))


def measured_gflops(frame: pd.DataFrame, in_dim: int, n_classes: int) -> pd.DataFrame:
    """Per stored run: plain-SGD work ``6 * params * samples * epochs`` (GFLOP) and the achieved
    GFLOP/s on this machine (regularizer overhead included, so JR runs look slower)."""
    df = frame.copy()
    n_fit = df["n_fit"] if "n_fit" in df else df["n_train"]
    work = [
        6 * fc_params(in_dim, n_classes, int(d), int(w)) * n * e / 1e9
        for d, w, n, e in zip(df["depth"], df["width"], n_fit, df["epochs"], strict=True)
    ]
    df["gflop"] = work
    df["gflop_per_s"] = df["gflop"] / df["seconds"]
    return df


def project_gpu_hours(
    workload: Iterable[Mapping[str, Any]],
    multiplier: Mapping[str, float],
    n_classes: int = 10,
    gpu_tflops: float = 10.0,
) -> dict[str, float]:
    """Projected GPU-hours of a list of runs ``{in_dim, depth, width, n_fit, epochs,
    regularizer}``.

    Work = ``6 * params * n_fit * epochs`` FLOPs (forward + backward of plain SGD), times the
    regularizer's step-cost ``multiplier`` relative to plain SGD (measured on this CPU);
    time = work / ``gpu_tflops`` sustained. An estimate, not a measurement (no GPU here);
    evaluation passes are not counted.
    """
    total, runs = 0.0, 0
    for r in workload:
        p = fc_params(r["in_dim"], n_classes, r["depth"], r["width"])
        total += 6 * p * r["n_fit"] * r["epochs"] * multiplier.get(r["regularizer"], 1.0)
        runs += 1
    return {"runs": runs, "pflop": total / 1e15, "gpu_hours": total / (gpu_tflops * 1e12) / 3600}


def dry_config(phase: str, c: Mapping[str, Any], weight_norm: bool = False) -> DryConfig:
    """One fully connected run config (Fig. 3's; Fig. 4's with ``weight_norm``) as
    :mod:`jacnb.lab.dryrun` sees it: its SGD steps on the samples it fits, one training step."""
    ds = get_dataset(c["dataset"])
    n = int(c["n_train"])
    n_fit = n - round(c["val_fraction"] * n) if "val_fraction" in c else n
    lam = float(c.get("lam", 0.0))
    reg = c.get("regularizer", "none") if lam > 0 else "none"
    if reg == "jacobian":
        reg = f"jacobian ({c['jr_method']})"

    def build(device: torch.device) -> Any:
        model = build_fc(c, ds, weight_norm=weight_norm).to(device)
        x, y = batch_of(ds, int(c["batch_size"]), device)
        regularizer = regularizer_from_config(c) if lam > 0 else None
        return make_step(model, regularizer, x, y, lam=lam, lr=float(c["lr"]))

    shape = (f"depth {c['depth']}", f"width {c['width']}", f"batch {c['batch_size']}", reg)
    steps = sgd_steps(n_fit, c["batch_size"], c["epochs"])
    return DryConfig(phase, ds.name, steps, shape, build, dict(c))
