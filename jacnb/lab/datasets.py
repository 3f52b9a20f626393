"""Datasets as the chapters use them: one in-process cache, the human names, stand-in planning
and the one "not run" message.

A figure panel or table column names the dataset the paper used (``paper``); it runs that
dataset if its files are on disk, else a configured stand-in, labelled "X (stand-in for Y)" --
never by the name of the dataset it stands in for --, else it says :data:`NOT_RUN`. Used by every
chapter of the book (notebooks 02-07).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jacnb.core.data import Dataset, DatasetMissingError, load_dataset

#: What a panel, column or table whose dataset is absent says (nothing is substituted silently).
NOT_RUN = "not run: dataset absent"

#: Human names of the datasets as this book runs them (one map for every chapter).
LABELS: dict[str, str] = {
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "imagenet": "ImageNet",
    "mnist-10k": "MNIST (mnist-10k: 10,000 real MNIST digits)",
    "fashion-mnist": "Fashion-MNIST",
    "digits": "sklearn 8x8 digits",
    "lared": "LaRED",
}

#: Panel titles of the datasets the paper uses; anything else is labelled as what it is.
PAPER_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet", "lared": "LaRED"}

_CACHE: dict[str, Dataset] = {}


def get_dataset(name: str) -> Dataset:
    """``load_dataset(name)``, loaded once per process (runs of a grid share it)."""
    if name not in _CACHE:
        _CACHE[name] = load_dataset(name)
    return _CACHE[name]


def try_dataset(name: str) -> Dataset | None:
    """The dataset, or ``None`` when its files are absent (nothing is substituted here)."""
    try:
        return get_dataset(name)
    except DatasetMissingError:
        return None


def clear_cache() -> None:
    """Forget every dataset loaded so far (tests that swap the data root use it)."""
    _CACHE.clear()


def dataset_label(name: str) -> str:
    """Human name of a dataset as this book runs it."""
    return LABELS.get(name, name)


def stand_in_label(name: str, paper: str, note: str = "") -> str:
    """The label of ``name`` running in place of the paper's ``paper``: its own name, with
    "(stand-in for <paper>)" unless it is the paper's dataset; ``note`` (e.g. "resized") goes
    after the name."""
    label = dataset_label(name) + (f", {note}" if note else "")
    if PAPER_NAMES.get(name) != paper and not dataset_label(name).startswith(paper):
        label = f"{label} (stand-in for {paper})"
    return label


def not_run(tried: Sequence[str] | None = None) -> str:
    """:data:`NOT_RUN`, naming the datasets looked for."""
    return f"{NOT_RUN} (tried {', '.join(tried)})" if tried else NOT_RUN


@dataclass(frozen=True)
class Panel:
    """One panel of a figure: the dataset the paper used, and what runs in its place.

    ``dataset`` is ``None`` when the panel is not run. ``label`` never calls a stand-in by the
    name of the dataset it stands in for.
    """

    paper: str
    dataset: str | None
    label: str
    note: str


def plan_panels(settings: Mapping[str, Any]) -> list[Panel]:
    """Resolve ``settings["panels"]`` (``[{"paper", "dataset", "fallback"}]``) against the disk.

    A panel runs its ``dataset`` if it loads, else its ``fallback`` (labelled "X (stand-in for
    Y)"), else it is "not run: dataset absent".
    """
    out = []
    for spec in settings["panels"]:
        paper = spec["paper"]
        for name in (spec["dataset"], spec.get("fallback")):
            if name is None or try_dataset(name) is None:
                continue
            out.append(Panel(paper, name, stand_in_label(name, paper), get_dataset(name).source))
            break
        else:
            tried = [n for n in (spec["dataset"], spec.get("fallback")) if n]
            out.append(Panel(paper, None, f"{paper}: not run", f"{NOT_RUN} {tried}"))
    return out
