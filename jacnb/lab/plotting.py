"""Figures of the book (matplotlib). Every figure function takes the data it draws and an
optional caption line stating profile, dataset, sizes and seeds, which it puts under the title.

The book's figure style is set here, once, on import (:func:`use_book_style`): seaborn's theme,
sizes, fonts and a resolution high enough that a figure scaled to the page's text column (the
book's CSS, ``book/_static/jacnb.css``) stays sharp."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from jacnb.core.jacobian import network_output
from jacnb.lab import stats
from jacnb.lab.claims import EQUIVALENT, LOG_RATIO, Claim
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

#: rcParams of the book on top of seaborn's theme: figures are drawn at 150 dpi (the page scales
#: them to its column width), default size 8 x 4.5 in, fonts readable at that width.
BOOK_RC: dict[str, object] = {
    "figure.dpi": 150,
    "savefig.dpi": 150,
    "figure.figsize": (8.0, 4.5),
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
}


#: The colour of each verdict on the scorecard, the chapters' claim cards and their figures.
VERDICT_COLOURS = {
    REPRODUCED: "#1a7f37",
    NOT_REPRODUCED: "#cf222e",
    INCONCLUSIVE: "#9a6700",
    NOT_RUN: "#6e7781",
}
#: The colour of a cell by where its interval lies (:data:`jacnb.lab.stats.CLAIMED` / ``OTHER`` /
#: ``STRADDLES``): the colour of the verdict that outcome leads to.
OUTCOME_COLOURS = {
    stats.CLAIMED: VERDICT_COLOURS[REPRODUCED],
    stats.OTHER: VERDICT_COLOURS[NOT_REPRODUCED],
    stats.STRADDLES: VERDICT_COLOURS[INCONCLUSIVE],
}


def use_book_style() -> None:
    """Apply the book's figure style: ``seaborn.set_theme`` (white grid, colour-blind safe
    palette) and :data:`BOOK_RC`. Called on import of :mod:`jacnb.plots`."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(BOOK_RC)


use_book_style()


def no_automatic_figures() -> None:
    """In a Jupyter kernel, a figure appears only where :func:`show` puts it.

    The inline backend displays every open figure at the end of the cell that drew it; a
    chapter draws its figures in its first cell (``result.figures()``) and shows each under its
    section, so every figure appeared twice. This switches that end-of-cell display off (the
    backend is loaded first, since it registers the display when it loads). Outside a kernel it
    does nothing. Called on import."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    try:
        from matplotlib_inline import backend_inline
    except ImportError:
        return
    plt.get_backend()  # resolve (and load) the backend
    try:
        ip.events.unregister("post_execute", backend_inline.flush_figures)
    except ValueError:
        pass  # not registered: another backend


no_automatic_figures()


def stamp(fig: Figure, provenance: str | None) -> None:
    """Put the provenance line (profile, dataset, sizes, seeds) under the figure, wrapped at the
    figure's width (a longer line would widen the saved image and shrink everything in it)."""
    if provenance:
        fig.text(
            0.5, -0.02, provenance, ha="center", va="top", fontsize=8, color="0.35", wrap=True
        )


#: Width of the book's text column in CSS pixels at a 1440 px wide window (measured by
#: ``tests/test_browser.py``); every figure is shown at this width.
COLUMN_PX = 790
#: The smallest text a figure may show on the page, in CSS pixels at :data:`COLUMN_PX`.
MIN_TEXT_PX = 9.0
#: PNG text keys (read back by ``tests/test_browser.py``): the smallest font of the figure in
#: points, and the resolution it was saved at.
PNG_MIN_FONT, PNG_DPI = "jacnb:min_font_pt", "jacnb:dpi"


def _texts(fig: Figure) -> list:
    from matplotlib.text import Text

    return [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.figure is fig
    ]


def _saved_width_in(fig: Figure) -> float:
    """Width in inches of ``fig`` saved with ``bbox_inches="tight"``."""
    if not hasattr(fig.canvas, "get_renderer"):  # a figure without a drawing canvas (Figure())
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    pad = float(plt.rcParams["savefig.pad_inches"])  # bbox_inches="tight" adds it on each side
    return float(fig.get_tightbbox(fig.canvas.get_renderer()).width) + 2 * pad


def fit_text(fig: Figure, column_px: float = COLUMN_PX, min_px: float = MIN_TEXT_PX) -> float:
    """Make every text of ``fig`` at least ``min_px`` CSS pixels tall when the saved figure
    (``bbox_inches="tight"``) is scaled to ``column_px``: fonts are enlarged together (their
    ratios kept) when the figure is too wide for its smallest font, then the layout is redone
    (``tight_layout``; a figure with constrained layout redoes its own at the next draw).
    Returns the smallest font size in points afterwards."""
    import warnings

    from matplotlib.layout_engine import ConstrainedLayoutEngine

    texts = _texts(fig)
    if not texts:
        return float("inf")
    for _ in range(6):  # larger labels widen the figure a little: settle in a few rounds
        width = _saved_width_in(fig)
        smallest = min(t.get_fontsize() for t in texts)
        needed = min_px * 72.0 * width / column_px
        if smallest >= needed * 0.995:
            break
        factor = needed / smallest * 1.04
        for t in texts:
            t.set_fontsize(t.get_fontsize() * factor)
        if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
            continue  # lays itself out again at the next draw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig.tight_layout()
    return min(t.get_fontsize() for t in texts)


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` fitted (:func:`fit_text`) and saved as PNG (tight box) with its smallest font and
    resolution as PNG text, then closed."""
    import io

    smallest = fit_text(fig)
    buf = io.BytesIO()
    meta = {PNG_MIN_FONT: f"{smallest:.3f}", PNG_DPI: str(dpi)}
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return buf.getvalue()


def show(fig: Figure, dpi: int = 100) -> None:
    """Display ``fig`` in the notebook output as a PNG (:func:`png_bytes`: text at least
    :data:`MIN_TEXT_PX` on the page) and close it.

    Works whatever the matplotlib backend: ``jacnb.book`` runs the notebooks with
    ``MPLBACKEND=Agg``, under which a figure is not shown at the end of a cell (and ``display``
    of a figure gives only its text repr); closing it avoids a second copy under the inline
    backend. ``bbox_inches="tight"`` keeps the provenance line printed under the axes.
    """
    from IPython.display import Image, display

    display(Image(png_bytes(fig, dpi)))


def t_errorbar(values: Sequence[float]) -> tuple[float, float]:
    """Seaborn ``errorbar=`` callable: the 95 % Student-t interval of the mean over seeds
    (:func:`jacnb.lab.stats.t_interval`, as :mod:`jacnb.lab.gates` computes it, but here of one
    arm's values: a description of the runs; a paired claim is decided on the interval of the
    per-seed difference, which :func:`cell_panel` draws); the mean itself for a single seed."""
    from jacnb.lab.stats import t_interval

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        m = float(x.mean()) if x.size else float("nan")
        return m, m
    iv = t_interval(x, 0.95)
    return iv.low, iv.high


def pick_figure(figures: Mapping[str, Figure], name: str, missing: str) -> Figure:
    """``figures[name]``, closing the others (so a notebook cell shows only the one asked for),
    or a one-line figure saying ``missing`` when there is none (a table that did not run).
    The chapters' ``figure(name)`` (notebooks ``04_convolutional``, ``05_resnet``)."""
    for other, fig in figures.items():
        if other != name:
            plt.close(fig)
    if name in figures:
        return figures[name]
    fig, ax = plt.subplots(figsize=(8.0, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, missing, ha="center", va="center")
    return fig


def decision_regions(
    model: nn.Module, x: Tensor, y: Tensor, provenance: str | None = None, grid: int = 300
) -> Figure:
    """Fig. 2: decision regions of a 2-D classifier in the input space (a) and the samples and
    decision boundary ``z_1 = z_2`` in the output (logit) space (b)."""
    fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(10, 4.2))
    lo = x.min(0).values - 0.5
    hi = x.max(0).values + 0.5
    gx, gy = torch.meshgrid(
        torch.linspace(float(lo[0]), float(hi[0]), grid),
        torch.linspace(float(lo[1]), float(hi[1]), grid),
        indexing="xy",
    )
    with torch.no_grad():
        pred = model(torch.stack([gx.flatten(), gy.flatten()], 1)).argmax(1).reshape(grid, grid)
        z = network_output(model, x, "logits")
    ax_in.contourf(gx, gy, pred, alpha=0.25, cmap="coolwarm", levels=[-0.5, 0.5, 1.5])
    ax_in.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=8, edgecolors="none")
    ax_in.set(title="(a) input space", xlabel="$x_1$", ylabel="$x_2$")
    ax_out.scatter(z[:, 0], z[:, 1], c=y, cmap="coolwarm", s=8, edgecolors="none")
    span = [float(z.min()), float(z.max())]
    ax_out.plot(span, span, "k--", lw=1, label="decision boundary $z_1 = z_2$")
    ax_out.set(title="(b) output space (logits)", xlabel="$z_1$", ylabel="$z_2$")
    ax_out.legend(loc="best", fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def margin_bounds(df: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Theorem 4 per sample: the bounds and the measured margin, samples sorted by the latter."""
    order = np.argsort(df["measured"].to_numpy())
    fig, ax = plt.subplots(figsize=(8, 4.2))
    styles = {
        "measured": ("k", "-", "measured margin (upper bound on $\\gamma^d$)"),
        "gamma1_est": ("tab:green", ":", "$\\gamma_1$ (estimate, eq. 34)"),
        "gamma2_est": ("tab:blue", "--", "$\\gamma_2$ (estimate, eq. 35)"),
        "gamma3": ("tab:orange", "-", "$\\gamma_3$ (eq. 36)"),
        "gamma4": ("tab:red", "-", "$\\gamma_4$ (eq. 37)"),
    }
    for col, (color, ls, label) in styles.items():
        ax.plot(df[col].to_numpy()[order], color=color, ls=ls, label=label)
    ax.set_yscale("log")
    ax.set(xlabel="training sample (sorted by measured margin)", ylabel="distance in input space")
    ax.set_title("Classification margin and its lower bounds (Theorem 4)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def ge_bounds(
    df: pd.DataFrame, fixed: Mapping[str, float], provenance: str | None = None
) -> Figure:
    """Corollary 1 (eq. 13): the GE bound against m, gamma and k, the other two held fixed."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (var, others) in zip(
        axes, [("m", ("gamma", "k")), ("gamma", ("m", "k")), ("k", ("m", "gamma"))], strict=True
    ):
        sel = df
        for o in others:
            sel = sel[np.isclose(sel[o], fixed[o])]
        ax.plot(sel[var], sel["GE bound"], "o-")
        ax.set(xlabel=var, ylabel="GE bound (eq. 13)", yscale="log")
        ax.set_title(", ".join(f"{o}={fixed[o]:g}" for o in others), fontsize=9)
        if var == "m":
            ax.set_xscale("log")
    fig.suptitle("Corollary 1: the bound falls as $1/\\sqrt{m}$ and as $\\gamma^{-k/2}$")
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def norm_growth(df: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Sec. IV example: product of spectral vs Frobenius norms of orthonormal-row layers."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m, sel in df.groupby("M"):
        ax.plot(sel["L"], sel["prod ||W||_F"], "o-", label=f"Frobenius, M={m}")
    ax.plot(df["L"].unique(), np.ones(df["L"].nunique()), "k--", label="spectral (all M)")
    ax.set(xlabel="depth L", ylabel="product of norms", yscale="log")
    ax.set_title("Orthonormal rows: $\\prod\\|W\\|_2 = 1$, $\\prod\\|W\\|_F = M^{L/2}$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


# ---------------------------------------------------------------------------------------------
# Forest plots of verdicts: the scorecard's (one row per claim) and the chapters' claim cards
# (one row per cell of a claim)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForestRow:
    """One interval of a forest plot, in the statistic's natural units (a ratio for a log-ratio
    claim, ``log=True``). ``side``: the claimed side of ``threshold`` (``"greater"``, ``"less"``,
    ``"equivalent"`` with ``margin``)."""

    label: str
    estimate: float
    low: float
    high: float
    threshold: float
    side: str
    colour: str
    margin: float | None = None
    log: bool = False


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _oriented(row: ForestRow) -> tuple[float, float, float, float]:
    """``(estimate, low, high, margin)`` relative to the threshold, oriented so that the claimed
    side is to the right (equivalence: the margin band around 0), scaled to [-1, 1]."""
    f = math.log if row.log else float
    sign = -1.0 if row.side == "less" else 1.0
    thr = f(row.threshold)
    est, lo, hi = (sign * (f(v) - thr) for v in (row.estimate, row.low, row.high))
    lo, hi = min(lo, hi), max(lo, hi)
    margin = abs(row.margin or 0.0)
    scale = 1.1 * max(abs(lo), abs(hi), margin, 1e-12)
    return est / scale, lo / scale, hi / scale, margin / scale


def forest(
    rows: list[ForestRow],
    *,
    normalize: bool,
    xlabel: str = "",
    scale: float = 1.0,
    width: float = 7.5,
    legend: Mapping[str, str] | None = None,
) -> Figure:
    """A forest plot: each row's interval (bar), estimate (dot) and threshold.

    ``normalize=True`` (the scorecard, claims in different units): each row is drawn relative
    to its own threshold (the vertical line at 0), oriented so that the claimed side is to the
    right and scaled so that its interval spans at most the plot's half-width; the numbers are
    on the scorecard's lines. ``normalize=False`` (a chapter's claim card, the cells of one claim
    in one unit): the values times ``scale`` on a common axis (logarithmic for ratios), each
    row's threshold as a tick and, for an equivalence claim, its margin band. Rows without an
    interval (fewer than two seeds) show only the estimate. ``legend``: verdict -> colour.
    """
    pitch = 0.2 if normalize else 0.25
    height = (0.55 if normalize else 0.95) + pitch * max(len(rows), 1) + (0.3 if legend else 0.0)
    fig, ax = plt.subplots(figsize=(width, height))
    ys = np.arange(len(rows))[::-1]
    for y, row in zip(ys, rows, strict=True):
        if normalize:
            if not _finite(row.estimate, row.threshold):
                continue
            has_iv = _finite(row.low, row.high)
            est, lo, hi, m = _oriented(
                row
                if has_iv
                else ForestRow(**{**row.__dict__, "low": row.estimate, "high": row.estimate})
            )
            if m:
                ax.fill_betweenx([y - 0.4, y + 0.4], -m, m, color="0.85", lw=0)
        else:
            k = 1.0 if row.log else scale
            est, lo, hi, thr = (
                k * v if v is not None else math.nan
                for v in (row.estimate, row.low, row.high, row.threshold)
            )
            has_iv = _finite(lo, hi)
            if row.margin:
                ax.fill_betweenx(
                    [y - 0.4, y + 0.4],
                    thr - k * row.margin,
                    thr + k * row.margin,
                    color="0.85",
                    lw=0,
                )
            ax.plot([thr, thr], [y - 0.4, y + 0.4], color="0.2", lw=1.2)
        if has_iv:
            ax.plot([lo, hi], [y, y], color=row.colour, lw=3, solid_capstyle="butt")
        ax.plot([est], [y], "o", color=row.colour, ms=5, mec="white", mew=0.6)
    if normalize:
        ax.axvline(0.0, color="0.2", lw=1.2)
        ax.set_xlim(-1.05, 1.05)
        ax.set_xticks([-1, 0, 1], ["other side", "threshold", "claimed side"])
    else:
        if rows and rows[0].log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel, fontsize=10)
    ax.set_yticks(ys, [r.label for r in rows], fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.grid(axis="y", visible=False)
    if legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=c, lw=3, label=v) for v, c in legend.items()]
        ax.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=len(handles),
            frameon=False,
            fontsize=9,
        )
    fig.tight_layout()
    return fig


def png_data_uri(fig: Figure, dpi: int = 200) -> str:
    """``fig`` as a ``data:image/png;base64,...`` URI (for raw-HTML pages: the scorecard, the
    claim cards), then closed. Drawn at ``dpi``; the page scales it to the column's width."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode()


# ---------------------------------------------------------------------------------------------
# What decided: a claim's per-cell statistic as the gates computed it (the chapters' figures)
# ---------------------------------------------------------------------------------------------


def note_figure(text: str, width: float = 8.0) -> Figure:
    """A one-line figure saying ``text`` (a figure whose data did not run: said, not drawn as
    an empty panel)."""
    fig, ax = plt.subplots(figsize=(width, 0.8))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
    return fig


#: Above this many cells a panel's cells are labelled by their values only ("1x" for
#: ``M=1x``, the diverged count without "div."), the x label saying what they are.
COMPACT_CELLS = 12


def _cell_positions(cells: pd.DataFrame, keys: Sequence[str]) -> list[float]:
    """x of each cell (in the table's order): one apart, a gap where the first of two or more
    keys changes (cells grouped by, e.g., depth)."""
    xs: list[float] = []
    x, prev = 0.0, None
    for _, r in cells.iterrows():
        group = r[keys[0]] if len(keys) > 1 else None
        if xs:
            x += 1.0 + (0.6 if group != prev else 0.0)
        xs.append(x)
        prev = group
    return xs


def _visible_range(
    lows: Sequence[float], highs: Sequence[float], always: Sequence[float]
) -> tuple[float, float]:
    """The y range of a cell panel: every value of ``always`` (estimates, thresholds, margins)
    and every interval except those more than 6 times wider than the median interval (one
    cell's huge interval, e.g. a diverged run counted at chance, would flatten the others; such
    a bar is clipped at the edge and its bound written there)."""
    widths = [h - lo for lo, h in zip(lows, highs, strict=True) if _finite(lo, h)]
    cap = 6.0 * float(np.median(widths)) if widths else math.inf
    vals = [v for v in always if _finite(v)]
    for lo, h in zip(lows, highs, strict=True):
        if _finite(lo, h) and (h - lo) <= max(cap, 1e-12):
            vals += [lo, h]
    lo, hi = (min(vals), max(vals)) if vals else (-1.0, 1.0)
    pad = 0.12 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
    return lo - pad, hi + pad


def _draw_cell(
    ax: plt.Axes,
    x: float,
    interval: tuple[float, float],
    threshold: float,
    band: tuple[float, float] | None,
    colour: str,
    clip: tuple[float, float] | None,
) -> None:
    """One cell of :func:`cell_panel`: the margin ``band`` (grey, if any), the threshold (black
    tick), the interval (bar in ``colour``) cut to ``clip`` with a triangle and the bound
    written where it is cut."""
    half = 0.38
    if band is not None:
        ax.fill_between([x - half, x + half], *band, color="0.88", lw=0, zorder=0)
    ax.plot([x - half, x + half], [threshold, threshold], color="0.15", lw=1.4, zorder=1)
    lo, hi = interval
    if not _finite(lo, hi):
        return
    c_lo, c_hi = (max(lo, clip[0]), min(hi, clip[1])) if clip else (lo, hi)
    ax.plot([x, x], [c_lo, c_hi], color=colour, lw=3, solid_capstyle="butt", zorder=2)
    for bound, edge, marker, va in ((lo, c_lo, "v", "bottom"), (hi, c_hi, "^", "top")):
        if bound != edge:
            ax.plot([x], [edge], marker=marker, color=colour, ms=7, zorder=3)
            ax.annotate(f"{bound:.3g}", (x, edge), xytext=(5, 0), textcoords="offset points",
                        va=va, fontsize=8, color=colour)


def _tick_label(
    row: Mapping[str, object], shown: Sequence[str], fmt: Mapping[str, str], compact: bool
) -> str:
    """A cell's tick label: its keys (``fmt``; values alone when ``compact``) and, on the last
    line, how many of its runs diverged."""
    if compact:
        return "\n".join([*(str(row[k]) for k in shown), str(int(row["diverged"]))])
    label = "\n".join(fmt.get(k, f"{k}={{}}").format(row[k]) for k in shown) or "all"
    return f"{label}\n{int(row['diverged'])} div."


def _group_labels(ax: plt.Axes, xs: Sequence[float], groups: Sequence[object], fmt: str) -> None:
    """Name each group of cells (the first cell key, e.g. depth) once, above the panel."""
    at: dict[object, list[float]] = {}
    for x, g in zip(xs, groups, strict=True):
        at.setdefault(g, []).append(x)
    top = ax.secondary_xaxis("top")
    top.set_xticks([float(np.mean(v)) for v in at.values()], [fmt.format(g) for g in at],
                   fontsize=9)
    top.tick_params(length=0, pad=1)


def cell_panel(
    ax: plt.Axes,
    claim: Claim,
    cells: pd.DataFrame,
    *,
    key_format: Mapping[str, str] | None = None,
    ylabel: str | None = None,
    headroom: float = 0.0,
) -> None:
    """Draw one claim's cells as its rule saw them: per cell the mean of the per-seed statistic
    (dot) and its t-interval at the rule's level (bar), coloured by the cell's outcome
    (:data:`OUTCOME_COLOURS`); the threshold (black tick; an equivalence claim's margin as a
    grey band); under each cell its keys and how many of its runs diverged (``"1 div."``).

    ``cells``: :func:`jacnb.lab.gates.cell_table` of ``claim`` (nothing is recomputed here), in
    the statistic's units; drawn times ``claim.statistic.scale`` (a log-ratio claim's cells as
    ratios on a log axis). With two or more cell keys the cells are grouped by the first, named
    once per group above the panel. A bar far wider than the others is clipped at the panel's
    edge, with a triangle and its bound written there (:func:`_visible_range`). ``key_format``:
    per cell key a format for its value (``{"depth": "L={}"}``; default ``"key=value"``; above
    :data:`COMPACT_CELLS` cells the values alone);
    ``headroom``: a fraction of the height left free at the top (for a legend). The estimates
    are one scatter with gid ``"cell-estimates"`` (what a test reads back)."""
    st, rule = claim.statistic, claim.rule
    keys = [k for k in claim.cell_keys if k in cells.columns]
    if st.along and st.along in cells.columns and st.along not in keys:
        keys.append(str(st.along))
    log = st.kind == LOG_RATIO

    def y(v: float) -> float:
        v = float(v)
        if not math.isfinite(v):
            return math.nan
        return math.exp(v) if log else st.scale * v

    fmt = dict(key_format or {})
    shown = keys[1:] if len(keys) > 1 else keys
    compact = len(cells) > COMPACT_CELLS
    xs = _cell_positions(cells, keys)
    recs = cells.to_dict("records")
    est = [y(r["estimate"]) for r in recs]
    lows = [y(r["low"]) for r in recs]
    highs = [y(r["high"]) for r in recs]
    thrs = [y(r["threshold"]) for r in recs]
    m = float(rule.margin or 0.0) if rule.side == EQUIVALENT else 0.0
    bands = [
        (math.exp(r["threshold"] - m), math.exp(r["threshold"] + m))
        if log
        else (t - st.scale * m, t + st.scale * m)
        for r, t in zip(recs, thrs, strict=True)
    ]
    lim = clip = None
    if not log:
        always = [*est, *thrs, *(b for band in bands for b in band)]
        lo_v, hi_v = _visible_range(lows, highs, always)
        clip = (lo_v, hi_v)  # a clipped bar ends below the headroom (the legend's place)
        lim = (lo_v, hi_v + headroom / max(1e-9, 1 - headroom) * (hi_v - lo_v))
    colours = [OUTCOME_COLOURS.get(str(r["outcome"]), VERDICT_COLOURS[NOT_RUN]) for r in recs]
    for x, lo, hi, thr, band, colour in zip(xs, lows, highs, thrs, bands, colours, strict=True):
        _draw_cell(ax, x, (lo, hi), thr, band if m else None, colour, clip)
    ticks = [_tick_label(r, shown, fmt, compact) for r in recs]
    if xs:
        ax.scatter(xs, est, c=colours, s=36, edgecolors="white", linewidths=0.6, zorder=4,
                   gid="cell-estimates")
        ax.set_xlim(xs[0] - 0.7, xs[-1] + 0.7)
    if log:
        ax.set_yscale("log")
    elif lim:
        ax.set_ylim(*lim)
    ax.set_xticks(xs, ticks, fontsize=8)
    ax.grid(axis="x", visible=False)
    if len(keys) > 1 and xs:
        _group_labels(ax, xs, [r[keys[0]] for r in recs], fmt.get(keys[0], f"{keys[0]}={{}}"))
    if compact:
        ax.set_xlabel(f"{', '.join(shown)}; under it: diverged runs", fontsize=8)
    unit = f" [{st.unit}]" if st.unit and not log else (" (ratio)" if log else "")
    ax.set_ylabel(ylabel if ylabel is not None else f"{st.description}{unit}", fontsize=9)


def outcome_handles(margin: bool = False) -> list:
    """Legend handles of :func:`cell_panel`: the outcome colours, the threshold, the margin."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color=c, marker="o", lw=3, label=o) for o, c in OUTCOME_COLOURS.items()
    ]
    handles.append(Line2D([], [], color="0.15", lw=1.4, label="threshold"))
    if margin:
        handles.append(Patch(color="0.88", label="equivalence margin"))
    return handles
