"""What a stored result must hold to be shown: metric names, types and ranges.

Every record read from the store is checked against :data:`CONVENTIONS`, the book's metric
naming conventions that hold in every experiment: an accuracy (``acc``, ``*_acc``) is a number in
``[0, 1]``, a loss (``loss``, ``*_loss``) and ``seconds`` a number ``>= 0`` (non-finite values
and ``null`` are allowed there: a diverged run has them). An experiment may add a
:class:`ResultSchema` of its own (``run_grid(..., schema=...)`` or ``ResultStore(schemas=...)``):
the metrics every *finished* (``ok``) run must report, finite and in range. A record that fails
is quarantined like a damaged file and its run recomputed, so a table never shows a value no
run produced (a missing ``test_acc`` shown as NaN, ``test_acc = "high"`` crashing a page).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_NUMBER = (int, float)


@dataclass(frozen=True)
class Metric:
    """A numeric metric: a real number (not a bool) within ``[low, high]`` (``None``: open)."""

    low: float | None = None
    high: float | None = None

    def problem(self, name: str, value: Any, *, required: bool) -> str | None:
        """Why ``value`` is not a valid ``name``, or ``None``. A ``required`` value must be
        finite; an optional one may be ``None`` or non-finite (a diverged run's)."""
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, _NUMBER):
            return f"{name} = {value!r} is not a number"
        if not math.isfinite(value):
            return f"{name} = {value!r} is not finite" if required else None
        if self.low is not None and value < self.low:
            return f"{name} = {value!r} is below {self.low}"
        if self.high is not None and value > self.high:
            return f"{name} = {value!r} is above {self.high}"
        return None


#: A fraction, such as an accuracy.
FRACTION = Metric(0.0, 1.0)
#: A non-negative number, such as a loss or a duration.
NON_NEGATIVE = Metric(0.0, None)

#: Metric naming conventions that hold in every experiment: (name pattern, metric).
CONVENTIONS: tuple[tuple[re.Pattern[str], Metric], ...] = (
    (re.compile(r"^(.+_)?acc$"), FRACTION),
    (re.compile(r"^(.+_)?loss$"), NON_NEGATIVE),
    (re.compile(r"^seconds$"), NON_NEGATIVE),
)


@dataclass(frozen=True)
class ResultSchema:
    """The metrics every finished (``ok``) run of one experiment reports, finite and in range;
    e.g. ``ResultSchema({"test_acc": FRACTION, "train_acc": FRACTION})``."""

    required: Mapping[str, Metric] = field(default_factory=dict)


def problems(
    result: Mapping[str, Any], status: str, schema: ResultSchema | None = None
) -> list[str]:
    """Every way ``result`` (of a record with ``status``) breaks :data:`CONVENTIONS` or
    ``schema``; empty if it is valid."""
    required = dict(schema.required) if schema is not None and status == "ok" else {}
    found = [f"required metric {name!r} is missing" for name in required if name not in result]
    for name, value in result.items():
        if name in required:
            problem = required[name].problem(name, value, required=True)
        else:
            metric = next((m for pattern, m in CONVENTIONS if pattern.match(name)), None)
            problem = None if metric is None else metric.problem(name, value, required=False)
        if problem is not None:
            found.append(problem)
    return found
