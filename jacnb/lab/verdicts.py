"""The one verdict record of the book.

Every chapter's ``verdicts()`` returns ``list[Verdict]`` (notebooks 01-07; the scorecard reads
them). A verdict names the claim it decides (``claim``: a registered claim id such as
``"fig3.jr_beats_wd"``), one of :data:`VERDICTS`, the numbers that decided it (``evidence``) and
why it is what it is (``reason``: a failed gate, an absent dataset, a stand-in, ...).

A verdict is decided only by :func:`jacnb.lab.gates.decide` (or :func:`jacnb.lab.gates.not_run`)
from a claim registered in :mod:`jacnb.lab.claims`; :mod:`jacnb.lab.scorecard` gathers them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)


@dataclass(frozen=True)
class CellStat:
    """One cell of a claim as the rule saw it: the mean statistic over the paired seeds, its
    t-interval at the rule's level and the threshold, in the metric's natural units (a ratio for
    a log-ratio claim). The chapters' claim cards and the scorecard's forest plot draw these."""

    cell: str  # e.g. "depth=2, n_train=5000"; "all" for a claim with one cell
    estimate: float
    low: float
    high: float
    threshold: float
    n: int
    outcome: str  # jacnb.lab.stats.CLAIMED / OTHER / STRADDLES
    diverged: int = 0  # runs of the cell that diverged (counted, never silently dropped)


@dataclass(frozen=True)
class Verdict:
    """One decided claim of a paper, as reproduced (or not) by a chapter at a profile."""

    claim: str  # registered claim id, e.g. "fig3.jr_beats_wd"
    verdict: str  # one of VERDICTS
    evidence: str  # the numbers that decided it, human-readable
    reason: str = ""  # why: failed gate, dataset absent, stand-in, ...
    dataset: str = ""  # dataset actually used (a stand-in is named as such)
    profile: str = ""
    estimate: float | None = None  # e.g. mean paired difference
    low: float | None = None  # 95 % interval
    high: float | None = None
    n_seeds: int | None = None
    seeds_needed: int | None = None  # when the interval straddles: seeds a decisive verdict needs
    cells: tuple[CellStat, ...] = ()  # every cell's interval (empty: not run, or no statistic)
    deciding_cell: str = ""  # the cell whose interval is estimate/low/high

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
        cells = tuple(c if isinstance(c, CellStat) else CellStat(**c) for c in self.cells)
        object.__setattr__(self, "cells", cells)  # from JSON: dicts -> CellStat

    def as_row(self) -> dict[str, Any]:
        """The record as a flat dict (a row of :func:`verdict_frame`)."""
        return asdict(self)


COLUMNS = tuple(Verdict.__dataclass_fields__)


def verdict_frame(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """The verdicts as a table, one row each, columns in the order of :class:`Verdict`."""
    return pd.DataFrame([v.as_row() for v in verdicts], columns=list(COLUMNS))
