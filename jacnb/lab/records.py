"""What a stored run is: its :class:`RunStatus` and the record a diverged run leaves.

A run of any chapter ends in one of three ways: it finished (``ok``), its training diverged
(``diverged``: a non-finite or exploding loss, :class:`jacnb.core.train.DivergedError`; the run
is stored as such with the message as ``reason``, left out of every mean and table, and counted
in the verdicts), or it failed otherwise (``failed``; never stored as a result). The store keeps the
status as its string value (``"ok"``, ``"diverged"``), so records written before this enum
existed read back unchanged: :meth:`RunStatus.of` maps a stored value (missing or empty: ``ok``)
onto the enum.

What a divergence is lives here: :func:`is_divergence` says which exception is one,
:func:`diverged_record` is the record it leaves, :func:`split_ok` is the one filter of the
chapters' means, tables and figures. The verdicts count diverged runs instead of dropping them,
as each claim registers (:func:`jacnb.lab.gates.diverged_gate`;
:func:`jacnb.lab.pipeline.decide_panel` passes every run with its status). Tests:
``tests/lab/test_records.py`` and ``tests/chapters/test_pipeline_rules.py`` (every chapter
follows it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import pandas as pd


class RunStatus(str, Enum):
    """How a run ended. A ``str`` enum: ``RunStatus.OK == "ok"``, and it is stored as ``"ok"``."""

    OK = "ok"
    DIVERGED = "diverged"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: Any) -> RunStatus:
        """The status of a stored value: a :class:`RunStatus`, its string, or ``None``/``""``/
        NaN (records and frames without a status: finished runs, ``ok``)."""
        if isinstance(value, cls):
            return value
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            return cls.OK
        return cls(str(value))


def is_divergence(err: BaseException) -> bool:
    """Whether ``err`` is a divergence (an exception whose ``status`` is ``"diverged"``, such as
    :class:`jacnb.core.train.DivergedError`) rather than a failure to be raised."""
    return RunStatus.of(getattr(err, "status", RunStatus.FAILED)) is RunStatus.DIVERGED


def diverged_record(err: BaseException, **extra: Any) -> dict[str, Any]:
    """The stored result of a diverged run: the exception's ``details`` (epoch, step, loss),
    ``extra`` (the run's own metrics, NaN where not measured), ``status`` and ``reason``."""
    details = dict(getattr(err, "details", {}) or {})
    return {**details, **extra, "status": RunStatus.DIVERGED, "reason": str(err)}


def run_or_diverged(
    run: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """``run(*args, **kwargs)``, or the exception when it is a divergence (returned, not
    raised: the grid goes on and the run is stored as diverged); any other exception is raised."""
    try:
        return run(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - a divergence is a result; anything else is raised
        if not is_divergence(err):
            raise
        return err


def statuses(frame: pd.DataFrame) -> pd.Series:
    """The :class:`RunStatus` of every row of a store frame (``ok`` without a status column)."""
    if "status" not in frame:
        return pd.Series([RunStatus.OK] * len(frame), index=frame.index, dtype=object)
    return frame["status"].map(RunStatus.of)


def is_ok(frame: pd.DataFrame) -> pd.Series:
    """Boolean mask of the finished (``ok``) rows of a frame."""
    return statuses(frame) == RunStatus.OK


def split_ok(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The finished rows of a frame (index reset) and how many rows were left out (diverged:
    stored as such, excluded from means, tables and figures, counted)."""
    if frame.empty:
        return frame, 0
    ok = is_ok(frame)
    return frame[ok].reset_index(drop=True), int((~ok).sum())


def status_of_result(result: Mapping[str, Any]) -> RunStatus:
    """The status of a run function's result dict (``status`` key; none: ``ok``)."""
    return RunStatus.of(result.get("status"))
