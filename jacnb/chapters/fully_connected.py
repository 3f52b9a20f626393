"""Experiments of the fully connected chapter (Sokolic et al. 2017, Sec. VI-A1, Fig. 3).

Notebook: ``notebooks/02_fully_connected.ipynb``
(``from jacnb.chapters import fully_connected as chapter``).

Fully connected ReLU nets with L = 2, 3, 4 weight layers, hidden width equal to the input
dimension, softmax output and cross-entropy, trained with weight decay (``sum_l ||W_l||_F^2``)
or with the Jacobian regularizer ``R_F`` (eq. 49). The factors are chosen on a separate
validation set of training samples (:func:`selection_data`, :func:`choose_lambdas`) in selection
runs whose seeds are disjoint from the final runs' (:func:`jacnb.lab.gates.selection_seeds`),
never on test data; the final runs repeat
the chosen factor over seeds (a seed fixes the draw of the training set and the initialization).
One more cell trains the projection estimate of ``R_F`` beside the exact ``R_F`` at the same
factor (the book's claim ``book.projection_on_par_with_exact``).

Interface (PLAN.md, issue 10): :data:`NAME`, :func:`settings`, :func:`configs`, :func:`run` ->
:class:`FullyConnectedResult` with ``frames()``, ``figure()``, ``paper_table()`` and
``verdicts()`` (every registered claim of the page through :func:`jacnb.lab.gates.decide`).
Every run goes through :func:`jacnb.lab.store.run_grid` (stacked seeds: :func:`run_grid_stacked`,
which claims its runs in the store first). The shared pieces of the weight-norm chapter
(:mod:`jacnb.chapters.weight_norm`: net builder, stacked grids, cost arithmetic) live here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from jacnb.chapters import _fc_plots
from jacnb.core.data import Dataset, balanced_subset, balanced_subset_indices, train_val_split
from jacnb.core.models import fully_connected
from jacnb.core.regularizers import make_regularizer, regularizer_from_config
from jacnb.core.stacked import train_stacked
from jacnb.core.train import (
    TRAIN_KEYS,
    NonFiniteLossError,
    TrainConfig,
    pick_device,
    train,
    train_config,
)
from jacnb.lab import gates
from jacnb.lab import settings as lab_settings
from jacnb.lab.claims import claims_of, get_claim
from jacnb.lab.datasets import (  # noqa: F401 - Panel, dataset_label, try_dataset: re-exported
    Panel,
    dataset_label,
    get_dataset,
    plan_panels,
    try_dataset,
)
from jacnb.lab.dryrun import DryConfig, batch_of
from jacnb.lab.selection import VAL_METRICS
from jacnb.lab.selection import choose_lambdas as choose
from jacnb.lab.store import (
    DIVERGED,
    FRACTION,
    OK,
    ResultSchema,
    ResultStore,
    canonical,
    run_grid,
)
from jacnb.lab.tables import factor_list
from jacnb.lab.timing import make_step, time_calls
from jacnb.lab.verdicts import REPRODUCED, Verdict

NAME = "02_fully_connected"
SETTINGS_KEY = "fully_connected"

EXP_SELECT = "fc-jr-vs-wd-select"
EXP_FIG3 = "fc-jr-vs-wd"

#: Regularizer names of Fig. 3 and their legend labels.
REGULARIZERS = {"jacobian": "Jacobian reg.", "weight_decay": "weight decay"}

#: The claims of this page and the paper dataset each is about.
CLAIM_BEATS = {"MNIST": "fig3.mnist.jr_beats_wd", "CIFAR-10": "fig3.cifar10.jr_beats_wd"}
CLAIM_PAR = "fig3.mnist.jr_less_data_on_par"
CLAIM_PROJ = "book.projection_on_par_with_exact"


# ---------------------------------------------------------------------------------------------
# Settings and shared helpers
# ---------------------------------------------------------------------------------------------


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.settings`), with the
    selection seeds derived from the final seeds: ``n_select_seeds`` seeds from
    :func:`jacnb.lab.gates.selection_seeds` (disjoint from ``seeds``)."""
    s = lab_settings.settings(SETTINGS_KEY, profile)
    s["select_seeds"] = list(gates.selection_seeds(s["seeds"], s.get("n_select_seeds")))
    return s


def _input_dim(ds: Dataset) -> int:
    return int(math.prod(ds.input_shape))


def _build(config: Mapping[str, Any], ds: Dataset, weight_norm: bool) -> nn.Module:
    torch.manual_seed(config["seed"])
    return fully_connected(
        _input_dim(ds), ds.n_classes, config["depth"], config["width"], weight_norm=weight_norm
    )


def steps_per_run(n_fit: int, batch_size: int, epochs: int) -> int:
    """SGD steps of a run (no batch norm, so the last incomplete batch is kept)."""
    return int(epochs) * math.ceil(int(n_fit) / int(batch_size))


def ok_runs(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The finished runs of a store frame (``status == "ok"``) and how many were left out
    (diverged runs: stored as such, excluded from every mean, counted)."""
    if frame.empty or "status" not in frame:
        return frame, 0
    ok = frame["status"] == OK
    return frame[ok].reset_index(drop=True), int((~ok).sum())


def _diverged_record(err: BaseException, **extra: Any) -> dict[str, Any]:
    details = dict(getattr(err, "details", {}) or {})
    return {**details, **extra, "status": DIVERGED, "reason": str(err)}


# ---------------------------------------------------------------------------------------------
# Validation-based choice of the regularization factor
# ---------------------------------------------------------------------------------------------


def _fig3_base(s: Mapping[str, Any], ds: Dataset) -> dict[str, Any]:
    width = int(round(s.get("width_factor", 1) * _input_dim(ds)))
    return {
        "profile": s["profile"],
        "dataset": ds.name,
        "width": width,
        "jr_method": s["jr_method"],
        "n_proj": s["n_proj"],
        **{k: s[k] for k in TRAIN_KEYS},
    }


#: What every finished Fig. 3 run reports (a stored record without it is quarantined and
#: recomputed, never shown).
FINAL = ResultSchema({"test_acc": FRACTION, "train_acc": FRACTION})


def select_configs(s: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Configs of the factor-selection runs: every ``(regularizer, depth, n_train, lam, seed)``
    with ``n_train`` in ``s["select_n_train"]`` (``None``: every training-set size) and ``seed``
    in ``s["select_seeds"]`` (disjoint from the final seeds, see :func:`settings`).

    With ``s["n_val"]`` (and a training pool large enough, see :func:`validation_keys`) each run
    fits on the seed's class-balanced draw of ``n_train`` samples (as a final run of that seed
    would draw it) and validates on ``n_val`` further training samples (:func:`selection_data`);
    otherwise it holds out ``val_fraction`` of the ``n_train`` drawn samples (class stratified)
    and trains on the rest. The test split is never read.
    """
    gates.check_disjoint(s["select_seeds"], s["seeds"])
    ds = get_dataset(dataset)
    base = _fig3_base(s, ds)
    sizes = s.get("select_n_train") or s["n_train"]
    return [
        {
            "experiment": EXP_SELECT,
            **base,
            "regularizer": reg,
            "depth": depth,
            "n_train": n,
            "lam": lam,
            "seed": seed,
            "val_metrics": VAL_METRICS,
            **validation_keys(s, ds, n),
        }
        for reg in REGULARIZERS
        for depth in s["depths"]
        for n in sizes
        for lam in s["lambdas"][reg]
        for seed in s["select_seeds"]
    ]


def validation_keys(s: Mapping[str, Any], ds: Dataset, n_train: int) -> dict[str, Any]:
    """The validation keys of a selection config at size ``n_train``: ``{"n_val": n_val}`` when
    ``s["n_val"]`` is set and the training pool holds a class-balanced draw of ``n_train + n_val``
    samples, else ``{"val_fraction": s["val_fraction"]}`` (e.g. the paper's CIFAR-10 at 50000,
    which is the whole training split)."""
    n_val = s.get("n_val")
    if n_val:
        try:
            balanced_subset_indices(ds.y_train, int(n_train) + int(n_val), 0)
        except ValueError:
            pass
        else:
            return {"n_val": int(n_val)}
    return {"val_fraction": s["val_fraction"]}


def selection_indices(y_train: Any, config: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the training split of the fit and validation sets of an ``n_val`` selection
    run: the fit set is the seed's class-balanced draw of ``n_train`` (what a final run of that
    seed draws) and the validation set the ``n_val`` further samples of the same seeded balanced
    draw of ``n_train + n_val`` (disjoint from the fit set)."""
    n, seed = int(config["n_train"]), int(config["seed"])
    every = balanced_subset_indices(y_train, n + int(config["n_val"]), seed)
    fit = balanced_subset_indices(y_train, n, seed)
    if not np.isin(fit, every).all():
        raise ValueError("balanced draws are not nested")
    return fit, np.setdiff1d(every, fit)


def selection_data(config: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_fit, y_fit, x_val, y_val)`` of a selection run, from the training split only: with
    ``n_val`` in the config see :func:`selection_indices`; without it ``val_fraction`` of the
    ``n_train`` drawn samples is held out (class stratified)."""
    ds = get_dataset(config["dataset"])
    if config.get("n_val"):
        fit, val = selection_indices(ds.y_train, config)
        return ds.x_train[fit], ds.y_train[fit], ds.x_train[val], ds.y_train[val]
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    return train_val_split(x, y, config["val_fraction"], config["seed"])


def select_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One selection run: train on the fit set of :func:`selection_data`, score on its held-out
    validation set. Touches only the training split of the dataset (no test accuracy is
    computed)."""
    ds = get_dataset(config["dataset"])
    x_tr, y_tr, x_val, y_val = selection_data(config)
    model = _build(config, ds, weight_norm=False)
    try:
        res: Any = train(
            model,
            x_tr,
            y_tr,
            train_config(config),
            regularizer=regularizer_from_config(config),
            x_test=x_val,
            y_test=y_val,
        )
    except NonFiniteLossError as err:  # a factor that diverges scores zero; the grid goes on
        res = err
    return _select_record(config, res, int(x_tr.shape[0]), int(x_val.shape[0]))


def _select_record(
    config: Mapping[str, Any], res: Mapping[str, Any] | BaseException, n_fit: int, n_val: int
) -> dict[str, Any]:
    """The stored record of a selection run from its training result (or divergence: stored
    with status ``diverged`` and validation accuracy 0, so a diverging factor is never chosen)."""
    steps = steps_per_run(n_fit, config["batch_size"], config["epochs"])
    if isinstance(res, BaseException):
        return _diverged_record(
            res,
            val_acc=0.0,
            val_loss=float("nan"),
            train_acc=float("nan"),
            steps=steps,
            n_fit=n_fit,
            n_val=n_val,
        )
    return {
        "val_acc": res["test_acc"],
        "val_loss": res["test_loss"],
        "train_acc": res["train_acc"],
        "final_loss": res["final_loss"],
        "seconds": res["seconds"],
        "device": res["device"],
        "steps": steps,
        "n_fit": n_fit,
        "n_val": n_val,
    }


def choose_lambdas(
    select_frame: pd.DataFrame, by: Sequence[str] = ("dataset", "regularizer", "depth", "n_train")
) -> pd.DataFrame:
    """Per group ``by``, the factor chosen by :func:`jacnb.lab.selection.choose_lambdas`: every
    factor competes on validation accuracy alone (``unfit`` reports those whose selection runs
    stay below Fig. 3's 99 % fit), the best mean validation accuracy, exact ties broken by
    validation cross-entropy (a remaining tie is flagged ``chosen_by_tie`` and the factor gate
    withholds the verdict)."""
    fit = get_claim(CLAIM_BEATS["MNIST"]).gates.min_train_acc
    return choose(select_frame, by, min_train_acc=fit)


def chosen_row(
    chosen: pd.DataFrame, dataset: str, reg: str, depth: int, n_train: int
) -> pd.Series:
    """The :func:`choose_lambdas` row for a final run; if the selection ran at other sizes only,
    the one of the nearest selected size (stated on the page)."""
    sel = chosen[
        (chosen["dataset"] == dataset) & (chosen["regularizer"] == reg) & (chosen["depth"] == depth)
    ]
    if sel.empty:
        raise KeyError(f"no chosen factor for {dataset}/{reg}/depth {depth}")
    return sel.iloc[(sel["n_train"] - n_train).abs().argsort().iloc[0]]


def lookup_lambda(chosen: pd.DataFrame, dataset: str, reg: str, depth: int, n_train: int) -> float:
    """The chosen factor of :func:`chosen_row`."""
    return float(chosen_row(chosen, dataset, reg, depth, n_train)["lam"])


# ---------------------------------------------------------------------------------------------
# Final runs of Fig. 3 and the projection cell
# ---------------------------------------------------------------------------------------------


def fig3_configs(s: Mapping[str, Any], dataset: str, chosen: pd.DataFrame) -> list[dict[str, Any]]:
    """Final runs of Fig. 3: every ``(regularizer, depth, n_train, seed)`` at its chosen factor."""
    ds = get_dataset(dataset)
    base = _fig3_base(s, ds)
    return [
        {
            "experiment": EXP_FIG3,
            **base,
            "regularizer": reg,
            "depth": depth,
            "n_train": n,
            "lam": lookup_lambda(chosen, ds.name, reg, depth, n),
            "seed": seed,
        }
        for reg in REGULARIZERS
        for depth in s["depths"]
        for n in s["n_train"]
        for seed in s["seeds"]
    ]


def projection_configs(
    s: Mapping[str, Any], dataset: str, chosen: pd.DataFrame
) -> list[dict[str, Any]]:
    """The projection cell (``s["projection_cell"]``: depth and training-set size): the JR runs
    of that Fig. 3 cell with ``R_F`` by one random projection and exactly, both at the factor
    chosen for JR there; the arm that is the profile's own estimator is the Fig. 3 run itself
    (same config, trained once)."""
    cell = s.get("projection_cell")
    if not cell:
        return []
    finals = [
        c
        for c in fig3_configs(s, dataset, chosen)
        if c["regularizer"] == "jacobian"
        and c["depth"] == cell["depth"]
        and c["n_train"] == cell["n_train"]
    ]
    return [{**c, "jr_method": m} for m in ("exact", "projection") for c in finals]


def fig3_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One final Fig. 3 run: seeded draw of ``n_train`` samples, seeded init, test accuracy."""
    ds = get_dataset(config["dataset"])
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    model = _build(config, ds, weight_norm=False)
    try:
        res: Any = train(
            model,
            x,
            y,
            train_config(config),
            regularizer=regularizer_from_config(config),
            x_test=ds.x_test,
            y_test=ds.y_test,
        )
    except NonFiniteLossError as err:  # stored as status "diverged", excluded from means
        res = err
    return _fig3_record(config, res)


def _fig3_record(config: Mapping[str, Any], res: Mapping[str, Any] | BaseException) -> dict:
    """The stored record of a final Fig. 3 run from its training result (or divergence)."""
    steps = steps_per_run(config["n_train"], config["batch_size"], config["epochs"])
    if isinstance(res, BaseException):
        nan = float("nan")
        return _diverged_record(res, test_acc=nan, train_acc=nan, steps=steps)
    return {**{k: v for k, v in res.items() if k != "curves"}, "steps": steps}


# ---------------------------------------------------------------------------------------------
# Seeds trained together (jacnb.core.stacked), with the store's claims
# ---------------------------------------------------------------------------------------------

#: Config keys in which runs trained together may differ.
STACK_KEYS = ("seed", "lam")


def stack_seeds(s: Mapping[str, Any], device: str | torch.device | None = None) -> bool:
    """Whether the profile trains the seeds of a configuration together (``jacnb.core.stacked``).

    ``s["stack_seeds"]``: ``True``, ``False`` (the default) or ``"auto"`` -- stacked on CUDA
    only. On this project's 2-core CPU ``benchmarks/stacked_training.py`` measured stacking at
    0.75-0.97x the speed of separate runs (``cpu`` and paper nets), so ``smoke`` and ``cpu`` train
    separately; on a GPU a step of these small nets is bound by per-operation launch overhead,
    which stacking divides by the number of seeds (expected there, not yet measured).
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


def _one(run: Any, config: Mapping[str, Any]) -> Any:
    try:
        return run(config)
    except Exception as err:  # noqa: BLE001 - a divergence is a result; anything else is raised
        if getattr(err, "status", None) != DIVERGED:
            raise
        return err


def run_grid_stacked(
    configs: Iterable[Mapping[str, Any]],
    run: Any,
    run_group: Any,
    store: ResultStore | None = None,
    desc: str = "runs",
    stack: bool = False,
    progress: bool = True,
    executor: Any = None,
    schema: ResultSchema | None = None,
) -> pd.DataFrame:
    """:func:`jacnb.lab.store.run_grid`, with the missing runs of each :func:`stack_groups` group
    trained together by ``run_group(configs) -> [record or exception]`` when ``stack``.

    Before a group trains, each of its configs is claimed in the store
    (:meth:`~jacnb.lab.store.ResultStore.claim`); a config claimed by a live worker elsewhere is
    left to it (the closing :func:`run_grid` waits for its record), and the claims are released
    once the group's records are stored. A member that diverged (an exception with ``status ==
    "diverged"``) is stored with status ``diverged``; any other exception is raised after the
    group's other records are stored. Stored runs are never retrained, so a group whose other
    seeds are stored trains only the missing ones (alone: ``run``). The remaining configs (all of
    them without ``stack``) go through :func:`run_grid` with ``executor``.
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
            held = []
            try:
                mine = []
                for c in group:
                    claim = store.claim(c)
                    if claim is None:  # a live worker trains it; run_grid below waits for it
                        continue
                    held.append(claim.__enter__())
                    if not store.has(c):
                        mine.append(c)
                if len(mine) == 1:
                    results = [_one(run, mine[0])]
                elif mine:
                    results = list(run_group(mine))
                else:
                    results = []
                errors = []
                for config, res in zip(mine, results, strict=True):
                    if isinstance(res, BaseException):
                        if getattr(res, "status", None) == DIVERGED:
                            store.put(config, _diverged_record(res))
                        else:
                            errors.append(res)
                    else:
                        store.put(config, res)
                if errors:
                    raise errors[0]
            finally:
                for claim in held:
                    claim.release()
    return run_grid(
        configs,
        run,
        store,
        desc=desc,
        progress=progress and not stack,
        executor=executor,
        schema=schema,
    )


def _train_stacked_by_size(
    models: Sequence[nn.Module],
    data: Sequence[tuple[Tensor, Tensor]],
    configs: Sequence[TrainConfig],
    regularizer: Any,
    test: Any,
) -> list[dict[str, Any] | NonFiniteLossError]:
    """:func:`jacnb.core.stacked.train_stacked` over members with equally many training samples."""
    out: list[Any] = [None] * len(models)
    sizes: dict[int, list[int]] = {}
    for i, (x, _) in enumerate(data):
        sizes.setdefault(int(x.shape[0]), []).append(i)
    for idx in sizes.values():
        sub_test = test if test is None or isinstance(test, tuple) else [test[i] for i in idx]
        res = train_stacked(
            [models[i] for i in idx],
            [data[i] for i in idx],
            [configs[i] for i in idx],
            regularizer,
            sub_test,
        )
        for i, r in zip(idx, res, strict=True):
            out[i] = r
    return out


def select_run_stacked(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`select_run` for runs differing in seed and factor only, trained together."""
    ds = get_dataset(configs[0]["dataset"])
    splits = [selection_data(c) for c in configs]
    models = [_build(c, ds, weight_norm=False) for c in configs]
    results = _train_stacked_by_size(
        models,
        [(s[0], s[1]) for s in splits],
        [train_config(c) for c in configs],
        regularizer_from_config(configs[0]),
        [(s[2], s[3]) for s in splits],
    )
    return [
        _select_record(c, r, int(s[0].shape[0]), int(s[2].shape[0]))
        for c, r, s in zip(configs, results, splits, strict=True)
    ]


def fig3_run_stacked(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`fig3_run` for the seeds of one configuration, trained together."""
    ds = get_dataset(configs[0]["dataset"])
    data = [balanced_subset(ds.x_train, ds.y_train, c["n_train"], c["seed"]) for c in configs]
    models = [_build(c, ds, weight_norm=False) for c in configs]
    results = _train_stacked_by_size(
        models,
        data,
        [train_config(c) for c in configs],
        regularizer_from_config(configs[0]),
        (ds.x_test, ds.y_test),
    )
    return [_fig3_record(c, r) for c, r in zip(configs, results, strict=True)]


# ---------------------------------------------------------------------------------------------
# The grids
# ---------------------------------------------------------------------------------------------


def configs(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The configs known before any run: the selection grid of every panel whose dataset is
    present. (The final runs' factors come from the selection, so :func:`run` builds those.)"""
    return [
        c
        for p in plan_panels(s)
        if p.dataset is not None
        for c in select_configs(s, p.dataset)
    ]


def run_fig3(
    s: Mapping[str, Any],
    dataset: str,
    store: ResultStore | None = None,
    executor: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Selection grid, factor choice, final grid and projection cell for one dataset:
    ``(select, chosen, final, projection)`` (store frames; ``status`` says which runs diverged).

    With ``s["stack_seeds"]`` (see :func:`stack_seeds`) the runs of a configuration that differ
    only in seed (and, in the selection grid, factor) are trained together.
    """
    stack = stack_seeds(s)
    select = run_grid_stacked(
        select_configs(s, dataset),
        select_run,
        select_run_stacked,
        store,
        desc="select lambda",
        stack=stack,
        executor=executor,
    )
    chosen = choose_lambdas(select)
    final = run_grid_stacked(
        fig3_configs(s, dataset, chosen),
        fig3_run,
        fig3_run_stacked,
        store,
        desc="Fig. 3",
        stack=stack,
        executor=executor,
        schema=FINAL,
    )
    proj_cfgs = projection_configs(s, dataset, chosen)
    projection = (
        run_grid(proj_cfgs, fig3_run, store, desc="projection vs exact R_F", executor=executor)
        if proj_cfgs
        else pd.DataFrame()
    )
    return select, chosen, final, projection


# ---------------------------------------------------------------------------------------------
# Tidy runs frames and the verdicts (jacnb.lab.gates.decide, nothing else)
# ---------------------------------------------------------------------------------------------

_CHOICE_COLS = ("lam_grid", "chosen_by_tie", "selection_seeds", "selection_steps")


def fig3_runs(final: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """One row per final run (every status): the config, ``arm`` (= regularizer), the metrics,
    ``steps`` and the factor's provenance (``lam_grid``, ``chosen_by_tie``, ``selection_seeds``,
    ``selection_steps``, ``selected_at`` = the selection's training-set size)."""
    if final.empty:
        return final
    rows = []
    for _, r in final.iterrows():
        ch = chosen_row(chosen, r["dataset"], r["regularizer"], int(r["depth"]), r["n_train"])
        extra = {c: ch[c] for c in _CHOICE_COLS if c in ch}
        rows.append({**r.to_dict(), "arm": r["regularizer"], "selected_at": ch["n_train"], **extra})
    return pd.DataFrame(rows)


def par_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of claim ``fig3.mnist.jr_less_data_on_par``: weight decay at the largest
    training-set size (arm ``wd_more_data``) and JR at the second largest (``jr_less_data``)."""
    sizes = sorted(runs["n_train"].unique()) if len(runs) else []
    if len(sizes) < 2:
        return runs.iloc[0:0].assign(arm=pd.Series(dtype=str))
    wd = runs[(runs["arm"] == "weight_decay") & (runs["n_train"] == sizes[-1])]
    jr = runs[(runs["arm"] == "jacobian") & (runs["n_train"] == sizes[-2])]
    return pd.concat(
        [wd.assign(arm="wd_more_data"), jr.assign(arm="jr_less_data")], ignore_index=True
    )


def par_context(runs: pd.DataFrame) -> dict[str, Any]:
    """What the on-par claim (``fig3.mnist.jr_less_data_on_par``) weighs, from the finished final
    runs of its panel at the deepest net: ``small``/``large`` (the two largest sizes), the
    points weight decay gains from the smaller to the larger set (``data_gain``) and the points
    JR adds to weight decay on the smaller set (``jr_gain``), means over seeds; the claim can
    hold only where ``jr_gain`` makes up ``data_gain``. Empty without two sizes."""
    ok, _ = ok_runs(runs)
    sizes = sorted(ok["n_train"].unique()) if len(ok) else []
    if len(sizes) < 2:
        return {}
    depth = int(ok["depth"].max())
    at = ok[ok["depth"] == depth]
    mean = at.groupby(["arm", "n_train"])["test_acc"].mean()
    small, large = int(sizes[-2]), int(sizes[-1])
    try:
        wd_small, wd_large = mean[("weight_decay", small)], mean[("weight_decay", large)]
        jr_small = mean[("jacobian", small)]
    except KeyError:
        return {}
    return {
        "depth": depth,
        "small": small,
        "large": large,
        "data_gain": round(100 * float(wd_large - wd_small), 2),
        "jr_gain": round(100 * float(jr_small - wd_small), 2),
    }


def projection_runs(projection: pd.DataFrame) -> pd.DataFrame:
    """The runs of claim ``book.projection_on_par_with_exact``: ``arm`` = the ``R_F`` estimator."""
    if projection.empty:
        return projection
    return projection.assign(arm=projection["jr_method"])


def decide_runs(
    claim: str, runs: pd.DataFrame, *, profile: str, panel: Panel | None
) -> Verdict:
    """``gates.decide`` on every run of ``runs``, diverged ones included (``status``): the
    claim's registered treatment counts them (a failure of their arm at chance accuracy, or an
    undecided cell), never drops them; ``gates.not_run`` when the panel's dataset is absent.
    The dataset named is the one used; a stand-in (its panel label says so) is passed as
    ``stand_in=True``."""
    if panel is None or panel.dataset is None:
        why = panel.note if panel is not None else "no panel for this claim at this profile"
        return gates.not_run(claim, why, profile=profile)
    stand_in = gates.is_stand_in(panel.label)
    return gates.decide(
        claim, runs, profile=profile, dataset=dataset_label(panel.dataset), stand_in=stand_in
    )


def verdicts_from_runs(
    runs: pd.DataFrame,
    projection: pd.DataFrame,
    panels: Sequence[Panel],
    profile: str,
) -> list[Verdict]:
    """One :class:`Verdict` per registered claim of this page, from the tidy runs frames
    (:func:`fig3_runs`, :func:`projection_runs`); the only verdict path of the chapter."""
    by_paper = {p.paper: p for p in panels}
    out = []
    for claim in claims_of(NAME):
        if claim.id in CLAIM_BEATS.values():
            panel = by_paper.get(claim.dataset)
            sub = runs[runs["dataset"] == panel.dataset] if panel and panel.dataset else runs
            out.append(decide_runs(claim.id, sub, profile=profile, panel=panel))
        elif claim.id == CLAIM_PAR:
            panel = by_paper.get("MNIST")
            sub = runs[runs["dataset"] == panel.dataset] if panel and panel.dataset else runs
            pr = par_runs(sub) if len(sub) else sub
            if panel is not None and panel.dataset is not None and pr.empty:
                out.append(gates.not_run(claim.id, "fewer than two training-set sizes at this "
                                         "profile", profile=profile))
            else:
                out.append(decide_runs(claim.id, pr, profile=profile, panel=panel))
        elif claim.id == CLAIM_PROJ:
            panel = by_paper.get("MNIST")
            if projection.empty:
                out.append(gates.not_run(
                    claim.id, "the projection cell runs at the smoke and cpu profiles only",
                    profile=profile))
            else:
                out.append(decide_runs(claim.id, projection_runs(projection), profile=profile,
                                       panel=panel))
        else:  # pragma: no cover - a claim registered on this page that the chapter ignores
            raise ValueError(f"claim {claim.id} of page {NAME} has no runs in this chapter")
    return out


# ---------------------------------------------------------------------------------------------
# The chapter's result
# ---------------------------------------------------------------------------------------------


def _fmt_ci(claim_id: str, v: Verdict) -> str:
    if v.estimate is None:
        return "—"
    st = get_claim(claim_id).statistic
    unit = f" {st.unit}" if st.unit else ""
    est = f"{st.scale * v.estimate:+.2f}"
    if v.low is None or v.high is None or math.isnan(v.low):
        return est + unit
    return f"{est} [{st.scale * v.low:+.2f}, {st.scale * v.high:+.2f}]{unit}"


def paper_table_of(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """Ours beside the paper, one row per claim: the paper's statement (Figs. 3 and 4 are plots:
    the paper prints no number, :attr:`Claim.paper_note` says so), our estimate with its 95 %
    interval (the deciding cell), the seeds and the verdict."""
    rows = []
    for v in verdicts:
        c = get_claim(v.claim)
        rows.append(
            {
                "claim": v.claim,
                "paper": f"{c.statement} ({c.paper_note})" if c.paper_note else c.statement,
                "ours": _fmt_ci(v.claim, v),
                "statistic": c.statistic.description,
                "seeds": v.n_seeds,
                "dataset": v.dataset,
                "verdict": v.verdict,
            }
        )
    return pd.DataFrame(rows).set_index("claim")


@dataclass
class FullyConnectedResult:
    """Everything the Fig. 3 page shows: the store frames (every status) and the panels."""

    profile: str
    settings: dict[str, Any]
    panels: list[Panel]
    select: pd.DataFrame
    chosen: pd.DataFrame
    final: pd.DataFrame
    projection: pd.DataFrame
    _verdicts: list[Verdict] | None = field(default=None, repr=False)

    def runs(self) -> pd.DataFrame:
        """The tidy Fig. 3 runs frame (:func:`fig3_runs`), every status."""
        return fig3_runs(self.final, self.chosen)

    def frames(self) -> dict[str, pd.DataFrame]:
        """``runs`` (final runs, one row each, with ``status``), ``selection`` (selection runs),
        ``chosen`` (the factor per group) and ``projection`` (the projection cell's runs)."""
        return {
            "runs": self.runs(),
            "selection": self.select,
            "chosen": self.chosen,
            "projection": projection_runs(self.projection),
        }

    def left_out(self) -> dict[str, int]:
        """Diverged runs per grid (stored as such, excluded from means, tables and verdicts);
        ``projection`` counts only the arm that is not a Fig. 3 run itself."""
        proj = self.projection
        if not proj.empty:
            proj = proj[proj["jr_method"] != self.settings["jr_method"]]
        return {
            name: ok_runs(f)[1]
            for name, f in (("selection", self.select), ("final", self.final),
                            ("projection", proj))
        }

    def verdicts(self) -> list[Verdict]:
        if self._verdicts is None:
            self._verdicts = verdicts_from_runs(
                self.runs(), self.projection, self.panels, self.profile
            )
        return list(self._verdicts)

    def paper_table(self) -> pd.DataFrame:
        return paper_table_of(self.verdicts())

    def provenance(self) -> str:
        s = self.settings
        used = [p.dataset for p in self.panels if p.dataset]
        return lab_settings.provenance(
            s, " + ".join(used) or "none", depths=s["depths"], jr=f"{s['jr_method']} R_F",
            batch=s["batch_size"], lr=s["lr"], select_seeds=s["select_seeds"],
        )

    def figure(self):
        """Fig. 3 (seaborn): test accuracy against depth, colour = training-set size, solid = JR,
        dashed = weight decay; mean and 95 % t-interval over seeds; one panel per dataset."""
        return _fc_plots.fig3(
            ok_runs(self.runs())[0], self.panels, REGULARIZERS, self.provenance()
        )

    def selection_table(self) -> pd.DataFrame:
        """Mean validation accuracy [%] per factor (the λ grid as columns), the chosen factor, the
        factors left out because their selection nets did not fit the training set, and the
        flags, per (dataset, regularizer, depth, selection size)."""
        if self.select.empty:
            return pd.DataFrame()
        ok = self.select
        wide = ok.pivot_table(
            index=["dataset", "regularizer", "depth", "n_train"], columns="lam", values="val_acc"
        ) * 100
        wide.columns = [f"λ={c:g}" for c in wide.columns]
        wide = wide.round(2)
        ch = self.chosen.set_index(["dataset", "regularizer", "depth", "n_train"])
        wide["chosen λ"] = ch["lam"].map(lambda v: f"{v:g}")
        wide["below fit (competed)"] = ch["unfit"].map(factor_list)
        wide["tie broken by val. loss"] = ch["tie_broken_by_loss"]
        wide["at grid edge"] = ch["at_grid_edge"]
        wide["tie"] = ch["chosen_by_tie"]
        return wide

    def accuracy_table(self) -> pd.DataFrame:
        """Mean test accuracy [%] over finished seeds per (dataset, n_train, depth) and
        regularizer, JR − WD, the chosen factors and the number of finished / diverged seeds."""
        runs = self.runs()
        if runs.empty:
            return pd.DataFrame()
        ok, _ = ok_runs(runs)
        idx = ["dataset", "n_train", "depth"]
        t = ok.pivot_table(index=idx, columns="arm", values="test_acc", aggfunc="mean") * 100
        t.columns = [f"{REGULARIZERS[c]} [%]" for c in t.columns]
        if {"Jacobian reg. [%]", "weight decay [%]"} <= set(t.columns):
            t["JR − WD [pts]"] = t["Jacobian reg. [%]"] - t["weight decay [%]"]
        t = t.round(2)
        lam = runs.pivot_table(index=idx, columns="arm", values="lam", aggfunc="first")
        for c in lam.columns:
            t[f"λ {REGULARIZERS[c]}"] = lam[c].map(lambda v: f"{v:g}")
        done = ok.pivot_table(index=idx, columns="arm", values="seed", aggfunc="count")
        for c in done.columns:
            t[f"seeds {REGULARIZERS[c]}"] = done[c].reindex(t.index).fillna(0).astype(int)
        t["diverged"] = (runs["status"] != OK).groupby([runs[i] for i in idx]).sum()
        return t

    def settings_table(self) -> pd.DataFrame:
        """The profile's scalar and list settings, one row each (the λ grids and panels are in
        :meth:`lambda_table` and :meth:`panels_table`)."""
        s = {k: v for k, v in self.settings.items() if k not in ("lambdas", "panels")}
        return pd.Series({k: str(v) for k, v in s.items()}, name="setting").to_frame()

    def lambda_table(self) -> pd.DataFrame:
        """The factor grids of the selection, one row per regularizer, the factors as columns."""
        grids = self.settings["lambdas"]
        return pd.DataFrame(
            [[*g, *[None] * (max(map(len, grids.values())) - len(g))] for g in grids.values()],
            index=[REGULARIZERS[r] for r in grids],
            columns=[f"λ{i + 1}" for i in range(max(map(len, grids.values())))],
        )

    def panels_table(self) -> pd.DataFrame:
        """Which dataset each panel of Fig. 3 ran (a stand-in named as such, or not run)."""
        return pd.DataFrame([p.__dict__ for p in self.panels])

    def cost(self) -> tuple[pd.DataFrame, dict[str, float]]:
        """Seconds per SGD step measured here on the paper's 4-layer MNIST net (input and width
        784, batch 128) per regularizer, and the projected GPU-hours of the ``paper`` profile at
        an *assumed* 10 TFLOP/s (an estimate, not a measurement)."""
        steps = step_seconds(784, 10, depth=4, steps=3, regularizers={
            "warm-up": {"name": "none"},  # the first timing pays for thread start-up: dropped
            "plain": {"name": "none"},
            "weight_decay": {"name": "weight_decay"},
            "jacobian exact": {"name": "jacobian", "method": "exact"},
            "jacobian projection": {"name": "jacobian", "method": "projection", "n_proj": 1},
        })
        steps.pop("warm-up")
        ratio = {k: v / steps["plain"] for k, v in steps.items()}
        table = pd.DataFrame({"s/step (batch 128)": steps, "x plain SGD": ratio}).round(3)
        work = fig3_workload(settings("paper"), {"mnist": 784, "cifar10": 3072})
        mult = {"weight_decay": ratio["weight_decay"], "jacobian": ratio["jacobian exact"]}
        return table, project_gpu_hours(work, mult, gpu_tflops=10.0)

    def numbers(self) -> dict[str, Any]:
        """Measured numbers the page glues into its prose."""
        runs = self.runs()
        ok, _ = ok_runs(runs)
        left = self.left_out()
        n_sel = len(self.select)
        return {
            "fc_n_final": len(runs),
            "fc_n_select": n_sel,
            "fc_diverged": sum(left.values()),
            "fc_min_train_acc": round(100 * float(ok["train_acc"].min()), 2) if len(ok) else None,
            "fc_min_steps": int(runs["steps"].min()) if len(runs) else None,
            "fc_train_minutes": float(round(
                (self.select.get("seconds", pd.Series(dtype=float)).sum()
                 + self.final.get("seconds", pd.Series(dtype=float)).sum()
                 + self.projection.get("seconds", pd.Series(dtype=float)).sum()) / 60, 1)),
            "fc_n_reproduced": sum(v.verdict == REPRODUCED for v in self.verdicts()),
            "fc_n_claims": len(self.verdicts()),
            **{f"fc_par_{k}": None for k in ("depth", "small", "large", "data_gain", "jr_gain")},
            **{f"fc_par_{k}": v for k, v in self.par_context().items()},
            "fc_par_verdict": next(
                (v.verdict for v in self.verdicts() if v.claim == CLAIM_PAR), "not run"
            ),
        }

    def par_context(self) -> dict[str, Any]:
        """:func:`par_context` of the MNIST panel's final runs (empty if it did not run)."""
        runs = self.runs()
        if runs.empty:
            return {}
        mnist = [p.dataset for p in self.panels if p.paper == "MNIST" and p.dataset is not None]
        return par_context(runs[runs["dataset"].isin(mnist)]) if mnist else {}


def run(
    profile: str = "cpu", *, executor: Any = None, store: ResultStore | None = None
) -> FullyConnectedResult:
    """Train (or load) every run of the page at ``profile``: per present panel the selection
    grid, the final grid at the chosen factors and the projection cell."""
    s = settings(profile)
    store = store or ResultStore()
    panels = plan_panels(s)
    parts = [run_fig3(s, p.dataset, store, executor) for p in panels if p.dataset is not None]

    def cat(i: int) -> pd.DataFrame:
        frames = [p[i] for p in parts if not p[i].empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return FullyConnectedResult(
        s["profile"], s, panels, cat(0), cat(1), cat(2), cat(3)
    )


# ---------------------------------------------------------------------------------------------
# Timing and the projected cost of the paper profile (shared with jacnb.chapters.weight_norm)
# ---------------------------------------------------------------------------------------------


def step_seconds(
    in_dim: int,
    n_classes: int,
    depth: int,
    regularizers: Mapping[str, Mapping[str, Any]],
    batch_size: int = 128,
    steps: int = 5,
    weight_norm: bool = False,
) -> dict[str, float]:
    """Seconds of one SGD step (:func:`jacnb.lab.timing.make_step`, the training loop's step;
    fastest of ``steps``; batch ``batch_size``, width ``in_dim``) per
    regularizer ``{label: {"name": ..., **kwargs}}`` (``"none"``: plain SGD), on this machine."""
    dev = pick_device()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, in_dim, generator=gen).to(dev)
    y = torch.randint(n_classes, (batch_size,), generator=gen).to(dev)
    out = {}
    for label, spec in regularizers.items():
        spec = dict(spec)
        reg = make_regularizer(spec.pop("name"), **spec)
        torch.manual_seed(0)
        model = fully_connected(in_dim, n_classes, depth, weight_norm=weight_norm).to(dev)
        step = make_step(model, reg, x, y, lam=1e-3, lr=1e-3)
        # min: the least disturbed by other load
        out[label] = float(np.min(time_calls(step, dev, repeats=steps, warmup=1)))
    return out


def fc_params(in_dim: int, n_classes: int, depth: int, width: int) -> int:
    """Weights and biases of :func:`jacnb.core.models.fully_connected`."""
    dims = [in_dim] + [width] * (depth - 1) + [n_classes]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))


def measured_gflops(frame: pd.DataFrame, in_dim: int, n_classes: int) -> pd.DataFrame:
    """Per stored run: plain-SGD work ``6 * params * samples * epochs`` (GFLOP) and the achieved
    GFLOP/s on this machine (regularizer overhead included, so JR runs look slower)."""
    df = frame.copy()
    n_fit = df["n_fit"] if "n_fit" in df else df["n_train"]
    work = [
        6 * fc_params(in_dim, n_classes, int(d), int(w)) * n * e / 1e9
        for d, w, n, e in zip(df["depth"], df["width"], n_fit, df["epochs"], strict=True)
    ]
    df["gflop"] = work
    df["gflop_per_s"] = df["gflop"] / df["seconds"]
    return df


def project_gpu_hours(
    workload: Iterable[Mapping[str, Any]],
    multiplier: Mapping[str, float],
    n_classes: int = 10,
    gpu_tflops: float = 10.0,
) -> dict[str, float]:
    """Projected GPU-hours of a list of runs ``{in_dim, depth, width, n_fit, epochs,
    regularizer}``.

    Work = ``6 * params * n_fit * epochs`` FLOPs (forward + backward of plain SGD), times the
    regularizer's step-cost ``multiplier`` relative to plain SGD (measured on this CPU with
    :func:`step_seconds`); time = work / ``gpu_tflops`` sustained. An estimate, not a
    measurement (no GPU here); evaluation passes are not counted.
    """
    total, runs = 0.0, 0
    for r in workload:
        p = fc_params(r["in_dim"], n_classes, r["depth"], r["width"])
        total += 6 * p * r["n_fit"] * r["epochs"] * multiplier.get(r["regularizer"], 1.0)
        runs += 1
    return {"runs": runs, "pflop": total / 1e15, "gpu_hours": total / (gpu_tflops * 1e12) / 3600}


def fig3_workload(s: Mapping[str, Any], in_dims: Mapping[str, int]) -> list[dict]:
    """Every run (selection and final) of Fig. 3 at settings ``s`` (as :func:`settings` returns
    them) without loading any data; ``in_dims``: input dimension per dataset of the panels
    (e.g. 784 MNIST, 3072 CIFAR-10)."""
    out = []
    sel_sizes = s.get("select_n_train") or s["n_train"]
    for dataset, dim in in_dims.items():
        for reg in REGULARIZERS:
            for depth in s["depths"]:
                base = {
                    "dataset": dataset,
                    "in_dim": dim,
                    "depth": depth,
                    "width": dim,
                    "epochs": s["epochs"],
                    "regularizer": reg,
                }
                for n in sel_sizes:
                    n_fit = n if s.get("n_val") else n - round(s["val_fraction"] * n)
                    k = len(s["lambdas"][reg]) * len(s["select_seeds"])
                    out += [{**base, "n_fit": n_fit, "phase": "select"}] * k
                for n in s["n_train"]:
                    out += [{**base, "n_fit": n, "phase": "final"}] * len(s["seeds"])
    return out


# ---------------------------------------------------------------------------------------------
# Dry run (python -m jacnb.run fully_connected --profile paper --dry-run; jacnb.lab.dryrun)
# ---------------------------------------------------------------------------------------------


def largest_factors(s: Mapping[str, Any], select: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A stand-in for :func:`choose_lambdas` before any selection ran: every selection cell at
    the largest factor of its grid (a factor changes no step's shape, so the final grids of a
    dry run are the real ones)."""
    rows = [
        {k: c[k] for k in ("dataset", "regularizer", "depth", "n_train")}
        | {"lam": max(s["lambdas"][c["regularizer"]])}
        for c in select
    ]
    return pd.DataFrame(rows).drop_duplicates(ignore_index=True)


def dry_run(s: Mapping[str, Any], device: torch.device) -> list[DryConfig]:
    """Every run of the page at settings ``s`` as the dry run sees it: per present panel the
    selection grid, the final grid and the projection cell (:func:`configs`,
    :func:`fig3_configs`, :func:`projection_configs`), each with its SGD steps
    (:func:`steps_per_run` on the samples it fits) and one training step of its net."""
    out = []
    for panel in plan_panels(s):
        if panel.dataset is None:
            continue
        select = select_configs(s, panel.dataset)
        chosen = largest_factors(s, select)
        grids = {
            "Fig. 3 selection": select,
            "Fig. 3 final": fig3_configs(s, panel.dataset, chosen),
            "projection cell": projection_configs(s, panel.dataset, chosen),
        }
        out += [dry_config(phase, c) for phase, cs in grids.items() for c in cs]
    return out


def dry_config(phase: str, c: Mapping[str, Any], weight_norm: bool = False) -> DryConfig:
    """One config of this page (or of Fig. 4's, ``weight_norm``) for :mod:`jacnb.lab.dryrun`."""
    ds = get_dataset(c["dataset"])
    n = int(c["n_train"])
    n_fit = n - round(c["val_fraction"] * n) if "val_fraction" in c else n
    lam = float(c.get("lam", 0.0))
    reg = c.get("regularizer", "none") if lam > 0 else "none"
    if reg == "jacobian":
        reg = f"jacobian ({c['jr_method']})"

    def build(device: torch.device) -> Any:
        model = _build(c, ds, weight_norm=weight_norm).to(device)
        x, y = batch_of(ds, int(c["batch_size"]), device)
        regularizer = regularizer_from_config(c) if lam > 0 else None
        return make_step(model, regularizer, x, y, lam=lam, lr=float(c["lr"]))

    shape = (f"depth {c['depth']}", f"width {c['width']}", f"batch {c['batch_size']}", reg)
    steps = steps_per_run(n_fit, c["batch_size"], c["epochs"])
    return DryConfig(phase, ds.name, steps, shape, build, dict(c))
