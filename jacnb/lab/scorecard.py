"""The scorecard: every registered claim of both papers with its verdict, fed by the verdict
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
* :func:`render_html` -- the page read at a glance (one screen per paper at 1440 x 900): the
  counts, one forest plot of every decided or inconclusive claim's deciding interval against its
  threshold (:func:`forest_rows`, drawn by :func:`jacnb.lab.plotting.forest`), then one line per
  claim grouped by paper -- verdict badge, the claim in a few words, its id linked to the
  chapter section, ours with its interval, the paper's number, dataset (stand-in marked),
  seeds -- with the paper's sentence, rule, evidence, reason and gates collapsed under it;
  checks (:attr:`jacnb.lab.claims.Kind.CHECK`) in their own list;
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
from jacnb.lab.plotting import VERDICT_COLOURS, ForestRow, forest, png_data_uri
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
    "estimate",
    "low",
    "high",
    "threshold",
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


def _deciding_threshold(claim: Claim, v: Verdict) -> float:
    """The threshold of the verdict's deciding cell (a claim may set one per cell), natural
    units; the rule's threshold when the verdict names no cell."""
    for cell in v.cells:
        if cell.cell == v.deciding_cell and cell.threshold is not None:
            return float(cell.threshold)
    return float(claim.rule.threshold)


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
                "stand-in": v.stand_in,
                "n seeds": v.n_seeds,
                "seeds needed": v.seeds_needed,
                "verdict": v.verdict,
                "reason": v.reason,
                "evidence": v.evidence,
                "link": _link(c, link_prefix),
                "estimate": v.estimate,
                "low": v.low,
                "high": v.high,
                "threshold": _deciding_threshold(c, v),
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


def _e(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return html.escape(str(v))


def _badge(verdict: str) -> str:
    """The verdict as a coloured badge (colour and word)."""
    colour = VERDICT_COLOURS.get(verdict, "#6e7781")
    return f'<span class="jacnb-badge" style="background:{colour}">{_e(verdict)}</span>'


def _seeds(r: pd.Series) -> str:
    n = r["n seeds"]
    if n is None or pd.isna(n):
        return "–"
    seeds = f"{int(n)} seed{'s' if int(n) != 1 else ''}"
    if pd.notna(r["seeds needed"]) and r["seeds needed"] is not None:
        seeds += f" ({int(r['seeds needed'])} needed)"
    return seeds


def _ours(r: pd.Series, claim: Claim) -> str:
    """``estimate [low, high] unit`` (the unit once), or a dash."""
    est = r["estimate"]
    if est is None or pd.isna(est):
        return "–"
    st = claim.statistic

    def num(v: Any) -> str:
        if v is None or pd.isna(v):
            return "?"
        return f"{float(v):.3g}x" if st.kind == LOG_RATIO else f"{st.scale * float(v):+.3g}"

    text = num(est)
    if r["low"] is not None and pd.notna(r["low"]):
        text += f' <span class="jacnb-muted">[{num(r["low"])}, {num(r["high"])}]</span>'
    if st.unit and st.kind != LOG_RATIO:
        text += f" {_e(st.unit)}"
    return text


def gates_text(claim: Claim) -> str:
    """A claim's gates (regime, budget, factor, seeds) with their thresholds, in one line."""
    g = claim.gates
    parts = []
    if g.min_train_acc is not None:
        parts.append(f"regime: training accuracy ≥ {100 * g.min_train_acc:g} % ({g.regime_reason})")
    else:
        parts.append(f"regime: {g.regime_reason}")
    parts.append(f"budget: ≥ {g.min_steps:,} steps ({g.steps_reason})")
    if g.tuned_arms:
        parts.append(
            f"factor ({', '.join(g.tuned_arms)}): interior to its grid, no tie, chosen on "
            "validation data of selection seeds disjoint from the final runs'"
        )
    parts.append(f"seeds: ≥ {g.min_seeds} per cell")
    return "; ".join(parts)


def _line(r: pd.Series, claim: Claim) -> str:
    """One claim as a ``<details>``: the summary line (badge, the claim in a few words, the id
    linked to its section, ours with its interval, the paper's number, dataset, seeds) and,
    collapsed under it, the rule, evidence, reason and gates."""
    ours = _ours(r, claim)
    dataset = _e(r["dataset"]) or "–"
    if r["stand-in"]:
        dataset = f"<b>stand-in</b>: {dataset}"
    paper_no = _e(r["paper's number"])
    summary = (
        '<summary class="jacnb-line">'
        f"{_badge(r['verdict'])}"
        f'<span class="jacnb-what" title="{_e(r["statement"])}">{_e(r["statement"])}</span>'
        f'<span class="jacnb-id"><a href="{_e(r["link"])}"><code>{_e(r["claim"])}</code></a></span>'
        f'<span class="jacnb-ours" title="ours: estimate [95 % interval]">{ours}</span>'
        f'<span class="jacnb-paper" title="paper: {paper_no}">paper: {paper_no}</span>'
        f'<span class="jacnb-data" title="{_e(r["dataset"])}">{dataset}</span>'
        f'<span class="jacnb-seeds" title="paired seeds">{_seeds(r)}</span>'
        "</summary>"
    )
    extra = ""
    if "paper disagrees" in r and r["paper disagrees"]:
        extra = f"<p><b>The paper's own numbers:</b> {_e(r['paper disagrees'])}</p>"
    body = (
        '<div class="jacnb-detail">'
        f"<p><b>{_e(r['paper'])}, {_e(r['section'])}.</b> {_e(claim.quote)}</p>"
        f"<p><b>Rule:</b> {_e(claim.rule.text)}. <b>Paper's number:</b> {paper_no}.</p>"
        f"<p><b>Reason:</b> {_e(r['reason']) or '–'}</p>{extra}"
        f"<p><b>Evidence</b> (profile {_e(r['profile']) or '–'}): {_e(r['evidence']) or '–'}</p>"
        f"<p><b>Gates:</b> {_e(gates_text(claim))}</p>"
        "</div>"
    )
    return f'<details class="jacnb-claim">{summary}{body}</details>'


def _is_check(r: pd.Series) -> bool:
    return str(r.get("kind", "")) == Kind.CHECK.value


def forest_rows(card: Scorecard, claims: Sequence[Claim] = REGISTRY) -> list[ForestRow]:
    """The scorecard's forest plot: every decided or inconclusive claim (checks apart) with a
    deciding interval, against its threshold (that of the deciding cell), coloured by verdict."""
    by_id = {c.id: c for c in claims}
    rows = []
    for _, r in card.frame.iterrows():
        c = by_id[r["claim"]]
        if r["verdict"] == NOT_RUN or _is_check(r) or r["estimate"] is None:
            continue
        if any(pd.isna(r[k]) for k in ("estimate", "low", "high")):
            continue
        rows.append(
            ForestRow(
                label=_short(c.id),
                estimate=float(r["estimate"]),
                low=float(r["low"]),
                high=float(r["high"]),
                threshold=float(r["threshold"]),
                side=c.rule.side,
                colour=VERDICT_COLOURS[r["verdict"]],
                margin=c.rule.margin,
                log=c.statistic.kind == LOG_RATIO,
            )
        )
    return rows


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def forest_html(card: Scorecard) -> str:
    """The forest plot as an ``<img>`` (PNG data URI), or a sentence when nothing was decided."""
    rows = forest_rows(card)
    if not rows:
        return "<p>No claim has a deciding interval yet (nothing ran at this profile).</p>"
    legend = {v: VERDICT_COLOURS[v] for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)}
    fig = forest(rows, normalize=True, legend=legend)
    alt = (
        "Forest plot: each decided or inconclusive claim's deciding 95 % interval relative to its "
        "threshold, the claimed side to the right, coloured by verdict"
    )
    return (
        f'<figure class="jacnb-figure"><img src="{png_data_uri(fig)}" alt="{alt}">'
        "<figcaption>Every decided or inconclusive claim: the deciding cell's mean (dot) and 95 % "
        "interval (bar) relative to the claim's threshold (vertical line), oriented so that the "
        "claimed side is to the right and scaled per claim (the numbers are on the lines below; "
        "grey band: the margin of an 'on par' claim).</figcaption></figure>"
    )


_SECTIONS = (
    ("sokolic2017", True, "Sokolić et al. 2017 (arXiv 1605.08254)"),
    ("oymak2019", True, "Oymak et al. 2019 (arXiv 1906.05392)"),
    (None, False, "This book's own claims"),
)


def render_html(card: Scorecard, claims: Sequence[Claim] = REGISTRY) -> str:
    """The counts, the forest plot, one collapsible line per claim (grouped by paper) and the
    checks, as one HTML block without blank lines (so MyST passes it through as raw HTML)."""
    by_id = {c.id: c for c in claims}
    head = "".join(f"<th>{_badge(v)}</th>" for v in VERDICTS)
    count_rows = "".join(
        f"<tr><th>{_e(g)}</th>"
        + "".join(f"<td>{int(card.counts.loc[g, v])}</td>" for v in VERDICTS)
        + "</tr>"
        for g in card.counts.index
    )
    counts_html = (
        f'<table class="jacnb-counts"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{count_rows}</tbody></table>"
    )
    parts = [counts_html, forest_html(card), _HOW]
    checks = []
    for paper, paper_claim, title in _SECTIONS:
        lines = []
        for _, r in card.frame.iterrows():
            c = by_id[r["claim"]]
            if _is_check(r):
                if (paper, paper_claim) == (_SECTIONS[0][0], True):
                    checks.append(_line(r, c))
                continue
            if c.paper_claim != paper_claim or (paper is not None and c.paper != paper):
                continue
            lines.append(_line(r, c))
        if lines:
            parts.append(
                f'<p class="jacnb-group"><b>{_e(title)}</b> ({len(lines)} claims)</p>'
                f'<div class="jacnb-lines">{"".join(lines)}</div>'
            )
    if checks:
        parts.append(
            '<p class="jacnb-group"><b>Checks</b>: statements that hold by construction or by '
            "theorem, verified on every build, never counted above</p>"
            f'<div class="jacnb-lines">{"".join(checks)}</div>'
        )
    return '<div class="jacnb-scorecard">' + "".join(parts) + "</div>"


_INTRO = """\
# Scorecard

Every claim of the two papers that this book tests, with its verdict{profile}: the forest plot
first, then one line per claim (click a line for the paper's sentence, the rule, the evidence,
the reason and the gates; the claim's id links to the section that shows it). Claims and rules
were registered in `jacnb.lab.claims` before any run (registry digest `{digest}`); the verdicts
are those the chapters stored when they ran. Nothing on this page is typed by hand.
"""

_HOW = (
    "<details class=\"jacnb-how\"><summary><b>How a verdict is decided</b></summary>"
    "<p>One seed fixes the training draw, the initialization and the batch order for both arms "
    "of a comparison; per cell, the mean paired difference (or the per-seed slope, for trends) "
    "over at least 3 seeds gets a Student-t 95 % interval. <i>Reproduced</i>: every cell's "
    "interval lies on the claimed side (for \u201con par\u201d: inside the stated margin). "
    "<i>Not reproduced</i>: some cell's interval (Bonferroni-widened over the cells) lies on the "
    "other side. Otherwise <i>inconclusive</i>, with the number of seeds a decisive verdict would "
    "need with 80 % power if the observed effect and spread were the true ones. Before that, "
    "the runs must pass the gates \u2013 regime (the "
    "baseline arm's nets reach the paper's training fit, so the budget is adequate; 100 % for "
    "the smallest-training-score claims), factor (the chosen \u03bb is interior to its grid, "
    "not a tie, chosen on seeds disjoint from the final runs'), budget (enough SGD steps) \u2013 "
    "or the verdict is <i>inconclusive</i> with the failed gate as its reason. A factor is "
    "chosen on validation accuracy alone, every factor of its grid competing (best mean "
    "validation accuracy; exact ties broken by validation cross-entropy); a weight-decay grid "
    "that starts at 0 (no decay) has no edge below it. A "
    "verdict on a stand-in dataset is marked <b>stand-in</b> and counted apart.</p></details>"
)


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
