"""Profiles: ``smoke`` (seconds, CI), ``cpu`` (scaled down, 2 cores), ``paper`` (GPU), and how a
chapter's settings are resolved at one.

One code path: every chapter runs the same code at every size. Its settings live beside it, as a
frozen dataclass whose defaults are one profile's values plus the few values each other profile
changes (:func:`resolve`); ``profile="auto"`` means ``paper`` when CUDA is available, else ``cpu``
(:func:`resolve_profile`). This module knows no chapter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

PROFILES = ("smoke", "cpu", "paper")


class _Absent:
    """The value of a setting a profile does not have (the key is left out of its settings)."""

    def __repr__(self) -> str:
        return "ABSENT"


#: A setting that a profile does not have: :func:`plain` leaves the key out.
ABSENT: Any = _Absent()


def plain(value: Any) -> Any:
    """``value`` as plain data (what the chapters read and the store hashes): dataclasses and
    mappings as dicts, tuples and lists as lists, recursively, every :data:`ABSENT` key left
    out; a fresh copy, so a caller may change it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items() if v is not ABSENT}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def resolve(defaults: Any, overrides: Mapping[str, Mapping[str, Any]], profile: str) -> dict:
    """A chapter's settings at ``profile``: its dataclass ``defaults`` with the profile's
    ``overrides`` replaced (:func:`dataclasses.replace`), as plain data (:func:`plain`), with the
    ``profile`` key. ``profile`` may be ``auto``."""
    name = resolve_profile(profile)
    unknown = set(overrides) - set(PROFILES)
    if unknown:
        raise ValueError(f"overrides for unknown profiles {sorted(unknown)}")
    out = plain(dataclasses.replace(defaults, **overrides.get(name, {})))
    out["profile"] = name
    return out


def resolve_profile(profile: str) -> str:
    """Validate a profile name; ``"auto"`` becomes ``paper`` on CUDA, else ``cpu``."""
    if profile == "auto":
        return "paper" if torch.cuda.is_available() else "cpu"
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)} (or 'auto')"
        )
    return profile


def provenance(settings: dict[str, Any], dataset: str, **extra: Any) -> str:
    """One line naming profile, dataset, sizes and seeds, printed under every figure and table."""
    keys = [k for k in ("n_train", "n_eval", "epochs", "seeds") if k in settings]
    parts = [f"profile={settings['profile']}", f"dataset={dataset}"]
    parts += [f"{k}={settings[k]}" for k in keys]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return "; ".join(parts)
