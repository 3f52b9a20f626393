"""The scorecard (issue 13): one row per registered claim of both papers, fed by the verdict
records the chapters store, never typed by hand.

* :func:`save_verdicts` / :func:`load_verdicts` -- a chapter's verdicts as one JSON file
  ``<results root>/verdicts/<chapter>.json``, written atomically
  (:func:`jacnb.lab.store.write_atomic`; temporary names start with ``.``, which the loader never
  reads);
* :func:`scorecard_frame` -- the table: the claim (Sokolic et al. 2017 Sec. VI, Figs. 3-4, Tables
  II-VI; Oymak et al. 2019), the paper's number (read from :mod:`jacnb.paper`, never typed),
  ours (estimate and 95 % interval), profile, dataset (a stand-in flagged), seeds, verdict,
  reason and a link to the chapter section that shows it; a registered claim without a verdict
  is "not run";
* :func:`counts` -- reproduced / not reproduced / inconclusive / not run, with stand-in verdicts
  counted apart;
* :func:`build` / :func:`write_page` -- the book page ``scorecard`` (first after the
  introduction); :class:`Scorecard` displays itself in a notebook.

The chapters (notebooks ``02``-``07``) call :func:`jacnb.lab.gates.decide` per claim, then
:func:`save_verdicts` once; ``jacnb.book`` calls :func:`write_page` after every chapter ran.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from jacnb.lab import paper as _paper
from jacnb.lab.claims import (
    LOG_RATIO,
    REGISTRY,
    Claim,
    Kind,
    get_claim,
    registry_digest,
)
from jacnb.lab.gates import is_stand_in
from jacnb.lab.store import write_atomic
from jacnb.lab.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    VERDICTS,
    Verdict,
)

__all__ = [
    "VERDICTS_DIR",
    "COLUMNS",
    "save_verdicts",
    "load_verdicts",
    "paper_number",
    "scorecard_frame",
    "counts",
    "Scorecard",
    "build",
    "render_html",
    "page_markdown",
    "write_page",
]

#: Sub-folder of the results root holding one ``<chapter>.json`` per chapter.
VERDICTS_DIR = "verdicts"

COLUMNS = (
    "claim",
    "kind",
    "paper",
    "section",
    "statement",
    "paper's number",
    "ours",
    "interval",
    "profile",
    "dataset",
    "stand-in",
    "n seeds",
    "seeds needed",
    "verdict",
    "reason",
    "evidence",
    "link",
    "paper disagrees",
)

_CHAPTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_PAPER_NAMES = {"sokolic2017": "Sokolić et al. 2017", "oymak2019": "Oymak et al. 2019"}

# ---------------------------------------------------------------------------------------------
# The verdict store
# ---------------------------------------------------------------------------------------------


def _dir(store_root: str | Path) -> Path:
    return Path(store_root) / VERDICTS_DIR


def save_verdicts(verdicts: Iterable[Verdict], store_root: str | Path, chapter: str) -> Path:
    """Write a chapter's verdicts to ``<store_root>/verdicts/<chapter>.json`` atomically,
    replacing the chapter's previous file. Every verdict must be of a registered claim, with a
    verdict in :data:`VERDICTS`, and no claim twice."""
    if not _CHAPTER.match(chapter):
        raise ValueError(f"chapter name {chapter!r}: letters, digits, '_' and '-' only")
    items = list(verdicts)
    ids = [v.claim for v in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{chapter}: claims given twice: {dup}")
    for v in items:
        get_claim(v.claim)  # KeyError for an unregistered claim
        if v.verdict not in VERDICTS:
            raise ValueError(f"{v.claim}: verdict {v.verdict!r} not one of {VERDICTS}")
    folder = _dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    record = {
        "chapter": chapter,
        "registry": registry_digest(),
        "verdicts": [_clean(v.as_row()) for v in items],
    }
    text = json.dumps(record, indent=1, allow_nan=False, default=_jsonable)
    write_atomic(path, text.encode())
    return path


def _clean(value: Any) -> Any:
    """NaN -> None (JSON has no NaN), inside nested records (a verdict's cells) too."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON-serializable: {obj!r}")


def _verdict(row: dict[str, Any]) -> Verdict:
    names = {f.name for f in fields(Verdict)}
    return Verdict(**{k: v for k, v in row.items() if k in names})


def load_verdicts(store_root: str | Path) -> list[Verdict]:
    """Every stored verdict under ``<store_root>/verdicts/``, chapter files in name order;
    temporary files (leading ``.``) are never read. Raises ``ValueError`` when two chapter files
    judge the same claim."""
    folder = _dir(store_root)
    if not folder.is_dir():
        return []
    out: list[Verdict] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        record = json.loads(path.read_text())
        for row in record["verdicts"]:
            v = _verdict(row)
            if v.claim in seen:
                raise ValueError(
                    f"claim {v.claim!r} judged in both {seen[v.claim]} and {path.name}"
                )
            seen[v.claim] = path.name
            out.append(v)
    return out


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:g}"


def paper_number(claim: Claim) -> str:
    """The paper's number for ``claim``, read from :mod:`jacnb.paper` (see :class:`PaperRef`):
    per cell, treatment - baseline (``how="difference"``) or the printed value; the claim's
    ``paper_note`` when the paper prints none (figures)."""
    ref = claim.paper_ref
    if ref is None:
        return claim.paper_note or "-"
    df = _paper.paper_table(ref.table)
    for col, val in ref.where:
        df = df[df[col] == val]
    unit = f" {ref.unit}" if ref.unit else ""
    if ref.how == "difference":
        base, treat = ref.arms
        if not ref.by:
            b = float(df[df[ref.arm_column] == base][ref.value].iloc[0])
            t = float(df[df[ref.arm_column] == treat][ref.value].iloc[0])
            text = f"{b:g} → {t:g} ({t - b:+.4g}{unit})"
        else:
            wide = df.pivot_table(index=list(ref.by), columns=ref.arm_column, values=ref.value)
            cells = []
            for key, row in wide.iterrows():
                key = key if isinstance(key, tuple) else (key,)
                label = ", ".join(
                    f"{name}={k}" if isinstance(k, bool) else _num(k)
                    for name, k in zip(ref.by, key, strict=True)
                )
                cells.append(f"{label}: {row[treat] - row[base]:+.4g}")
            text = f"{treat} - {base}: " + "; ".join(cells) + unit
    elif ref.by:
        text = "; ".join(
            f"{', '.join(_num(row[k]) for k in ref.by)}: {_num(float(row[ref.value]))}{unit}"
            for _, row in df.iterrows()
        )
    else:
        text = "; ".join(f"{_num(float(v))}{unit}" for v in df[ref.value])
    if claim.paper_note:
        text += f" ({claim.paper_note})"
    return text


def _fmt_value(claim: Claim, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    st = claim.statistic
    if st.kind == LOG_RATIO:
        return f"{v:.3g}x"
    unit = f" {st.unit}" if st.unit else ""
    return f"{st.scale * v:+.3g}{unit}"


def _link(claim: Claim, link_prefix: str) -> str:
    return f"{link_prefix}{claim.page}.html#{claim.anchor}"


def scorecard_frame(
    verdicts: Iterable[Verdict],
    claims: Sequence[Claim] = REGISTRY,
    *,
    profile: str | None = None,
    link_prefix: str = "",
) -> pd.DataFrame:
    """One row per registered claim (registry order) with its verdict; "not run" where no
    verdict is on file. With ``profile``, a verdict made at another profile is not used (the row
    says which profile's verdict is on file). Raises ``ValueError`` for a verdict of an
    unregistered claim or two verdicts of one claim."""
    by_claim: dict[str, Verdict] = {}
    registered = {c.id for c in claims}
    for v in verdicts:
        if v.claim not in registered:
            raise ValueError(f"verdict for unregistered claim {v.claim!r}")
        if v.claim in by_claim:
            raise ValueError(f"two verdicts for claim {v.claim!r}")
        by_claim[v.claim] = v
    rows = []
    for c in claims:
        v = by_claim.get(c.id)
        reason = ""
        if v is not None and profile is not None and v.profile != profile:
            reason = f"only a verdict from profile {v.profile!r} is on file"
            v = None
        if v is None:
            v = Verdict(
                c.id, NOT_RUN, "", reason=reason or "no verdict on file", profile=profile or ""
            )
        interval = (
            f"[{_fmt_value(c, v.low)}, {_fmt_value(c, v.high)}]"
            if v.low is not None and v.high is not None
            else ""
        )
        rows.append(
            {
                "claim": c.id,
                "kind": c.kind.value,
                "paper": _PAPER_NAMES.get(c.paper, c.paper)
                + ("" if c.paper_claim else " (this book's claim)"),
                "section": c.section,
                "statement": c.statement,
                "paper's number": paper_number(c),
                "ours": _fmt_value(c, v.estimate),
                "interval": interval,
                "profile": v.profile,
                "dataset": v.dataset,
                "stand-in": is_stand_in(v.dataset),
                "n seeds": v.n_seeds,
                "seeds needed": v.seeds_needed,
                "verdict": v.verdict,
                "reason": v.reason,
                "evidence": v.evidence,
                "link": _link(c, link_prefix),
                "paper disagrees": c.paper_disagrees,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


_GROUPS = (
    "claims of the papers",
    "this book's claims",
    "stand-in verdicts (counted apart)",
)


def counts(frame: pd.DataFrame, claims: Sequence[Claim] = REGISTRY) -> pd.DataFrame:
    """Verdict counts: rows = claims of the papers on their datasets, this book's own claims,
    and stand-in verdicts (counted apart, never as verdicts on the paper's dataset); columns =
    reproduced / not reproduced / inconclusive / not run. Checks (``kind`` ``"check"``: true by
    construction or theorem, :class:`jacnb.lab.claims.Kind`) are never counted."""
    checks = {c.id for c in claims if c.kind == Kind.CHECK}
    frame = frame[~frame["claim"].isin(checks)].reset_index(drop=True)
    own = {c.id for c in claims if not c.paper_claim}
    group = [
        _GROUPS[2] if s else _GROUPS[1] if cid in own else _GROUPS[0]
        for cid, s in zip(frame["claim"], frame["stand-in"], strict=True)
    ]
    table = pd.crosstab(pd.Series(group, name="claims"), frame["verdict"].rename("verdict"))
    return table.reindex(index=list(_GROUPS), columns=list(VERDICTS), fill_value=0).astype(int)


@dataclass(frozen=True)
class Scorecard:
    """The scorecard of one results store: the table, the counts and the registry digest."""

    frame: pd.DataFrame
    counts: pd.DataFrame
    digest: str
    profile: str | None

    def _repr_html_(self) -> str:
        return render_html(self)


def build(store_root: str | Path, profile: str | None = None, link_prefix: str = "") -> Scorecard:
    """The scorecard of the verdicts stored under ``store_root`` (see :func:`load_verdicts`)."""
    frame = scorecard_frame(load_verdicts(store_root), profile=profile, link_prefix=link_prefix)
    return Scorecard(frame, counts(frame), registry_digest(), profile)


#: The colour of each verdict on the scorecard and the chapters' claims panels.
VERDICT_COLOURS = {
    REPRODUCED: "#1a7f37",
    NOT_REPRODUCED: "#cf222e",
    INCONCLUSIVE: "#9a6700",
    NOT_RUN: "#6e7781",
}


def _e(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return html.escape(str(v))


def render_html(card: Scorecard) -> str:
    """The counts and the table as one HTML block without blank lines (so MyST passes it through
    as raw HTML)."""
    head = "".join(f"<th>{_e(v)}</th>" for v in VERDICTS)
    count_rows = "".join(
        f"<tr><th>{_e(g)}</th>"
        + "".join(f"<td>{int(card.counts.loc[g, v])}</td>" for v in VERDICTS)
        + "</tr>"
        for g in card.counts.index
    )
    counts_html = (
        f'<table class="scorecard-counts"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{count_rows}</tbody></table>"
    )
    cols = ("claim", "paper's number", "ours", "dataset", "n seeds", "verdict", "reason")
    rows = []
    for _, r in card.frame.iterrows():
        colour = VERDICT_COLOURS.get(r["verdict"], "inherit")
        claim = (
            f'<a href="{_e(r["link"])}"><code>{_e(r["claim"])}</code></a><br>'
            f"{_e(r['statement'])}<br><small>{_e(r['paper'])}, {_e(r['section'])}</small>"
        )
        ours = _e(r["ours"]) + (f"<br><small>{_e(r['interval'])}</small>" if r["interval"] else "")
        if r["profile"] and r["verdict"] != NOT_RUN:
            ours += f"<br><small>profile {_e(r['profile'])}</small>"
        dataset = _e(r["dataset"]) + (" <b>(stand-in)</b>" if r["stand-in"] else "")
        seeds = _e(r["n seeds"])
        if pd.notna(r["seeds needed"]) and r["seeds needed"] is not None:
            seeds += f"<br><small>{int(r['seeds needed'])} needed</small>"
        verdict = f'<b style="color:{colour}">{_e(r["verdict"])}</b>'
        if r["kind"] == Kind.CHECK.value:
            verdict += "<br><small>check (holds by construction; not counted)</small>"
        reason = _e(r["reason"])
        if r["paper disagrees"]:
            reason += f"<br><small><b>paper's own numbers:</b> {_e(r['paper disagrees'])}</small>"
        cells = (claim, _e(r["paper's number"]), ours, dataset, seeds, verdict, reason)
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{_e(c)}</th>" for c in cols)
    table_html = (
        f'<table class="scorecard"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    box = '<div class="scorecard-box" style="overflow-x:auto;max-width:100%">'
    return f"{box}{counts_html}{table_html}</div>"


_INTRO = """\
# Scorecard

Every claim of the two papers that this book tests, with its verdict. The claims and their
decision rules are registered in `jacnb.lab.claims` before any run (registry digest
`{digest}`); the verdicts are those the chapters stored under `results/verdicts/` when they
ran{profile}. Nothing on this page is typed by hand.

**How a verdict is decided.** One seed fixes the training draw, the initialization and the batch
order for both arms of a comparison; per cell, the mean paired difference (or the per-seed slope,
for trends) over at least 3 seeds gets a Student-t 95 % interval. *Reproduced*: every cell's
interval lies on the claimed side (for "on par": inside the stated margin). *Not reproduced*:
some cell's interval (Bonferroni-widened over the cells) lies on the other side. Otherwise
*inconclusive*, with the number of seeds a decisive verdict would need at the measured spread.
Before that, the runs must pass the gates -- regime (the nets reach the paper's training fit),
factor (the chosen λ is interior to its grid, not a tie, chosen on seeds disjoint from the final
runs'), budget (enough SGD steps) -- or the verdict is *inconclusive* with the failed gate as its
reason. A factor is chosen on validation data only, among the factors whose selection nets reach
the regime's training fit (best mean validation accuracy; exact ties broken by validation
cross-entropy); a weight-decay grid that starts at 0 (no decay) has no edge below it.
A verdict on a stand-in dataset is shown with the stand-in's name and counted apart.
"""


def page_markdown(card: Scorecard) -> str:
    """The whole ``scorecard`` page as MyST markdown (prose + one raw-HTML block)."""
    profile = f" at profile `{card.profile}`" if card.profile else ""
    return _INTRO.format(digest=card.digest, profile=profile) + "\n" + render_html(card) + "\n"


def write_page(
    store_root: str | Path,
    path: str | Path,
    profile: str | None = None,
    link_prefix: str = "",
) -> Path:
    """Write the ``scorecard`` page (``path``, e.g. ``book/executed/scorecard.md``) from the
    verdicts stored under ``store_root``; atomically. Links are ``link_prefix +
    <chapter>.html#<claim anchor>`` (the chapters' pages sit beside the scorecard's)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = page_markdown(build(store_root, profile=profile, link_prefix=link_prefix))
    write_atomic(out, text.encode())
    return out
