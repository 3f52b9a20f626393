"""What every chapter's ``run()`` returns, and how a chapter publishes its verdicts.

Each chapter module (``jacnb.chapters.<name>``, notebooks ``01``-``07``) has ``NAME`` (its
notebook, e.g. ``"02_fully_connected"``), ``settings(profile)``, ``configs(settings)`` and
``run(profile, *, executor=None, store=None)``, which returns an object with the
:class:`ChapterResult` methods. A notebook then calls :func:`publish` once: it stores the
chapter's verdicts for the scorecard (:mod:`jacnb.lab.scorecard`) and shows every registered claim
of the page under its anchor (``claim-...``), which the scorecard links to.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from jacnb.lab.claims import LOG_RATIO, Claim, claims_of
from jacnb.lab.plotting import OUTCOME_COLOURS, VERDICT_COLOURS, ForestRow, forest, png_data_uri
from jacnb.lab.scorecard import gates_text, save_verdicts
from jacnb.lab.store import default_root
from jacnb.lab.verdicts import NOT_RUN, Verdict

__all__ = ["ChapterResult", "ClaimsPanel", "publish", "claims_panel", "claim_card", "cell_forest"]


@runtime_checkable
class ChapterResult(Protocol):
    """The result of one chapter's ``run()``: tidy frames, figures and verdicts."""

    def frames(self) -> dict[str, pd.DataFrame]:
        """The chapter's tidy result frames, by name."""
        ...

    def verdicts(self) -> list[Verdict]:
        """One :class:`Verdict` per registered claim of the chapter's page."""
        ...


#: Where one part of a verdict's reason ends (:func:`jacnb.lab.gates.decide` joins the failed
#: gates, the stand-in note and the straddle note with "; "; a gate's detail may hold "; " too).
_REASON_PARTS = re.compile(r"; (?=gate |stand-in|interval |no )")


def _first_sentence(reason: str) -> tuple[str, int]:
    """The reason's first part (the parts are joined by "; ") and how many more there are."""
    parts = [p.strip() for p in _REASON_PARTS.split(reason) if p.strip()]
    if not parts:
        return "", 0
    return parts[0][0].upper() + parts[0][1:], len(parts) - 1


def _one_line(claim: Claim, v: Verdict) -> str:
    """The deciding cell's mean and interval against the threshold, in one line."""
    if v.estimate is None:
        return v.evidence.split(". ")[0] if v.evidence else "no runs"
    st = claim.statistic
    unit = f" {st.unit}" if st.unit and st.kind != LOG_RATIO else ""

    def fmt(x: float | None) -> str:
        if x is None or not math.isfinite(x):
            return "–"
        return f"{x:.3g}x" if st.kind == LOG_RATIO else f"{st.scale * x:+.3g}"

    thr = next((c.threshold for c in v.cells if c.cell == v.deciding_cell), claim.rule.threshold)
    target = fmt(thr) + (f" ± {st.scale * claim.rule.margin:.3g}" if claim.rule.margin else "")
    where = f"{v.deciding_cell}: " if v.deciding_cell and v.deciding_cell != "all" else ""
    return (
        f"{where}{fmt(v.estimate)} [{fmt(v.low)}, {fmt(v.high)}]{unit} vs {target}{unit} "
        f"({claim.rule.side}), {v.n_seeds} paired seeds"
    )


def cell_forest(claim: Claim, v: Verdict) -> str:
    """The per-cell forest plot of a verdict as an ``<img>`` (empty when it has no cells)."""
    if not v.cells:
        return ""
    st = claim.statistic
    rows = [
        ForestRow(
            label=c.cell,
            estimate=c.estimate,
            low=math.nan if c.low is None else c.low,
            high=math.nan if c.high is None else c.high,
            threshold=c.threshold,
            side=claim.rule.side,
            colour=OUTCOME_COLOURS.get(c.outcome, VERDICT_COLOURS[NOT_RUN]),
            margin=claim.rule.margin,
            log=st.kind == LOG_RATIO,
        )
        for c in v.cells
        if c.estimate is not None and c.threshold is not None
    ]
    if not rows:
        return ""
    unit = f" ({st.unit})" if st.unit and st.kind != LOG_RATIO else ""
    fig = forest(rows, normalize=False, xlabel=st.description + unit, scale=st.scale)
    alt = f"{claim.id}: per-cell mean and 95 % interval against the threshold"
    return (
        f'<figure class="jacnb-figure"><img src="{png_data_uri(fig)}" alt="{html.escape(alt)}">'
        "<figcaption>Per cell: mean over the paired seeds (dot) and 95 % t-interval (bar); "
        "black tick: the threshold; green: on the claimed side, red: on the other side, amber: "
        "straddles.</figcaption></figure>"
    )


def claim_card(claim: Claim, v: Verdict | None) -> str:
    """One claim's verdict as a card under the claim's anchor: badge, the claim, one line of
    evidence, the per-cell forest plot, the reason in a sentence; the full evidence, reason and
    gates collapsed."""
    e = html.escape
    verdict = v.verdict if v else NOT_RUN
    colour = VERDICT_COLOURS.get(verdict, VERDICT_COLOURS[NOT_RUN])
    reason = v.reason if v else "no verdict from this chapter"
    first, more = _first_sentence(reason)
    more_text = f" <span class=\"jacnb-muted\">(+{more} more below)</span>" if more else ""
    dataset = f" · {e(v.dataset)}" if v and v.dataset else ""
    profile = f" · profile {e(v.profile)}" if v and v.profile else ""
    details = (
        "<details><summary>gates and numbers</summary>"
        f"<p><b>Rule:</b> {e(claim.rule.text)}.</p>"
        f"<p><b>Evidence:</b> {e(v.evidence if v else '') or '–'}</p>"
        f"<p><b>Reason:</b> {e(reason) or '–'}</p>"
        f"<p><b>Gates:</b> {e(gates_text(claim))}</p></details>"
    )
    return (
        f'<div class="jacnb-card" id="{e(claim.anchor)}" style="border-left-color:{colour}">'
        f'<p class="jacnb-card-head"><span class="jacnb-badge" style="background:{colour}">'
        f"{e(verdict)}</span> <b>{e(claim.statement)}</b></p>"
        f'<p class="jacnb-card-meta"><code>{e(claim.id)}</code>{dataset}{profile}</p>'
        f'<p class="jacnb-card-evidence">{e(_one_line(claim, v)) if v else "no runs"}</p>'
        f"{cell_forest(claim, v) if v else ''}"
        f'<p class="jacnb-card-reason">{e(first)}{more_text}</p>'
        f"{details}</div>"
    )


@dataclass(frozen=True)
class ClaimsPanel:
    """Every registered claim of one page with its verdict (``not run`` where none), each as a
    card (:func:`claim_card`) under the claim's anchor. Displays as HTML in a notebook;
    :attr:`frame` is the table."""

    page: str
    frame: pd.DataFrame
    verdicts: tuple[Verdict, ...] = ()

    def _repr_html_(self) -> str:
        by_claim = {v.claim: v for v in self.verdicts}
        cards = [claim_card(c, by_claim.get(c.id)) for c in claims_of(self.page)]
        return f'<div class="jacnb-cards">{"".join(cards)}</div>'


def claims_panel(page: str, verdicts: Iterable[Verdict]) -> ClaimsPanel:
    """The :class:`ClaimsPanel` of ``page`` (a notebook name) from the chapter's verdicts.
    Raises ``ValueError`` for a verdict of a claim registered on another page."""
    registered = claims_of(page)
    ids = {c.id for c in registered}
    by_claim: dict[str, Verdict] = {}
    for v in verdicts:
        if v.claim not in ids:
            raise ValueError(f"claim {v.claim!r} is not registered on page {page!r}")
        by_claim[v.claim] = v
    rows = []
    for c in registered:
        v = by_claim.get(c.id)
        rows.append(
            {
                "claim": c.id,
                "anchor": c.anchor,
                "statement": c.statement,
                "verdict": v.verdict if v else NOT_RUN,
                "evidence": v.evidence if v else "",
                "reason": v.reason if v else "no verdict from this chapter",
                "dataset": v.dataset if v else "",
                "profile": v.profile if v else "",
            }
        )
    return ClaimsPanel(page, pd.DataFrame(rows), tuple(by_claim.values()))


def publish(
    verdicts: Iterable[Verdict], page: str, store_root: str | Path | None = None
) -> ClaimsPanel:
    """Store ``verdicts`` for the scorecard (``<store_root>/verdicts/<page>.json``; default the
    result store's root) and return the page's :class:`ClaimsPanel` (display it)."""
    items = list(verdicts)
    panel = claims_panel(page, items)
    save_verdicts(items, default_root() if store_root is None else store_root, page)
    return panel
