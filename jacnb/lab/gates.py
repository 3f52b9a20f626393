"""Gates and the decision: from a tidy frame of paired runs to a :class:`Verdict`.

A verdict is *earned*: before a registered claim (:mod:`jacnb.lab.claims`) is judged by its rule,
its runs must pass four gates, and a failed gate makes the verdict ``inconclusive`` with the gate
named as the reason:

1. **regime** -- the baseline arm's nets (every net of an unpaired claim; :func:`fit_arms`)
   reach the claim's training fit (:attr:`GateSpec.min_train_acc`, 99 % where Sokolic et al.
   train to fit; 100 % for the claims on the smallest training score, which is negative once a
   training sample is misclassified): the budget is adequate, whatever a regularizer does;
2. **factor** -- for every arm whose lambda is chosen on validation data (Sec. VI-A1: "chosen on a
   separate validation set"; the rule is :mod:`jacnb.lab.selection`), the chosen lambda is
   interior to its grid (:func:`edge_reason`: a lower edge of exactly 0, no regularization, has
   nothing below it and is not an edge), was not chosen by a tie (one that validation
   cross-entropy could not break), was chosen on seeds disjoint from the final runs' seeds, in
   selection runs that meet the step budget;
3. **budget** -- every run has at least :attr:`GateSpec.min_steps` SGD steps;
4. **seeds** -- every cell has at least :attr:`GateSpec.min_seeds` (3) paired seeds;
5. **divergence** -- no run is silently dropped. A run whose ``status`` is not ``"ok"``
   (diverged) is counted in its cell (``cell_table``'s ``diverged`` column, the evidence, the
   :class:`~jacnb.lab.verdicts.CellStat`) and treated as the claim registers
   (:attr:`GateSpec.diverged_value`): as a failure of its arm, its metric set to that value
   (chance accuracy), or -- ``None`` -- its cell is withheld and the gate fails (inconclusive).
   A diverged run of an arm the regime gate reads counts as not fitting (the budget or the
   learning rate was inadequate for the baseline).

A claim tested on a stand-in dataset (e.g. Fashion-MNIST for CIFAR-10) keeps its verdict but is
named as a stand-in (:func:`stand_in_label`) and counted apart on the scorecard.

The runs frame (one row per trained net / timed repetition)
-----------------------------------------------------------
========================  =================================================================
column                    meaning
========================  =================================================================
``seed``                  final-run seed; fixes training draw, init, batch order for all arms
``arm``                   the claim's ``statistic.arms`` names (paired claims only)
*cell keys*               ``claim.cell_keys`` (e.g. ``depth``, ``n_train``)
*along*                   ``claim.statistic.along`` for trend / gain claims (e.g. ``depth``)
*metric*                  ``claim.statistic.metric`` (e.g. ``test_acc``, fractions in [0, 1])
``train_acc``             training accuracy reached (if ``gates.min_train_acc`` is set)
``steps``                 SGD steps of the run (if ``gates.min_steps > 0``)
``lam``, ``lam_grid``     chosen factor and the grid it was chosen from (tuned arms)
``chosen_by_tie``         True when the selection's best validation score was tied (tuned arms)
                          on accuracy and on cross-entropy (:mod:`jacnb.lab.selection`)
``selection_seeds``       the seeds of the selection runs (tuned arms; list of ints)
``selection_steps``       SGD steps of the selection runs (tuned arms, if ``min_steps > 0``)
``status``                optional: ``"ok"`` or another word (``"diverged"``) for a run that
                          did not finish; such a row's metrics may be NaN
========================  =================================================================

Extra columns and rows of other arms are ignored; rows outside ``claim.cell_filter`` are dropped.

Used by every chapter (``jacnb.chapters.*``, notebooks ``02``-``07``); the scorecard
(:mod:`jacnb.lab.scorecard`) gathers the verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jacnb.lab import stats
from jacnb.lab.claims import (
    CLAIMS,
    DIFFERENCE,
    EQUIVALENT,
    GAIN_CONTRAST,
    LOG_RATIO,
    SLOPE,
    VALUE,
    Claim,
    get_claim,
)
from jacnb.lab.datasets import with_stand_in
from jacnb.lab.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    CellStat,
    Verdict,
)

__all__ = [
    "SELECTION_SEED_BASE",
    "GateResult",
    "registered",
    "required_columns",
    "prepare_runs",
    "per_seed",
    "cell_table",
    "fit_arms",
    "regime_gate",
    "edge_reason",
    "factor_gate",
    "budget_gate",
    "seeds_gate",
    "diverged_gate",
    "diverged_mask",
    "check_gates",
    "decide",
    "not_run",
    "stand_in_label",
    "selection_seeds",
    "check_disjoint",
]

#: Selection runs use seeds from here on; final runs use small seeds (0, 1, 2, ...).
SELECTION_SEED_BASE = 10_000



@dataclass(frozen=True)
class GateResult:
    """One gate's outcome; ``detail`` says what was measured against what."""

    name: str
    passed: bool
    detail: str


# ---------------------------------------------------------------------------------------------
# Claims, stand-ins, seeds
# ---------------------------------------------------------------------------------------------


def registered(claim: Claim | str) -> Claim:
    """The registered claim (by id or object). A claim object that is not *the* registered one
    -- e.g. one altered with :func:`dataclasses.replace` -- is refused: chapters judge claims
    only by the rules written down before the runs."""
    if isinstance(claim, str):
        return get_claim(claim)
    reg = CLAIMS.get(claim.id)
    if reg is None or reg != claim:
        raise ValueError(f"claim {claim.id!r} is not the registered one; use its id")
    return reg


def stand_in_label(used: str, paper_dataset: str) -> str:
    """How a stand-in is named: ``"Fashion-MNIST (stand-in for CIFAR-10)"``
    (:func:`jacnb.lab.datasets.with_stand_in`, the one spelling). A verdict says whether it is
    on a stand-in by :attr:`Verdict.stand_in`, never by its label."""
    return with_stand_in(used, paper_dataset)


def selection_seeds(final_seeds: Iterable[int], n: int | None = None) -> tuple[int, ...]:
    """Seeds for the lambda-selection runs, disjoint from ``final_seeds``: ``n`` (default: as many
    as final seeds) consecutive seeds from :data:`SELECTION_SEED_BASE`. Final seeds must lie
    below that base (the range above it is reserved for selection), else ``ValueError``."""
    final = sorted({int(s) for s in final_seeds})
    if final and final[-1] >= SELECTION_SEED_BASE:
        raise ValueError(
            f"final seeds must be < {SELECTION_SEED_BASE} (reserved for selection): {final}"
        )
    count = len(final) if n is None else int(n)
    if count < 1:
        raise ValueError("need at least one selection seed")
    out = tuple(range(SELECTION_SEED_BASE, SELECTION_SEED_BASE + count))
    check_disjoint(out, final)
    return out


def check_disjoint(selection: Iterable[int], final: Iterable[int]) -> None:
    """Raise ``ValueError`` if a selection seed is also a final seed (lambda is chosen on seeds
    disjoint from the final runs')."""
    both = sorted({int(s) for s in selection} & {int(s) for s in final})
    if both:
        raise ValueError(f"selection and final runs share seeds {both}")


# ---------------------------------------------------------------------------------------------
# The runs frame -> per-seed statistic -> per-cell intervals
# ---------------------------------------------------------------------------------------------


def _cell_cols(claim: Claim) -> list[str]:
    cols = list(claim.cell_keys)
    if claim.statistic.kind == GAIN_CONTRAST:
        cols.append(str(claim.statistic.along))
    return cols


def _require(frame: pd.DataFrame, cols: Iterable[str], why: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"runs frame lacks columns {missing} ({why})")


def required_columns(claim: Claim | str) -> tuple[str, ...]:
    """The columns :func:`decide` needs in the runs frame of ``claim`` (for wiring a chapter):
    ``seed``, the metric, the cell keys, ``arm`` and ``along`` where the statistic has them, and
    the gate columns the claim's gates read."""
    c = registered(claim)
    st, g = c.statistic, c.gates
    cols = ["seed", *c.cell_keys]
    cols += [str(st.along)] if st.along else []
    cols += ["arm"] if st.arms else []
    cols.append(st.metric)
    cols += ["train_acc"] if g.min_train_acc is not None else []
    cols += ["steps"] if g.min_steps > 0 else []
    if g.tuned_arms:
        cols += ["lam", "lam_grid", "chosen_by_tie", "selection_seeds"]
        cols += ["selection_steps"] if g.min_steps > 0 else []
    cols += [col for col, _ in c.cell_filter if col not in cols]
    return tuple(dict.fromkeys(cols))


def prepare_runs(claim: Claim | str, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` the claim judges: its arms, inside its ``cell_filter``. Raises
    ``ValueError`` for missing columns or for two rows of the same (cell, arm, along, seed)."""
    c = registered(claim)
    st = c.statistic
    base = ["seed", st.metric, *c.cell_keys]
    if st.arms:
        base.append("arm")
    if st.along:
        base.append(st.along)
    _require(runs, base, f"claim {c.id}")
    df = runs
    if st.arms:
        df = df[df["arm"].isin(st.arms)]
    for col, values in c.cell_filter:
        _require(df, [col], f"cell filter of {c.id}")
        df = df[df[col].isin(list(values))]
    key = [k for k in base if k != st.metric]
    dup = df.duplicated(subset=key, keep=False)
    if dup.any():
        raise ValueError(f"{c.id}: several runs for one (cell, arm, seed): {df[dup][key].head()}")
    return df.reset_index(drop=True)


def diverged_mask(df: pd.DataFrame) -> pd.Series:
    """True for the rows of a runs frame whose ``status`` says they did not finish (any value but
    ``"ok"``; a frame without ``status`` has none)."""
    if "status" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["status"].fillna("ok").astype(str) != "ok"


def _finished(df: pd.DataFrame) -> pd.DataFrame:
    return df[~diverged_mask(df)]


def _scored(claim: Claim, df: pd.DataFrame) -> pd.DataFrame:
    """The rows the statistic is computed from: finished runs, and diverged ones with their
    metric set to :attr:`GateSpec.diverged_value` when the claim registers one (else dropped:
    the divergence gate withholds their cells)."""
    bad = diverged_mask(df)
    if not bad.any():
        return df
    value = claim.gates.diverged_value
    if value is None:
        return df[~bad]
    out = df.copy()
    out[claim.statistic.metric] = out[claim.statistic.metric].astype(float)
    out.loc[bad, claim.statistic.metric] = float(value)
    return out


def _transform(values: pd.Series, log: bool, what: str) -> pd.Series:
    v = values.astype(float)
    if log:
        if (v <= 0).any():
            raise ValueError(f"log of non-positive {what}")
        return np.log(v)
    return v


def _paired(claim: Claim, df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Per (cell[, along], seed): treatment minus baseline of the transformed metric ``_y`` (the
    log ratio for :data:`LOG_RATIO`), column ``value``; and the number of unpaired rows dropped."""
    st = claim.statistic
    base, treat = st.arms
    index = [*claim.cell_keys, *([st.along] if st.kind == GAIN_CONTRAST else []), "seed"]
    wide = df.pivot_table(index=index, columns="arm", values="_y", aggfunc="first")
    for arm in (base, treat):
        if arm not in wide.columns:
            wide[arm] = np.nan
    paired = wide[[base, treat]].dropna()
    dropped = len(wide) - len(paired)
    if st.kind == LOG_RATIO:
        if (paired <= 0).any().any():
            raise ValueError(f"{claim.id}: a ratio of non-positive {st.metric}")
        diff = np.log(paired[treat] / paired[base])
    else:
        diff = paired[treat] - paired[base]
    return diff.rename("value").reset_index(), dropped


def _gain_contrasts(
    claim: Claim, d: pd.DataFrame, out_cols: list[str]
) -> tuple[pd.DataFrame, int]:
    """Per (cell, along, seed): the paired difference at the smallest ``along`` value minus the
    one at ``along`` (every other value); a seed without the smallest value is dropped."""
    cells = list(claim.cell_keys)
    along = str(claim.statistic.along)
    dropped = 0
    rows: list[dict[str, Any]] = []
    groups = d.groupby(cells) if cells else [((), d)]
    for key, grp in groups:
        key = key if isinstance(key, tuple) else (key,)
        smallest = grp[along].min()
        for seed, g in grp.groupby("seed"):
            by = dict(zip(g[along], g["value"], strict=True))
            if smallest not in by:
                dropped += len(by)
                continue
            rows += [
                {**dict(zip(cells, key, strict=True)), along: n_val, "seed": seed,
                 "value": by[smallest] - v}
                for n_val, v in by.items()
                if n_val != smallest
            ]
    return pd.DataFrame(rows, columns=out_cols), dropped


def _slopes(claim: Claim, df: pd.DataFrame, out_cols: list[str]) -> tuple[pd.DataFrame, int]:
    """Per (cell, seed): the least-squares slope of ``_y`` against the (transformed) ``along``
    values; a seed with fewer than two distinct ``along`` values is dropped."""
    st = claim.statistic
    cells = list(claim.cell_keys)
    along = str(st.along)
    df = df.assign(_x=_transform(df[along], st.log_along, along))
    dropped = 0
    rows: list[dict[str, Any]] = []
    for key, grp in df.groupby([*cells, "seed"]):
        key = key if isinstance(key, tuple) else (key,)
        if grp["_x"].nunique() < 2:
            dropped += 1
            continue
        rows.append(
            {
                **dict(zip([*cells, "seed"], key, strict=True)),
                "value": stats.slope(grp["_x"].to_numpy(), grp["_y"].to_numpy()),
            }
        )
    return pd.DataFrame(rows, columns=out_cols), dropped


def per_seed(claim: Claim | str, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, seed): the claim's statistic for that seed (column ``value``; for
    :data:`LOG_RATIO` the log ratio). Seeds without a partner arm, or with too few ``along``
    values for a slope, are dropped; ``df.attrs["dropped"]`` counts them."""
    c = registered(claim)
    st = c.statistic
    df = _scored(c, prepare_runs(c, runs))
    out_cols = [*_cell_cols(c), "seed", "value"]
    if df.empty:
        out = pd.DataFrame(columns=out_cols)
        out.attrs["dropped"] = 0
        return out
    df = df.assign(_y=_transform(df[st.metric], st.log_metric, st.metric))
    dropped = 0
    if st.kind == VALUE:
        out = df[[*c.cell_keys, "seed", "_y"]].rename(columns={"_y": "value"})
    elif st.kind in (DIFFERENCE, LOG_RATIO):
        out, dropped = _paired(c, df)
    elif st.kind == GAIN_CONTRAST:
        d, dropped = _paired(c, df)
        out, more = _gain_contrasts(c, d, out_cols)
        dropped += more
    elif st.kind == SLOPE:
        out, dropped = _slopes(c, df, out_cols)
    else:  # pragma: no cover - the registry is checked at import
        raise ValueError(st.kind)
    out = out[out_cols].reset_index(drop=True)
    out.attrs["dropped"] = int(dropped)
    return out


def _threshold(claim: Claim, cell: dict[str, Any]) -> float:
    thr = claim.rule.threshold
    for pairs, value in claim.rule.cell_thresholds:
        if all(k in cell and cell[k] == v for k, v in pairs):
            thr = value
    return math.log(thr) if claim.statistic.kind == LOG_RATIO else thr


def _label(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items()) or "all"


#: The columns of :func:`cell_table` after the cell keys.
CELL_COLUMNS = (
    "cell", "n", "estimate", "sd", "low", "high", "refute_low", "refute_high", "threshold",
    "outcome", "seeds_needed", "diverged",
)


def _outcome(claim: Claim, thr: float, iv: stats.Interval, rv: stats.Interval | None) -> str:
    """A cell's outcome: :data:`stats.CLAIMED` when its interval ``iv`` lies on the claimed side,
    :data:`stats.OTHER` when its refutation interval ``rv`` (``None``: fewer than two seeds) lies
    on the other side, else :data:`stats.STRADDLES`."""
    rule = claim.rule
    r_low, r_high = (rv.low, rv.high) if rv is not None else (math.nan, math.nan)
    if stats.classify(iv.low, iv.high, rule.side, thr, rule.margin) == stats.CLAIMED:
        return stats.CLAIMED
    if stats.classify(r_low, r_high, rule.side, thr, rule.margin) == stats.OTHER:
        return stats.OTHER
    return stats.STRADDLES


def _cell_seeds_needed(
    claim: Claim, thr: float, iv: stats.Interval, refute_level: float
) -> int | None:
    """Seeds a straddling cell needs to decide, at the level of the side its mean is on."""
    rule = claim.rule
    effect = stats.distance_to_decision(iv.estimate, rule.side, thr, rule.margin)
    on_claimed = stats.classify(iv.estimate, iv.estimate, rule.side, thr, rule.margin)
    level = rule.level if on_claimed == stats.CLAIMED else refute_level
    return stats.seeds_needed(iv.sd, effect, level)


def _cell_row(
    claim: Claim, cell: dict[str, Any], values: np.ndarray, refute_level: float, diverged: int
) -> dict[str, Any]:
    """One row of :func:`cell_table`: the cell's per-seed ``values`` summarized and judged."""
    thr = _threshold(claim, cell)
    iv = stats.t_interval(values, claim.rule.level)
    rv = stats.t_interval(values, refute_level) if iv.n >= 2 else None
    outcome = _outcome(claim, thr, iv, rv)
    needed = None
    if outcome == stats.STRADDLES and iv.n >= 2:
        needed = _cell_seeds_needed(claim, thr, iv, refute_level)
    return {
        **cell,
        "cell": _label(cell),
        "n": iv.n,
        "estimate": iv.estimate,
        "sd": iv.sd,
        "low": iv.low,
        "high": iv.high,
        "refute_low": rv.low if rv is not None else math.nan,
        "refute_high": rv.high if rv is not None else math.nan,
        "threshold": thr,
        "outcome": outcome,
        "seeds_needed": needed,
        "diverged": diverged,
    }


def _diverged_in(bad: pd.DataFrame, cols: list[str], cell: dict[str, Any]) -> int:
    """How many of the diverged rows ``bad`` lie in ``cell``."""
    return int((bad[cols] == pd.Series(cell)).all(axis=1).sum() if cols else len(bad))


def cell_table(claim: Claim | str, runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: ``n`` seeds, the mean statistic with its t-interval (``low``/``high`` at the
    rule's level; ``refute_low``/``refute_high`` at the Bonferroni level ``1 - (1-level)/k`` over
    the ``k`` cells), the threshold, ``outcome`` (:data:`stats.CLAIMED` / ``OTHER`` /
    ``STRADDLES``) and ``seeds_needed`` for a straddling cell. Log-space for log-ratio claims.
    Chapters may show this table under the verdict."""
    c = registered(claim)
    ps = per_seed(c, runs)
    cols = _cell_cols(c)
    prepared = prepare_runs(c, runs)
    bad = prepared[diverged_mask(prepared)]
    groups = list(ps.groupby(cols, sort=True)) if cols else ([((), ps)] if len(ps) else [])
    refute_level = 1.0 - (1.0 - c.rule.level) / max(len(groups), 1)
    rows = []
    for key, grp in groups:
        cell = dict(zip(cols, key if isinstance(key, tuple) else (key,), strict=True))
        values = grp["value"].to_numpy()
        rows.append(_cell_row(c, cell, values, refute_level, _diverged_in(bad, cols, cell)))
    out = pd.DataFrame(rows, columns=[*cols, *CELL_COLUMNS])
    out.attrs["dropped"] = ps.attrs.get("dropped", 0)
    out.attrs["refute_level"] = refute_level
    return out


# ---------------------------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------------------------


def _cells_of(claim: Claim, df: pd.DataFrame) -> pd.Series:
    keys = [*claim.cell_keys, *([claim.statistic.along] if claim.statistic.along else [])]
    if "arm" in df.columns and claim.statistic.arms:
        keys.append("arm")
    if not keys:
        return pd.Series(["all"] * len(df), index=df.index)
    return df[keys].apply(lambda r: _label(dict(r)), axis=1)


def fit_arms(claim: Claim | str) -> tuple[str, ...]:
    """The arms whose nets the regime gate asks to fit: ``gates.fit_arms`` if set, else the
    baseline arm of a paired claim (``statistic.arms[0]``), else ``()`` (every run)."""
    c = registered(claim)
    if c.gates.fit_arms:
        return c.gates.fit_arms
    return c.statistic.arms[:1]


def regime_gate(claim: Claim | str, runs: pd.DataFrame) -> GateResult:
    """The nets of :func:`fit_arms` (the baseline arm of a paired claim, every net of an unpaired
    one) reach ``gates.min_train_acc`` training accuracy (skipped when the claim sets none)."""
    c = registered(claim)
    thr = c.gates.min_train_acc
    if thr is None:
        return GateResult("regime", True, f"not applicable ({c.gates.regime_reason})")
    df = prepare_runs(c, runs)
    _require(df, ["train_acc"], f"regime gate of {c.id}")
    arms = fit_arms(c)
    if arms:
        df = df[df["arm"].isin(arms)]
    which = f" of arm {', '.join(arms)}" if arms else ""
    acc = df["train_acc"].astype(float)
    bad = df[~(acc >= thr)]  # NaN fails
    if len(bad):
        where = sorted(set(_cells_of(c, bad)))
        withheld = (
            "; withheld: the statistic needs every net at 100 % training accuracy"
            if thr >= 1.0
            else ""
        )
        return GateResult(
            "regime",
            False,
            f"{len(bad)}/{len(df)} runs{which} below {100 * thr:.1f} % training accuracy "
            f"(lowest {100 * float(acc.min()):.2f} %; {'; '.join(where[:4])}"
            f"{' ...' if len(where) > 4 else ''}){withheld}",
        )
    return GateResult(
        "regime",
        True,
        f"all {len(df)} runs{which} ≥ {100 * thr:.1f} % training accuracy "
        f"(lowest {100 * float(acc.min()):.2f} %)",
    )


def _as_list(value: Any) -> list[Any] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return list(value)
    return None


def edge_reason(lam: float, grid: Sequence[float]) -> str:
    """'' if ``lam`` is an interior point of ``grid``, else why not (the factor gate's rule).

    A factor at a grid's edge may be beaten by one outside the grid, so the choice is not
    settled. The one exception is a lower edge of exactly ``0`` (no regularization): no factor
    lies below it, so ``lam == 0`` chosen there is bracketed by the grid like an interior point
    (measured at ``cpu``: weight decays below ~1e-4 change no validation prediction, and a grid
    that starts at 0 ends that regress instead of pushing its lower edge down forever)."""
    g = sorted(float(v) for v in grid)
    if len(g) < 3:
        return f"grid {g} has no interior"
    if not any(math.isclose(lam, v, rel_tol=1e-9, abs_tol=0.0) for v in g):
        return f"lambda {lam:g} is not in its grid"
    at_floor = g[0] == 0.0 and lam == 0.0
    if (math.isclose(lam, g[0], rel_tol=1e-9) and not at_floor) or math.isclose(
        lam, g[-1], rel_tol=1e-9
    ):
        return f"lambda {lam:g} at the grid's edge [{g[0]:g}, {g[-1]:g}]"
    return ""


def factor_gate(claim: Claim | str, runs: pd.DataFrame) -> GateResult:
    """For every run of a tuned arm: lambda interior to its grid, not chosen by a tie, chosen on
    selection seeds disjoint from the claim's final seeds, selection runs ≥ ``min_steps``."""
    c = registered(claim)
    tuned = c.gates.tuned_arms
    if not tuned:
        return GateResult("factor", True, "not applicable (no factor chosen on validation data)")
    df = prepare_runs(c, runs)
    need = ["lam", "lam_grid", "chosen_by_tie", "selection_seeds"]
    if c.gates.min_steps > 0:
        need.append("selection_steps")
    _require(df, need, f"factor gate of {c.id}")
    final = {int(s) for s in df["seed"]}
    problems: list[str] = []
    sub = _finished(df)
    sub = sub[sub["arm"].isin(tuned)]
    for _, r in sub.iterrows():
        where = _label({k: r[k] for k in c.cell_keys}) + f", arm={r['arm']}"
        grid = _as_list(r["lam_grid"])
        if grid is None:
            problems.append(f"{where}: no lambda grid recorded")
            continue
        why = edge_reason(float(r["lam"]), grid)
        if why:
            problems.append(f"{where}: {why}")
        if bool(r["chosen_by_tie"]):
            problems.append(f"{where}: lambda {float(r['lam']):g} chosen by a tie")
        sel = _as_list(r["selection_seeds"])
        if not sel:
            problems.append(f"{where}: selection seeds not recorded")
        elif set(int(s) for s in sel) & final:
            problems.append(
                f"{where}: selection seeds {sorted(set(int(s) for s in sel) & final)} are final "
                "seeds"
            )
        if c.gates.min_steps > 0 and not (float(r["selection_steps"]) >= c.gates.min_steps):
            problems.append(
                f"{where}: selection runs of {r['selection_steps']} steps < {c.gates.min_steps}"
            )
    if problems:
        uniq = list(dict.fromkeys(problems))
        return GateResult(
            "factor",
            False,
            "; ".join(uniq[:4]) + (f"; ... ({len(uniq)} in all)" if len(uniq) > 4 else ""),
        )
    lams = sorted({float(v) for v in sub["lam"]})
    return GateResult(
        "factor",
        True,
        f"every chosen lambda interior, no ties, selection seeds disjoint "
        f"(lambdas {', '.join(f'{v:g}' for v in lams)})",
    )


def budget_gate(claim: Claim | str, runs: pd.DataFrame) -> GateResult:
    """Every run has at least ``gates.min_steps`` SGD steps (skipped when the claim sets 0)."""
    c = registered(claim)
    need = c.gates.min_steps
    if need <= 0:
        return GateResult("budget", True, f"not applicable ({c.gates.steps_reason})")
    df = _finished(prepare_runs(c, runs))  # a diverged run stopped early: the divergence gate
    _require(df, ["steps"], f"budget gate of {c.id}")
    steps = df["steps"].astype(float)
    bad = df[~(steps >= need)]
    if len(bad):
        return GateResult(
            "budget",
            False,
            f"{len(bad)}/{len(df)} runs with fewer than {need} steps (fewest "
            f"{int(steps.min()) if steps.notna().all() else 'unrecorded'})",
        )
    return GateResult("budget", True, f"all runs ≥ {need} steps (fewest {int(steps.min())})")


def seeds_gate(claim: Claim | str, cells: pd.DataFrame) -> GateResult:
    """Every cell of :func:`cell_table` has at least ``gates.min_seeds`` paired seeds."""
    c = registered(claim)
    need = c.gates.min_seeds
    if cells.empty:
        return GateResult("seeds", False, "no cell with a paired seed")
    few = cells[cells["n"] < need]
    if len(few):
        return GateResult(
            "seeds",
            False,
            f"{len(few)}/{len(cells)} cells with fewer than {need} paired seeds (fewest "
            f"{int(cells['n'].min())})",
        )
    return GateResult("seeds", True, f"every cell ≥ {need} paired seeds")


def diverged_gate(claim: Claim | str, runs: pd.DataFrame) -> GateResult:
    """No diverged run is silently dropped: with none, or with a registered
    :attr:`GateSpec.diverged_value` (the run counts as a failure of its arm at that value), the
    gate passes and says how many; otherwise (``None``) a diverged run withholds the verdict."""
    c = registered(claim)
    df = prepare_runs(c, runs)
    bad = df[diverged_mask(df)]
    if bad.empty:
        return GateResult("divergence", True, "no diverged run")
    where = sorted(set(_cells_of(c, bad)))
    at = f" ({'; '.join(where[:4])}{' ...' if len(where) > 4 else ''})"
    value = c.gates.diverged_value
    if value is None:
        return GateResult(
            "divergence",
            False,
            f"{len(bad)}/{len(df)} runs diverged{at}; registered: a diverged run leaves its cell "
            "undecided (no value of its statistic stands for it)",
        )
    return GateResult(
        "divergence",
        True,
        f"{len(bad)}/{len(df)} runs diverged{at}, counted as failures of their arm at "
        f"{c.statistic.metric} = {value:g} (chance)",
    )


def check_gates(
    claim: Claim | str, runs: pd.DataFrame, cells: pd.DataFrame | None = None
) -> list[GateResult]:
    """The five gates, in order regime, factor, budget, seeds, divergence."""
    c = registered(claim)
    cells = cell_table(c, runs) if cells is None else cells
    return [
        regime_gate(c, runs),
        factor_gate(c, runs),
        budget_gate(c, runs),
        seeds_gate(c, cells),
        diverged_gate(c, runs),
    ]


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


def _fmt(claim: Claim, v: float, signed: bool = True) -> str:
    st = claim.statistic
    if math.isnan(v):
        return "nan"
    if st.kind == LOG_RATIO:
        return f"{math.exp(v):.3g}"
    return f"{st.scale * v:{'+' if signed else ''}.3g}"


def _natural(claim: Claim, v: float) -> float | None:
    if v is None or math.isnan(v):
        return None
    return math.exp(v) if claim.statistic.kind == LOG_RATIO else float(v)


def _evidence(claim: Claim, cells: pd.DataFrame, decisive: str | None) -> str:
    st, rule = claim.statistic, claim.rule
    unit = f" {st.unit}" if st.unit else ""
    parts = []
    for _, r in cells.iterrows():
        seeds = f", {int(r['seeds_needed'])} seeds needed" if pd.notna(r["seeds_needed"]) else ""
        div = int(r.get("diverged", 0) or 0)
        diverged = f", {div} diverged" if div else ""
        parts.append(
            f"{r['cell']}: {_fmt(claim, r['estimate'])} [{_fmt(claim, r['low'])}, "
            f"{_fmt(claim, r['high'])}]{unit}, n={int(r['n'])}{diverged} -> {r['outcome']}{seeds}"
        )
    thr = rule.threshold
    target = f"{st.scale * thr:g}" if st.kind != LOG_RATIO else f"{thr:g}"
    if rule.side == EQUIVALENT and st.kind == LOG_RATIO:  # a band of ratios, log-symmetric
        m = math.exp(float(rule.margin or 0))
        target = f"[{thr / m:.3g}, {thr * m:.3g}]"
    elif rule.side == EQUIVALENT:
        target += f" ± {st.scale * float(rule.margin or 0):g}"
    head = (
        f"{st.description}; mean and {100 * rule.level:g} % t-interval per cell vs {target}{unit} "
        f"({rule.side}); refutation at the Bonferroni level "
        f"{100 * cells.attrs.get('refute_level', rule.level):.4g} %"
    )
    if decisive:
        head += f"; deciding cell: {decisive}"
    dropped = cells.attrs.get("dropped", 0)
    if dropped:
        head += f"; {dropped} unpaired seed rows left out"
    return head + ". " + "; ".join(parts)


def not_run(
    claim: Claim | str,
    reason: str,
    *,
    profile: str = "",
    dataset: str = "",
    stand_in: bool = False,
) -> Verdict:
    """The verdict of a claim whose runs did not happen (dataset absent, not at this profile)."""
    c = registered(claim)
    return Verdict(
        c.id, NOT_RUN, "no runs", reason=reason, dataset=dataset, profile=profile,
        stand_in=stand_in,
    )


def decide(
    claim: Claim | str,
    runs: pd.DataFrame,
    *,
    profile: str,
    dataset: str,
    stand_in: bool = False,
) -> Verdict:
    """Judge a registered claim on its paired runs: gates first, then the rule.

    ``runs``: the tidy frame described in this module's docstring. ``dataset``: the name of the
    dataset the runs used; with ``stand_in=True`` it is labelled
    ``"<dataset> (stand-in for <claim.dataset>)"`` and the reason says it is counted apart.

    * no run in the claim's cells -> ``not run``;
    * a failed gate -> ``inconclusive``, the gate(s) as reason (the numbers are still given);
    * every cell's interval on the claimed side -> ``reproduced``;
    * some cell's (Bonferroni) interval on the other side -> ``not reproduced``;
    * otherwise ``inconclusive`` with ``seeds_needed`` (the most any straddling cell needs, from
      the measured sd; ``None`` if some cell's mean sits on the boundary).

    The returned estimate / interval are those of the deciding cell (the weakest cell for
    ``reproduced``, the refuting cell for ``not reproduced``, the cell needing most seeds for
    ``inconclusive``), in the metric's units (ratios for cost claims); the evidence lists every
    cell.
    """
    c = registered(claim)
    label = stand_in_label(dataset, c.dataset) if stand_in else dataset
    df = prepare_runs(c, runs)
    if df.empty:
        return not_run(
            c, "no runs in the claim's cells at this profile", profile=profile, dataset=label,
            stand_in=stand_in,
        )
    cells = cell_table(c, df)
    failed = [g for g in check_gates(c, df, cells) if not g.passed]
    reasons = [f"gate {g.name}: {g.detail}" for g in failed]
    if cells.empty:
        ev = "no seed with both arms" if c.statistic.arms else "no seed with a statistic"
        return Verdict(
            c.id, INCONCLUSIVE, ev, reason="; ".join(reasons), dataset=label, profile=profile,
            stand_in=stand_in,
        )
    verdict, pick = _rule_verdict(c, cells)
    needed = _seeds_to_decide(cells, verdict)
    if failed:
        verdict = INCONCLUSIVE
    if stand_in:
        reasons.append(
            f"stand-in: {dataset} for {c.dataset}; counted apart, not a verdict on {c.dataset}"
        )
    if verdict == INCONCLUSIVE and not failed:
        reasons.append(_straddle_reason(needed))
    return Verdict(
        claim=c.id,
        verdict=verdict,
        evidence=_evidence(c, cells, str(pick["cell"])),
        reason="; ".join(reasons),
        dataset=label,
        profile=profile,
        estimate=_natural(c, float(pick["estimate"])),
        low=_natural(c, float(pick["low"])),
        high=_natural(c, float(pick["high"])),
        n_seeds=int(cells["n"].min()),
        seeds_needed=needed,
        stand_in=stand_in,
        cells=_cell_stats(c, cells),
        deciding_cell=str(pick["cell"]),
    )


def _weakest_cell(claim: Claim, cells: pd.DataFrame) -> pd.Series:
    """Of cells all on the claimed side, the one whose claimed-side bound lies closest to the
    decision boundary (for an equivalence claim, to either edge of the band)."""
    rule = claim.rule
    if rule.side == "greater":
        dist = cells["low"] - cells["threshold"]
    elif rule.side == "less":
        dist = cells["threshold"] - cells["high"]
    else:
        m = float(rule.margin or 0.0)
        dist = pd.concat(
            [cells["low"] - (cells["threshold"] - m), (cells["threshold"] + m) - cells["high"]],
            axis=1,
        ).min(axis=1)
    return cells.loc[dist.idxmin()]


def _rule_verdict(claim: Claim, cells: pd.DataFrame) -> tuple[str, pd.Series]:
    """The rule's verdict on the cell table (before the gates) and its deciding cell: some cell
    refuted -> ``not reproduced``, deciding on the refuting cell farthest from its threshold;
    every cell on the claimed side -> ``reproduced``, deciding on the weakest cell; else
    ``inconclusive``, deciding on a straddling cell that no number of seeds decides, or else the
    one needing most seeds."""
    outcomes = cells["outcome"]
    if (outcomes == stats.OTHER).any():
        cand = cells[outcomes == stats.OTHER]
        dist = (cand["estimate"] - cand["threshold"]).abs()
        return NOT_REPRODUCED, cand.loc[dist.idxmax()]
    if (outcomes == stats.CLAIMED).all():
        return REPRODUCED, _weakest_cell(claim, cells)
    cand = cells[outcomes == stats.STRADDLES]
    needs = cand["seeds_needed"]
    if needs.isna().any():
        return INCONCLUSIVE, cand.loc[needs.isna().idxmax()]
    return INCONCLUSIVE, cand.loc[needs.astype(float).idxmax()]


def _seeds_to_decide(cells: pd.DataFrame, verdict: str) -> int | None:
    """The most seeds any straddling cell needs (``None`` if one's mean sits on the boundary, or
    if no cell straddles, or the rule refuted the claim)."""
    straddling = cells[cells["outcome"] == stats.STRADDLES]
    if not len(straddling) or verdict == NOT_REPRODUCED:
        return None
    sn = straddling["seeds_needed"]
    return None if sn.isna().any() else int(sn.astype(float).max())


def _straddle_reason(needed: int | None) -> str:
    """Why an ungated verdict is inconclusive: how many seeds would decide it, if any would."""
    if needed is None:
        return "interval straddles the claim; a mean on the boundary: no number of seeds decides"
    return (
        f"interval straddles the claim; about {needed} seeds per cell would "
        "decide it with 80 % power at the observed effect and spread"
    )


def _cell_stats(claim: Claim, cells: pd.DataFrame) -> tuple[CellStat, ...]:
    """The cell table as :class:`CellStat` records in natural units (for the pages' plots)."""

    def nat(v: Any) -> float:
        x = _natural(claim, float(v))
        return math.nan if x is None else x

    return tuple(
        CellStat(
            cell=str(r["cell"]),
            estimate=nat(r["estimate"]),
            low=nat(r["low"]),
            high=nat(r["high"]),
            threshold=nat(r["threshold"]),
            n=int(r["n"]),
            outcome=str(r["outcome"]),
            diverged=int(r.get("diverged", 0) or 0),
        )
        for _, r in cells.iterrows()
    )
