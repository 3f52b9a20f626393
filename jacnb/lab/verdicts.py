"""The one verdict record of the book (issue 13), shared by every chapter and the scorecard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import pandas as pd

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict and the numbers that decided it."""

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

    def as_row(self) -> dict[str, Any]:
        """The record as a plain dict (one row of :func:`verdict_frame`)."""
        return asdict(self)


def verdict_frame(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """One row per verdict, the columns in the order of :class:`Verdict`'s fields."""
    return pd.DataFrame([v.as_row() for v in verdicts], columns=[f.name for f in fields(Verdict)])
