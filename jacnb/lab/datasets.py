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

#: The paper dataset each local dataset *is* (``mnist-10k`` is 10,000 real MNIST digits); a
#: dataset run for a paper dataset it is not is a stand-in (:func:`is_stand_in_for`).
PAPER_NAMES = {
    "mnist": "MNIST",
    "mnist-10k": "MNIST",
    "cifar10": "CIFAR-10",
    "imagenet": "ImageNet",
    "lared": "LaRED",
}

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


def is_stand_in_for(name: str, paper: str) -> bool:
    """Whether running ``name`` for the paper's ``paper`` dataset is a stand-in."""
    return PAPER_NAMES.get(name) != paper


def with_stand_in(label: str, paper: str) -> str:
    """``label`` marked as standing in for ``paper``: ``"<label> (stand-in for <paper>)"``. The one
    spelling of a stand-in, in panel titles and verdicts alike."""
    return f"{label} (stand-in for {paper})"


def stand_in_label(name: str, paper: str, note: str = "") -> str:
    """The label of ``name`` running in place of the paper's ``paper``: its own name
    (:func:`dataset_label`), ``note`` (e.g. "resized") after it, marked by :func:`with_stand_in`
    when it is a stand-in (:func:`is_stand_in_for`). The one label function of every chapter."""
    label = dataset_label(name) + (f", {note}" if note else "")
    return with_stand_in(label, paper) if is_stand_in_for(name, paper) else label


def not_run(tried: Sequence[str] | None = None) -> str:
    """:data:`NOT_RUN`, naming the datasets looked for."""
    return f"{NOT_RUN} (tried {', '.join(tried)})" if tried else NOT_RUN


@dataclass(frozen=True)
class Panel:
    """One panel of a figure: the dataset the paper used, and what runs in its place.

    ``dataset`` is ``None`` when the panel is not run. ``label`` never calls a stand-in by the
    name of the dataset it stands in for; ``stand_in`` says whether it is one (read this, never
    the label).
    """

    paper: str
    dataset: str | None
    label: str
    note: str
    stand_in: bool = False

    @classmethod
    def running(cls, paper: str, name: str, note: str = "", label_note: str = "") -> Panel:
        """The panel of the paper's ``paper`` dataset run on ``name`` (labelled by
        :func:`stand_in_label` with ``label_note``); ``note``: where the data came from."""
        return cls(
            paper, name, stand_in_label(name, paper, label_note), note, is_stand_in_for(name, paper)
        )

    @classmethod
    def absent(cls, paper: str, tried: Sequence[str] = ()) -> Panel:
        """The panel of ``paper`` when none of the datasets ``tried`` is on disk."""
        return cls(paper, None, f"{paper}: not run", not_run(list(tried)))

    @property
    def ran(self) -> bool:
        """Whether the panel runs (its dataset is on disk)."""
        return self.dataset is not None


def plan_panel(paper: str, candidates: Sequence[str], label_note: str = "") -> Panel:
    """The panel of the paper's ``paper`` dataset: the first of ``candidates`` whose files are on
    disk runs (labelled by :func:`stand_in_label`, with ``label_note``), else the panel is "not
    run: dataset absent" naming the datasets tried. ``candidates`` is the one spelling of "this
    dataset, else these stand-ins" in every chapter's settings."""
    for name in candidates:
        if try_dataset(name) is not None:
            return Panel.running(paper, name, get_dataset(name).source, label_note)
    return Panel.absent(paper, candidates)


def plan_panels(settings: Mapping[str, Any]) -> list[Panel]:
    """:func:`plan_panel` of every ``settings["panels"]`` spec (``{"paper", "candidates"}``)."""
    return [plan_panel(spec["paper"], spec["candidates"]) for spec in settings["panels"]]
