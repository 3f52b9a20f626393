"""The steps every experiment chapter shares: selection data, the factor at a final run's size,
grids (stacked or separate) through the store, and verdicts from tidy runs frames.

A chapter that chooses a regularization factor on validation data (Fig. 3 on
``notebooks/02_fully_connected.ipynb``, Tables II and III on ``notebooks/04_convolutional.ipynb``)
runs: a selection grid on held-out training data (:func:`selection_split`), the choice
(:func:`jacnb.lab.selection.choose_lambdas`), the final grid at the factor chosen at the nearest
selected size (:func:`nearest_choice`), and one verdict per registered claim of its page
(:func:`decide_panel`, :func:`assemble_verdicts`). Each rule is written once, here; a chapter
supplies its nets, metrics, figures and tables. ``tests/chapters/test_pipeline_rules.py``
checks that every chapter follows these rules.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from jacnb.core.data import (
    Dataset,
    balanced_subset,
    balanced_subset_indices,
    train_val_split,
)
from jacnb.core.train import pick_device
from jacnb.lab import gates
from jacnb.lab.claims import Claim, claims_of
from jacnb.lab.datasets import Panel, dataset_label
from jacnb.lab.records import (
    diverged_record,
    is_divergence,
    run_or_diverged,
)
from jacnb.lab.store import ResultStore, canonical, run_grid
from jacnb.lab.verdicts import Verdict

# ---------------------------------------------------------------------------------------------
# Selection data: held-out training samples, never the test split
# ---------------------------------------------------------------------------------------------


def selection_indices(
    y_train: Any, n_train: int, n_val: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the training split of a selection run's fit and validation sets: the fit
    set is the seed's class-balanced draw of ``n_train`` (what a final run of that seed draws),
    the validation set the ``n_val`` further samples of the same seeded balanced draw of
    ``n_train + n_val`` (disjoint from the fit set)."""
    n, seed = int(n_train), int(seed)
    every = balanced_subset_indices(y_train, n + int(n_val), seed)
    fit = balanced_subset_indices(y_train, n, seed)
    if not np.isin(fit, every).all():
        raise ValueError("balanced draws are not nested")
    return fit, np.setdiff1d(every, fit)


def validation_keys(s: Mapping[str, Any], y_train: Any, n_train: int) -> dict[str, Any]:
    """The validation keys of a selection config at size ``n_train``: ``{"n_val": n_val}`` when
    ``s["n_val"]`` is set and the training pool holds a class-balanced draw of
    ``n_train + n_val`` samples, else ``{"val_fraction": s["val_fraction"]}`` (e.g. the paper's
    CIFAR-10 at 50000, which is the whole training split)."""
    n_val = s.get("n_val")
    if n_val:
        try:
            balanced_subset_indices(y_train, int(n_train) + int(n_val), 0)
        except ValueError:
            if "val_fraction" not in s:
                raise ValueError(
                    f"no class-balanced draw of {n_train} + {n_val} training samples and no "
                    "val_fraction to fall back on"
                ) from None
        else:
            return {"n_val": int(n_val)}
    return {"val_fraction": s["val_fraction"]}


def selection_split(
    ds: Dataset,
    config: Mapping[str, Any],
    transform: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_fit, y_fit, x_val, y_val)`` of a selection run, from the training split only: with
    ``n_val`` in the config see :func:`selection_indices`; without it ``val_fraction`` of the
    ``n_train`` drawn samples is held out (class stratified). ``transform`` (per image, e.g. a
    resize) is applied to the inputs."""
    tf = transform or (lambda x: x)
    n, seed = int(config["n_train"]), int(config["seed"])
    if config.get("n_val"):
        fit, val = selection_indices(ds.y_train, n, int(config["n_val"]), seed)
        return tf(ds.x_train[fit]), ds.y_train[fit], tf(ds.x_train[val]), ds.y_train[val]
    x, y = balanced_subset(ds.x_train, ds.y_train, n, seed)
    return train_val_split(tf(x), y, config["val_fraction"], seed)


def sgd_steps(n: int, batch_size: int, epochs: int, drop_last: bool = False) -> int:
    """SGD steps of :func:`jacnb.core.train.train` on ``n`` samples (its batching rule: with
    ``drop_last`` -- batch-normalized nets -- the last incomplete batch is dropped when a full one
    precedes it)."""
    n, batch_size = int(n), int(batch_size)
    end = n - n % batch_size if drop_last and n > batch_size else n
    return int(epochs) * math.ceil(end / batch_size)


# ---------------------------------------------------------------------------------------------
# The factor a final run uses
# ---------------------------------------------------------------------------------------------


def nearest_choice(chosen: pd.DataFrame, n_train: int, **match: Any) -> pd.Series:
    """The row of ``chosen`` (one per group and selection size, from
    :func:`jacnb.lab.selection.choose_lambdas`) that a final run of size ``n_train`` uses: the
    rows whose columns equal ``match`` (e.g. ``dataset``, ``regularizer``, ``depth``), at the
    selected size nearest to ``n_train`` in log scale (sizes are spaced geometrically; a tie goes
    to the first row). ``KeyError`` when no row matches."""
    sel = chosen
    for col, value in match.items():
        sel = sel[sel[col] == value]
    if sel.empty:
        what = "/".join(f"{k}={v}" for k, v in match.items())
        raise KeyError(f"no chosen factor for {what}")
    dist = (np.log(sel["n_train"].astype(float)) - math.log(float(n_train))).abs()
    return sel.iloc[int(np.argmin(dist.to_numpy()))]


#: Columns of a choice row that every final run records (the factor's provenance).
CHOICE_COLUMNS = ("lam_grid", "chosen_by_tie", "selection_seeds", "selection_steps")


def choice_provenance(row: pd.Series) -> dict[str, Any]:
    """What a final run records of the choice it used: ``lam``, ``selected_at`` (the selection's
    training-set size) and :data:`CHOICE_COLUMNS`."""
    out = {"lam": float(row["lam"]), "selected_at": int(row["n_train"])}
    out.update({c: row[c] for c in CHOICE_COLUMNS if c in row})
    return out


# ---------------------------------------------------------------------------------------------
# Grids through the store: separate runs, or the runs of one shape trained together
# ---------------------------------------------------------------------------------------------

#: Config keys in which runs trained together may differ.
STACK_KEYS = ("seed", "lam")


def stack_seeds(s: Mapping[str, Any], device: str | torch.device | None = None) -> bool:
    """Whether the profile trains the seeds of a configuration together (``jacnb.core.stacked``).

    ``s["stack_seeds"]``: ``True``, ``False`` (the default) or ``"auto"`` -- stacked on CUDA
    only. On this project's 2-core CPU ``benchmarks/stacked_training.py`` measured stacking at
    0.75-0.97x the speed of separate runs (``cpu`` and paper nets); with the ``cpu`` profile's
    own runs, one-at-a-time against stacked in one 2-thread process: 1.20x for the 12 runs of
    one Fig. 3 selection group (depth 3), 0.94x and 0.92x for the 3 seeds of a Fig. 4 net
    (L = 3, k = 1 and L = 5, k = 2). The ``cpu`` book instead trains separate runs in two
    1-thread worker processes (1.26x; :func:`jacnb.book.grid_executor`), so ``smoke`` and ``cpu``
    train separately; on a GPU a step of these small nets is bound by per-operation launch
    overhead, which stacking divides by the number of seeds (expected there, not yet measured).
    """
    mode = s.get("stack_seeds", False)
    if mode == "auto":
        return pick_device(device).type == "cuda"
    if not isinstance(mode, bool):
        raise ValueError(f"stack_seeds must be true, false or 'auto', got {mode!r}")
    return mode


def stack_groups(configs: Iterable[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """Configs grouped by everything but :data:`STACK_KEYS` (and whether ``lam > 0``), in order
    of first appearance: the runs that one stacked loop can train."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in configs:
        rest = {k: v for k, v in c.items() if k not in STACK_KEYS}
        key = canonical({**rest, "__reg_on": bool(c.get("lam", 0) > 0)})
        groups.setdefault(key, []).append(dict(c))
    return list(groups.values())


def _train_group(
    store: ResultStore,
    group: Sequence[dict[str, Any]],
    run: Callable[[Mapping[str, Any]], Any],
    run_group: Callable[[Sequence[Mapping[str, Any]]], Sequence[Any]],
) -> None:
    """Claim the group's configs in the store, train the ones still missing together (one alone:
    ``run``), store every record (a divergence as ``diverged``), release the claims; any other
    exception is raised after the group's other records are stored."""
    with contextlib.ExitStack() as held:
        mine = []
        for c in group:
            claim = store.claim(c)
            if claim is None:  # a live worker trains it; run_grid afterwards waits for it
                continue
            held.enter_context(claim)
            if not store.has(c):
                mine.append(c)
        if len(mine) == 1:
            results = [run_or_diverged(run, mine[0])]
        else:
            results = list(run_group(mine)) if mine else []
        errors = []
        for config, res in zip(mine, results, strict=True):
            if isinstance(res, BaseException):
                if is_divergence(res):
                    store.put(config, diverged_record(res))
                else:
                    errors.append(res)
            else:
                store.put(config, res)
        if errors:
            raise errors[0]


def run_grid_stacked(
    configs: Iterable[Mapping[str, Any]],
    run: Callable[[Mapping[str, Any]], Any],
    run_group: Callable[[Sequence[Mapping[str, Any]]], Sequence[Any]],
    store: ResultStore | None = None,
    desc: str = "runs",
    stack: bool = False,
    progress: bool = True,
    executor: Any = None,
    schema: Any = None,
) -> pd.DataFrame:
    """:func:`jacnb.lab.store.run_grid` (``schema``: what every finished record reports), with
    the missing runs of each :func:`stack_groups` group
    trained together by ``run_group(configs) -> [record or exception]`` when ``stack``.

    Before a group trains, each of its configs is claimed in the store
    (:meth:`~jacnb.lab.store.ResultStore.claim`); a config claimed by a live worker elsewhere is
    left to it (the closing :func:`run_grid` waits for its record), and the claims are released
    once the group's records are stored. Stored runs are never retrained, so a group whose other
    seeds are stored trains only the missing ones. The remaining configs (all of them without
    ``stack``) go through :func:`run_grid` with ``executor``.
    """
    store = store or ResultStore()
    configs = [dict(c) for c in configs]
    if stack:
        todo = [c for c in configs if not store.has(c)]
        groups = stack_groups(todo)
        bar = tqdm(
            groups,
            desc=f"{desc} ({len(configs) - len(todo)} cached, {len(todo)} runs in "
            f"{len(groups)} stacks)",
            disable=not progress,
        )
        for group in bar:
            _train_group(store, group, run, run_group)
    return run_grid(
        configs,
        run,
        store,
        desc=desc,
        progress=progress and not stack,
        executor=executor,
        schema=schema,
    )


# ---------------------------------------------------------------------------------------------
# Verdicts: one registered claim -> one verdict, from the finished runs of its panel
# ---------------------------------------------------------------------------------------------


def decide_panel(
    claim: str,
    runs: pd.DataFrame,
    *,
    profile: str,
    panel: Panel | None,
    dataset: str | None = None,
    columns: Sequence[str] | None = None,
) -> Verdict:
    """:func:`jacnb.lab.gates.decide` on every run of ``runs``, diverged ones included (their
    ``status``): the claim's registered treatment counts them (a failure of their arm, or an
    undecided cell), never drops them. The dataset is named as the panel ran it (``dataset``: a
    label instead of the panel dataset's name; a stand-in flagged by :attr:`Panel.stand_in`);
    :func:`jacnb.lab.gates.not_run` when the panel did not run. ``columns``: the columns passed
    on (default: all; ``status`` always)."""
    if panel is None or not panel.ran:
        why = panel.note if panel is not None else "no panel for this claim at this profile"
        return gates.not_run(claim, why, profile=profile)
    if columns is not None:
        runs = runs[[*columns, *(["status"] if "status" in runs else [])]]
    name = dataset if dataset is not None else dataset_label(str(panel.dataset))
    return gates.decide(claim, runs, profile=profile, dataset=name, stand_in=panel.stand_in)


#: How a chapter decides one of its page's claims: a function of the registered claim.
Decider = Callable[[Claim], Verdict]


def assemble_verdicts(page: str, deciders: Mapping[str, Decider] | Callable[[Claim], Decider]
                      ) -> list[Verdict]:
    """One verdict per claim registered on ``page``, in registry order: ``deciders[claim.id]``
    (a mapping from claim id), or ``deciders(claim)`` (a function choosing the decider from the
    claim's own fields). A registered claim without a decider, or a decider for a claim not
    registered on the page, is an error: every claim of a page gets exactly one verdict."""
    claims = claims_of(page)
    if isinstance(deciders, Mapping):
        unknown = set(deciders) - {c.id for c in claims}
        if unknown:
            raise ValueError(f"deciders for claims not registered on {page}: {sorted(unknown)}")
        missing = [c.id for c in claims if c.id not in deciders]
        if missing:
            raise ValueError(f"claims of {page} without a decider: {missing}")
        return [deciders[c.id](c) for c in claims]
    return [deciders(c)(c) for c in claims]


def _fmt_interval(claim: Claim, v: Verdict) -> str:
    if v.estimate is None:
        return "—"
    st = claim.statistic
    unit = f" {st.unit}" if st.unit else ""
    est = f"{st.scale * v.estimate:+.2f}"
    if v.low is None or v.high is None or math.isnan(v.low):
        return est + unit
    return f"{est} [{st.scale * v.low:+.2f}, {st.scale * v.high:+.2f}]{unit}"


def claims_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """Ours beside the paper, one row per claim: the paper's statement (with
    :attr:`Claim.paper_note` where the paper prints no number, e.g. a plot), our estimate with its
    95 % interval (the deciding cell), the seeds and the verdict."""
    from jacnb.lab.claims import get_claim

    rows = []
    for v in verdicts:
        c = get_claim(v.claim)
        rows.append(
            {
                "claim": v.claim,
                "paper": f"{c.statement} ({c.paper_note})" if c.paper_note else c.statement,
                "ours": _fmt_interval(c, v),
                "statistic": c.statistic.description,
                "seeds": v.n_seeds,
                "dataset": v.dataset,
                "verdict": v.verdict,
            }
        )
    frame = pd.DataFrame(rows).set_index("claim")
    # a display table like "ours": a count ("3", not "3.0"), "—" for a claim not run
    frame["seeds"] = [str(int(n)) if n is not None and n == n else "—" for n in frame["seeds"]]
    return frame
