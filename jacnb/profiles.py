"""Profiles: ``smoke`` (seconds, CI), ``cpu`` (scaled down, 2 cores), ``paper`` (GPU).

One code path: a notebook reads its settings with ``get_profile(experiment, profile)`` and runs
the same code at every size. ``profile="auto"`` means ``paper`` when CUDA is available, else
``cpu``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

PROFILES = ("smoke", "cpu", "paper")

#: Settings per experiment and profile. Sizes stated here are the ones the book's pages print.
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "theory": {
        "smoke": {
            "dataset": "digits",
            "n_train": 300,
            "n_eval": 40,
            "depth": 3,
            "width": 64,
            "epochs": 15,
            "batch_size": 64,
            "lr": 0.05,
            "lr_drop_every": 10,
            "seeds": [0],
            "n_pairs": 8,
            "ball_samples": 4,
        },
        "cpu": {
            "dataset": "mnist-10k",
            "n_train": 2000,
            "n_eval": 200,
            "depth": 3,
            "width": 256,
            "epochs": 30,
            "batch_size": 128,
            "lr": 0.05,
            "lr_drop_every": 20,
            "seeds": [0],
            "n_pairs": 64,
            "ball_samples": 16,
        },
        "paper": {
            "dataset": "mnist",
            "n_train": 5000,
            "n_eval": 1000,
            "depth": 3,
            "width": 784,
            "epochs": 120,
            "batch_size": 128,
            "lr": 0.1,
            "lr_drop_every": 40,
            "seeds": [0],
            "n_pairs": 256,
            "ball_samples": 32,
        },
    },
}


def resolve_profile(profile: str) -> str:
    """Validate a profile name; ``"auto"`` becomes ``paper`` on CUDA, else ``cpu``."""
    if profile == "auto":
        return "paper" if torch.cuda.is_available() else "cpu"
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)} (or 'auto')"
        )
    return profile


def get_profile(experiment: str, profile: str) -> dict[str, Any]:
    """The settings of ``experiment`` at ``profile`` (a copy; ``profile`` key included)."""
    if experiment not in SETTINGS:
        raise ValueError(f"unknown experiment {experiment!r}; valid: {sorted(SETTINGS)}")
    name = resolve_profile(profile)
    settings = copy.deepcopy(SETTINGS[experiment][name])
    settings["profile"] = name
    return settings


def provenance(settings: dict[str, Any], dataset: str, **extra: Any) -> str:
    """One line naming profile, dataset, sizes and seeds, printed under every figure and table."""
    keys = [k for k in ("n_train", "n_eval", "epochs", "seeds") if k in settings]
    parts = [f"profile={settings['profile']}", f"dataset={dataset}"]
    parts += [f"{k}={settings[k]}" for k in keys]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return "; ".join(parts)
