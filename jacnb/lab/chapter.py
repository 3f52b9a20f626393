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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from jacnb.lab.claims import claims_of
from jacnb.lab.scorecard import VERDICT_COLOURS, save_verdicts
from jacnb.lab.store import default_root
from jacnb.lab.verdicts import NOT_RUN, Verdict

__all__ = ["ChapterResult", "ClaimsPanel", "publish", "claims_panel"]


@runtime_checkable
class ChapterResult(Protocol):
    """The result of one chapter's ``run()``: tidy frames, figures and verdicts."""

    def frames(self) -> dict[str, pd.DataFrame]:
        """The chapter's tidy result frames, by name."""
        ...

    def verdicts(self) -> list[Verdict]:
        """One :class:`Verdict` per registered claim of the chapter's page."""
        ...


@dataclass(frozen=True)
class ClaimsPanel:
    """Every registered claim of one page with its verdict (``not run`` where none), each row
    under the claim's anchor. Displays as HTML in a notebook; :attr:`frame` is the table."""

    page: str
    frame: pd.DataFrame

    def _repr_html_(self) -> str:
        rows = []
        for _, r in self.frame.iterrows():
            colour = VERDICT_COLOURS.get(r["verdict"], "inherit")
            rows.append(
                f'<tr id="{html.escape(r["anchor"])}">'
                f"<td><code>{html.escape(r['claim'])}</code><br>{html.escape(r['statement'])}</td>"
                f'<td><b style="color:{colour}">{html.escape(r["verdict"])}</b></td>'
                f"<td>{html.escape(r['evidence'])}</td><td>{html.escape(r['reason'])}</td></tr>"
            )
        head = "".join(f"<th>{h}</th>" for h in ("claim", "verdict", "evidence", "reason"))
        return (
            '<div class="claims-panel" style="overflow-x:auto;max-width:100%">'
            f'<table class="claims"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )


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
    return ClaimsPanel(page, pd.DataFrame(rows))


def publish(
    verdicts: Iterable[Verdict], page: str, store_root: str | Path | None = None
) -> ClaimsPanel:
    """Store ``verdicts`` for the scorecard (``<store_root>/verdicts/<page>.json``; default the
    result store's root) and return the page's :class:`ClaimsPanel` (display it)."""
    items = list(verdicts)
    panel = claims_panel(page, items)
    save_verdicts(items, default_root() if store_root is None else store_root, page)
    return panel
