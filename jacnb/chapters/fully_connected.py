"""Experiments of the fully connected chapter (Sokolic et al. 2017, Sec. VI-A, Figs. 3 and 4).

* **Fig. 3** (Sec. VI-A1): fully connected ReLU nets with L = 2, 3, 4 weight layers, hidden width
  equal to the input dimension, softmax output and cross-entropy, trained with weight decay
  (``sum_l ||W_l||_F^2``) or with the Jacobian regularizer ``R_F`` (eq. 49). The factors are
  chosen on a validation split of the training data (:func:`choose_lambdas`), never on test data;
  the final runs repeat the chosen factor over random draws of training set and initialization.
* **Fig. 4** (Sec. VI-A2): weight-normalized nets (every layer row-normalized, eq. 45), L = 2..5,
  widths ``k * input_dim``; per run the train/test accuracy, the smallest training score
  ``o(s_i)`` (eq. 33), ``max ||J(x)||_2`` over training and test sets, per-layer spectral and
  Frobenius norms (eqs. 36, 37) and the margin bounds next to measured margins (Theorem 4).

Every run is a pure function of its config dict and goes through
:func:`jacnb.lab.store.run_grid`, so re-running repeats nothing and a killed grid resumes.
The notebooks ``02_fully_connected`` and ``03_weight_norm`` only call into this module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from jacnb.core import bounds
from jacnb.core.data import (
    Dataset,
    balanced_subset,
    train_val_split,
)
from jacnb.core.jacobian import spectral_norm
from jacnb.core.models import fully_connected
from jacnb.core.regularizers import make_regularizer, regularizer_from_config
from jacnb.core.stacked import train_stacked
from jacnb.core.train import (
    TRAIN_KEYS,
    NonFiniteLossError,
    TrainConfig,
    accuracy,
    pick_device,
    train,
    train_config,
)
from jacnb.lab.datasets import (  # noqa: F401 - Panel, dataset_label, try_dataset: re-exported
    Panel,
    dataset_label,
    get_dataset,
    plan_panels,
    try_dataset,
)
from jacnb.lab.store import ResultStore, canonical, run_grid
from jacnb.lab.timing import make_step, time_calls
from jacnb.lab.verdicts import (  # noqa: F401 - re-exported for the notebooks and conv chapter
    NOT_REPRODUCED,
    NOT_TESTED,
    REPRODUCED,
    Verdict,
    from_row,
    slug,
    summarize,
    trend,
    verdict_jr_beats_wd,
    verdict_jr_matches_more_data,
    verdict_trend,
)

EXP_SELECT = "fc-jr-vs-wd-select"
EXP_FIG3 = "fc-jr-vs-wd"
EXP_FIG4 = "fc-weight-norm"

#: Regularizer names of Fig. 3 and their legend labels.
REGULARIZERS = {"jacobian": "Jacobian reg.", "weight_decay": "weight decay"}



# ---------------------------------------------------------------------------------------------
# Datasets and panels
# ---------------------------------------------------------------------------------------------

def _input_dim(ds: Dataset) -> int:
    return int(math.prod(ds.input_shape))


def _build(config: Mapping[str, Any], ds: Dataset, weight_norm: bool) -> nn.Module:
    torch.manual_seed(config["seed"])
    return fully_connected(
        _input_dim(ds), ds.n_classes, config["depth"], config["width"], weight_norm=weight_norm
    )


# ---------------------------------------------------------------------------------------------
# Fig. 3: validation-based choice of the regularization factor
# ---------------------------------------------------------------------------------------------


def _fig3_base(settings: Mapping[str, Any], ds: Dataset) -> dict[str, Any]:
    width = int(round(settings.get("width_factor", 1) * _input_dim(ds)))
    return {
        "profile": settings["profile"],
        "dataset": ds.name,
        "width": width,
        "jr_method": settings["jr_method"],
        "n_proj": settings["n_proj"],
        **{k: settings[k] for k in TRAIN_KEYS},
    }


def select_configs(settings: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Configs of the factor-selection runs: every ``(regularizer, depth, n_train, lam, seed)``
    with ``n_train`` in ``settings["select_n_train"]`` (``None``: every training-set size).

    Each run draws ``n_train`` training samples, holds out ``val_fraction`` of them (class
    stratified) as the validation set and trains on the rest.
    """
    ds = get_dataset(dataset)
    base = _fig3_base(settings, ds)
    sizes = settings.get("select_n_train") or settings["n_train"]
    return [
        {
            "experiment": EXP_SELECT,
            **base,
            "regularizer": reg,
            "depth": depth,
            "n_train": n,
            "lam": lam,
            "seed": seed,
            "val_fraction": settings["val_fraction"],
        }
        for reg in REGULARIZERS
        for depth in settings["depths"]
        for n in sizes
        for lam in settings["lambdas"][reg]
        for seed in settings["select_seeds"]
    ]


def select_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One selection run: train on ``(1 - val_fraction) n_train`` samples, score on the held-out
    rest. Touches only the training split of the dataset (no test accuracy is computed)."""
    ds = get_dataset(config["dataset"])
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, config["val_fraction"], config["seed"])
    model = _build(config, ds, weight_norm=False)
    try:
        res = train(
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
    return _select_record(res, int(x_tr.shape[0]), int(x_val.shape[0]))


def _select_record(
    res: Mapping[str, Any] | NonFiniteLossError, n_fit: int, n_val: int
) -> dict[str, Any]:
    """The stored record of a selection run from its training result (or divergence)."""
    if isinstance(res, NonFiniteLossError):
        res = {
            "test_acc": 0.0,
            "train_acc": float("nan"),
            "final_loss": float("nan"),
            "seconds": float("nan"),
            "device": str(pick_device()),
            "diverged": str(res),
        }
    return {
        "diverged": res.get("diverged", ""),
        "val_acc": res["test_acc"],
        "train_acc": res["train_acc"],
        "final_loss": res["final_loss"],
        "seconds": res["seconds"],
        "device": res["device"],
        "n_fit": n_fit,
        "n_val": n_val,
    }


def choose_lambdas(
    select_frame: pd.DataFrame, by: Sequence[str] = ("dataset", "regularizer", "depth", "n_train")
) -> pd.DataFrame:
    """Per group ``by``, the factor with the highest mean validation accuracy over seeds.

    Ties go to the smaller factor. Reads only ``val_acc``; a frame with test columns is
    refused, so the choice cannot depend on test data. Returns one row per group with
    ``lam`` (chosen), ``val_acc`` (its mean), ``at_grid_edge`` (the grid may be too narrow) and
    ``grid`` (``{lam: mean val_acc}``).
    """
    if any("test" in str(c) for c in select_frame.columns):
        raise ValueError("the selection frame must not contain test-set columns")
    by = list(by)
    means = select_frame.groupby([*by, "lam"], as_index=False)["val_acc"].mean()
    rows = []
    for key, grp in means.groupby(by, sort=True):
        grp = grp.sort_values("lam")
        best = grp.loc[grp["val_acc"].idxmax()]  # idxmax: first (smallest lam) among ties
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        lams = grp["lam"].to_numpy()
        row.update(
            lam=float(best["lam"]),
            val_acc=float(best["val_acc"]),
            at_grid_edge=bool(len(lams) > 1 and best["lam"] in (lams.min(), lams.max())),
            grid={
                float(k): round(float(v), 4)
                for k, v in zip(grp["lam"], grp["val_acc"], strict=True)
            },
        )
        rows.append(row)
    return pd.DataFrame(rows)


def lookup_lambda(chosen: pd.DataFrame, dataset: str, reg: str, depth: int, n_train: int) -> float:
    """The chosen factor for a final run; if the selection ran at other sizes only, the one of
    the nearest selected size (stated on the page)."""
    sel = chosen[
        (chosen["dataset"] == dataset) & (chosen["regularizer"] == reg) & (chosen["depth"] == depth)
    ]
    if sel.empty:
        raise KeyError(f"no chosen factor for {dataset}/{reg}/depth {depth}")
    nearest = sel.iloc[(sel["n_train"] - n_train).abs().argsort().iloc[0]]
    return float(nearest["lam"])


def fig3_configs(
    settings: Mapping[str, Any], dataset: str, chosen: pd.DataFrame
) -> list[dict[str, Any]]:
    """Final runs of Fig. 3: every ``(regularizer, depth, n_train, seed)`` at its chosen factor."""
    ds = get_dataset(dataset)
    base = _fig3_base(settings, ds)
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
        for depth in settings["depths"]
        for n in settings["n_train"]
        for seed in settings["seeds"]
    ]


def fig3_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One final Fig. 3 run: seeded draw of ``n_train`` samples, seeded init, test accuracy."""
    ds = get_dataset(config["dataset"])
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    model = _build(config, ds, weight_norm=False)
    try:
        res = train(
            model,
            x,
            y,
            train_config(config),
            regularizer=regularizer_from_config(config),
            x_test=ds.x_test,
            y_test=ds.y_test,
        )
    except NonFiniteLossError as err:  # recorded as a failed run (NaN accuracy), not hidden
        return _fig3_record(err)
    return _fig3_record(res)


def _fig3_record(res: Mapping[str, Any] | NonFiniteLossError) -> dict[str, Any]:
    """The stored record of a final Fig. 3 run from its training result (or divergence)."""
    if isinstance(res, NonFiniteLossError):
        nan = float("nan")
        return {
            "test_acc": nan,
            "train_acc": nan,
            "final_loss": nan,
            "seconds": nan,
            "device": str(pick_device()),
            "diverged": str(res),
        }
    return {**{k: v for k, v in res.items() if k != "curves"}, "diverged": ""}


def run_fig3(
    settings: Mapping[str, Any], dataset: str, store: ResultStore | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Selection grid, factor choice, final grid for one dataset: ``(select, chosen, final)``.

    With ``settings["stack_seeds"]`` (see :func:`stack_seeds`) the runs of a configuration that
    differ only in seed (and, in the selection grid, factor) are trained together.
    """
    stack = stack_seeds(settings)
    select = run_grid_stacked(
        select_configs(settings, dataset),
        select_run,
        select_run_stacked,
        store,
        desc="select lambda",
        stack=stack,
    )
    chosen = choose_lambdas(select)
    final = run_grid_stacked(
        fig3_configs(settings, dataset, chosen),
        fig3_run,
        fig3_run_stacked,
        store,
        desc="Fig. 3",
        stack=stack,
    )
    return select, chosen, final


# ---------------------------------------------------------------------------------------------
# Seeds trained together (jacnb.core.stacked)
# ---------------------------------------------------------------------------------------------

#: Config keys in which runs trained together may differ.
STACK_KEYS = ("seed", "lam")


def stack_seeds(settings: Mapping[str, Any], device: str | torch.device | None = None) -> bool:
    """Whether the profile trains the seeds of a configuration together (``jacnb.core.stacked``).

    ``settings["stack_seeds"]``: ``True``, ``False`` (the default) or ``"auto"`` -- stacked on
    CUDA only. On this project's 2-core CPU ``benchmarks/stacked_training.py`` measured stacking
    at 0.75-0.97x the speed of separate runs (``cpu`` and paper nets), so ``smoke`` and ``cpu``
    train separately; on a GPU a step of these small nets is bound by per-operation launch
    overhead, which stacking divides by the number of seeds (expected there, not yet measured).
    """
    mode = settings.get("stack_seeds", False)
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


def run_grid_stacked(
    configs: Iterable[Mapping[str, Any]],
    run: Any,
    run_group: Any,
    store: ResultStore | None = None,
    desc: str = "runs",
    stack: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`jacnb.lab.store.run_grid`, with the missing runs of each :func:`stack_groups` group
    trained together by ``run_group(configs) -> [record or exception]`` when ``stack``.

    One record per config, as ``run(config)`` writes it; stored runs are never retrained, so a
    group whose other seeds are stored trains only the missing ones (alone: ``run``). A member
    whose ``run_group`` entry is an exception is not stored; the first such is raised after the
    group's other records are stored (as ``run`` raising would stop the grid).
    """
    store = store or ResultStore()
    configs = list(configs)
    if stack:
        todo = [c for c in configs if not store.has(c)]
        groups = stack_groups(todo)
        cached = len(configs) - len(todo)
        bar = tqdm(
            groups,
            desc=f"{desc} ({cached} cached, {len(todo)} runs in {len(groups)} stacks)",
            disable=not progress,
        )
        for group in bar:
            if len(group) == 1:
                store.put(group[0], run(group[0]))
                continue
            results = run_group(group)
            errors = [r for r in results if isinstance(r, BaseException)]
            for config, res in zip(group, results, strict=True):
                if not isinstance(res, BaseException):
                    store.put(config, res)
            if errors:
                raise errors[0]
    return run_grid(configs, run, store, desc=desc, progress=progress and not stack)


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
    splits = []
    for c in configs:
        x, y = balanced_subset(ds.x_train, ds.y_train, c["n_train"], c["seed"])
        splits.append(train_val_split(x, y, c["val_fraction"], c["seed"]))
    models = [_build(c, ds, weight_norm=False) for c in configs]
    results = _train_stacked_by_size(
        models,
        [(s[0], s[1]) for s in splits],
        [train_config(c) for c in configs],
        regularizer_from_config(configs[0]),
        [(s[2], s[3]) for s in splits],
    )
    return [
        _select_record(r, int(s[0].shape[0]), int(s[2].shape[0]))
        for r, s in zip(results, splits, strict=True)
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
    return [_fig3_record(r) for r in results]


# ---------------------------------------------------------------------------------------------
# Aggregation and verdicts
# ---------------------------------------------------------------------------------------------


def fig3_verdicts(summary: pd.DataFrame, panels: Sequence[Panel]) -> pd.DataFrame:
    """The two Fig. 3 claims, per panel that ran; ``not tested`` for panels that did not."""
    rows = []
    for panel in panels:
        if panel.dataset is None:
            rows.append(
                {
                    "panel": panel.label,
                    "claim": "JR beats weight decay in every configuration",
                    "verdict": NOT_TESTED,
                    "evidence": panel.note,
                }
            )
            continue
        sub = summary[summary["dataset"] == panel.dataset]
        rows.append({"panel": panel.label, **verdict_jr_beats_wd(sub)})
        if panel.paper == "MNIST":
            depth = int(sub["depth"].max()) if len(sub) else 4
            v = verdict_jr_matches_more_data(sub, panel.dataset, depth=depth)
            if depth != 4:
                v["evidence"] += f"; depth {depth} is the deepest net at this profile"
            rows.append({"panel": panel.label, **v})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Fig. 4: weight-normalized nets
# ---------------------------------------------------------------------------------------------


def fig4_configs(settings: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Every ``(depth, width factor, seed)`` of Fig. 4 at this profile."""
    ds = get_dataset(dataset)
    dim = _input_dim(ds)
    return [
        {
            "experiment": EXP_FIG4,
            "profile": settings["profile"],
            "dataset": ds.name,
            "n_train": settings["n_train"],
            "depth": depth,
            "width_factor": k,
            "width": k * dim,
            "seed": seed,
            "n_margin": settings["n_margin"],
            **{key: settings[key] for key in TRAIN_KEYS},
        }
        for depth in settings["depths"]
        for k in settings["width_factors"]
        for seed in settings["seeds"]
    ]


def per_sample_spectral(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """``||J(x_i)||_2`` for every sample (softmax output), batched; ``max`` of it is what
    :func:`jacnb.core.jacobian.max_spectral_norm` returns (Fig. 4 (c), (d))."""
    return torch.cat(
        [spectral_norm(model, x[s : s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    )


def weight_norm_metrics(
    model: nn.Module, x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor, n_margin: int
) -> dict[str, Any]:
    """Everything Fig. 4 and Sec. VI-A2 discuss, for one trained model (eval mode).

    Scores (eq. 33) on the unit-norm scale and the printed sqrt(2) scale (2x); ``max ||J||_2``
    on train and test; per-layer ``||W_l||_2``, ``||W_l||_F`` and their products; per training
    sample (correctly classified) the bounds ``gamma_3`` (eq. 36), ``gamma_4`` (eq. 37),
    ``o / ||J(x_i)||_2`` (the sample-local proxy of eq. 34 the paper argues with) and
    ``o / max ||J||_2`` over train and test (an estimate of eq. 35), summarized by medians; the
    measured margin (upper bound on ``gamma^d``) on the first ``n_margin`` training samples.
    """
    model.eval()
    dev = next(model.parameters()).device
    x_tr, y_tr, x_te, y_te = (t.to(dev) for t in (x_tr, y_tr, x_te, y_te))
    with torch.no_grad():
        f_tr = torch.softmax(model(x_tr), dim=1)
    o_unit = bounds.score(f_tr, y_tr, "unit")
    o_printed = bounds.score(f_tr, y_tr, "printed")
    j_tr = per_sample_spectral(model, x_tr)
    j_te = per_sample_spectral(model, x_te)
    norms = bounds.weight_norms(model)
    prod_spec, prod_frob = bounds.norm_products(norms)
    ok = o_unit > 0
    o_ok = o_unit[ok]
    j_sup = float(torch.maximum(j_tr.max(), j_te.max()))
    sub = slice(0, min(n_margin, x_tr.shape[0]))
    margin = bounds.measured_margin(model, x_tr[sub], y_tr[sub], x_pool=x_tr)
    margin_ok = margin[torch.isfinite(margin) & (margin > 0)]

    def med(t: Tensor) -> float:
        return float(t.median()) if t.numel() else float("nan")

    return {
        "train_acc": accuracy(model, x_tr, y_tr),
        "test_acc": accuracy(model, x_te, y_te),
        "min_score": float(o_unit.min()),
        "min_score_printed": float(o_printed.min()),
        "median_score": float(o_unit.median()),
        "max_J_train": float(j_tr.max()),
        "max_J_test": float(j_te.max()),
        "median_J_train": float(j_tr.median()),
        "median_J_test": float(j_te.median()),
        "spectral": [n.spectral for n in norms],
        "frobenius": [n.frobenius for n in norms],
        "min_spectral": min(n.spectral for n in norms),
        "prod_spectral": prod_spec,
        "prod_frobenius": prod_frob,
        "gamma3_median": med(o_ok / prod_spec),
        "gamma4_median": med(o_ok / prod_frob),
        "gamma_localJ_median": med(o_ok / j_tr[ok]),
        "gamma_supJ_median": med(o_ok / j_sup),
        "measured_margin_median": med(margin_ok),
        "n_margin": int(margin.numel()),
    }


def fig4_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One Fig. 4 run: weight-normalized net (eq. 45, all layers), no other regularization."""
    ds = get_dataset(config["dataset"])
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    model = _build(config, ds, weight_norm=True)
    res = train(model, x, y, train_config(config, lam=0.0))
    return _fig4_record(config, ds, model, x, y, res)


def fig4_run_stacked(
    configs: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any] | NonFiniteLossError]:
    """:func:`fig4_run` for the seeds of one configuration, trained together; the metrics are
    computed per trained model. A diverged seed's entry is its error (not a record)."""
    ds = get_dataset(configs[0]["dataset"])
    data = [balanced_subset(ds.x_train, ds.y_train, c["n_train"], c["seed"]) for c in configs]
    models = [_build(c, ds, weight_norm=True) for c in configs]
    cfgs = [train_config(c, lam=0.0) for c in configs]
    results = _train_stacked_by_size(models, data, cfgs, None, None)
    return [
        r if isinstance(r, NonFiniteLossError) else _fig4_record(c, ds, m, x, y, r)
        for c, m, (x, y), r in zip(configs, models, data, results, strict=True)
    ]


def _fig4_record(
    config: Mapping[str, Any],
    ds: Dataset,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    res: Mapping[str, Any],
) -> dict[str, Any]:
    """The stored record of a Fig. 4 run: the metrics of the trained model and its timing."""
    t0 = time.perf_counter()
    metrics = weight_norm_metrics(model, x, y, ds.x_test, ds.y_test, config["n_margin"])
    return {
        **metrics,
        "seconds": res["seconds"],
        "eval_seconds": time.perf_counter() - t0,
        "device": res["device"],
        "final_loss": res["final_loss"],
    }


FIG4_METRICS = (
    "train_acc",
    "test_acc",
    "min_score",
    "min_score_printed",
    "max_J_train",
    "max_J_test",
    "min_spectral",
    "prod_spectral",
    "prod_frobenius",
    "gamma3_median",
    "gamma4_median",
    "gamma_localJ_median",
    "gamma_supJ_median",
    "measured_margin_median",
    "seconds",
)


def run_fig4(
    settings: Mapping[str, Any], dataset: str, store: ResultStore | None = None
) -> pd.DataFrame:
    """The Fig. 4 grid (cached in the store); seeds trained together where
    :func:`stack_seeds` says so."""
    return run_grid_stacked(
        fig4_configs(settings, dataset),
        fig4_run,
        fig4_run_stacked,
        store,
        desc="Fig. 4",
        stack=stack_seeds(settings),
    )


def layer_norms_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, width, layer): mean ``||W_l||_2`` and ``||W_l||_F`` over seeds."""
    rows = []
    for _, r in frame.iterrows():
        for i, (s, f) in enumerate(zip(r["spectral"], r["frobenius"], strict=True), start=1):
            rows.append(
                {
                    "depth": r["depth"],
                    "width": r["width"],
                    "layer": i,
                    "spectral": s,
                    "frobenius": f,
                    "seed": r["seed"],
                }
            )
    df = pd.DataFrame(rows)
    return df.groupby(["depth", "width", "layer"])[["spectral", "frobenius"]].mean().reset_index()


def fig4_verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """The Sec. VI-A2 claims, on :func:`summarize` of the Fig. 4 runs by depth and width."""
    rows = []
    ref = summary[
        (summary["depth"] == summary["depth"].min()) & (summary["width"] == summary["width"].min())
    ]
    rest = summary.drop(ref.index)
    ref_acc = float(ref["train_acc"].iloc[0]) if len(ref) else float("nan")
    low = rest[rest["train_acc"] < 0.999]
    ok = len(low) == 0 and ref_acc >= 0.99
    rows.append(
        {
            "claim": "train accuracy 100% (99.6% for the smallest net)",
            "verdict": REPRODUCED if ok else NOT_REPRODUCED,
            "evidence": f"smallest net {100 * ref_acc:.2f}%; other nets: min "
            f"{100 * rest['train_acc'].min():.2f}%, {len(low)}/{len(rest)} below 99.9%",
        }
    )
    for metric, name in (("test_acc", "test accuracy"), ("min_score", "smallest training score")):
        for along, within in (("depth", "width"), ("width", "depth")):
            rows.append(
                verdict_trend(summary, metric, along, within, +1, f"{name} grows with {along}")
            )
    for along, within in (("depth", "width"), ("width", "depth")):
        rows.append(
            verdict_trend(
                summary,
                "max_J_train",
                along,
                within,
                -1,
                f"max ||J||_2 on train falls with {along}",
            )
        )
    rows.append(
        verdict_trend(
            summary, "max_J_test", "depth", "width", +1, "max ||J||_2 on test rises with depth"
        )
    )
    min_spec = float(summary["min_spectral"].min())
    rows.append(
        {
            "claim": "every ||W_l||_2 > 1",
            "verdict": REPRODUCED if min_spec > 1 else NOT_REPRODUCED,
            "evidence": f"smallest layer spectral norm over all nets (seed mean) {min_spec:.3f}; "
            "note: unit-norm rows force ||W_l||_2 >= 1",
        }
    )
    for along, within in (("depth", "width"), ("width", "depth")):
        rows.append(
            verdict_trend(
                summary,
                "gamma4_median",
                along,
                within,
                -1,
                f"Frobenius bound gamma_4 shrinks with {along} (predicts growing GE)",
            )
        )
        v = verdict_trend(
            summary,
            "gamma_localJ_median",
            along,
            within,
            -1,
            f"Jacobian proxy o/||J(x_i)||_2 does not shrink with {along}",
        )
        # the claim is the negation: reproduced iff the proxy does NOT fall in every group
        tr = (
            trend(summary, "gamma_localJ_median", along, within)
            if summary[along].nunique() > 1
            else None
        )
        if tr is not None:
            falling = int((tr["slope"] < 0).sum())
            v["verdict"] = REPRODUCED if falling == 0 else NOT_REPRODUCED
            v["evidence"] = f"proxy falls with {along} in {falling}/{len(tr)} groups; " + v[
                "evidence"
            ].split("(", 1)[-1].rstrip(")")
        rows.append(v)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Timing and the projected cost of the paper profile
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


def fig3_workload(settings: Mapping[str, Any], in_dims: Mapping[str, int]) -> list[dict]:
    """Every run (selection and final) of Fig. 3 at ``settings`` without loading any data;
    ``in_dims``: input dimension per dataset of the panels (e.g. 784 MNIST, 3072 CIFAR-10)."""
    out = []
    sel_sizes = settings.get("select_n_train") or settings["n_train"]
    for dataset, dim in in_dims.items():
        for reg in REGULARIZERS:
            for depth in settings["depths"]:
                base = {
                    "dataset": dataset,
                    "in_dim": dim,
                    "depth": depth,
                    "width": dim,
                    "epochs": settings["epochs"],
                    "regularizer": reg,
                }
                for n in sel_sizes:
                    n_fit = n - round(settings["val_fraction"] * n)
                    k = len(settings["lambdas"][reg]) * len(settings["select_seeds"])
                    out += [{**base, "n_fit": n_fit, "phase": "select"}] * k
                for n in settings["n_train"]:
                    out += [{**base, "n_fit": n, "phase": "final"}] * len(settings["seeds"])
    return out


def fig4_workload(settings: Mapping[str, Any], in_dim: int) -> list[dict]:
    """Every run of Fig. 4 at ``settings`` (plain SGD cost; weight normalization is cheap)."""
    return [
        {
            "in_dim": in_dim,
            "depth": d,
            "width": k * in_dim,
            "n_fit": settings["n_train"],
            "epochs": settings["epochs"],
            "regularizer": "none",
        }
        for d in settings["depths"]
        for k in settings["width_factors"]
        for _ in settings["seeds"]
    ]


def fig3_verdict_records(
    summary: pd.DataFrame, panels: Sequence[Panel], profile: str = ""
) -> list[Verdict]:
    """:func:`fig3_verdicts` as :class:`~jacnb.lab.verdicts.Verdict` records (same decisions):
    claims ``fig3.jr_beats_wd`` and ``fig3.jr_matches_more_data``, one per panel."""
    out = []
    for row in fig3_verdicts(summary, panels).to_dict("records"):
        claim = "fig3.jr_beats_wd" if row["claim"].startswith("JR beats") else (
            "fig3.jr_matches_more_data"
        )
        out.append(from_row(row, claim, dataset=row["panel"], profile=profile))
    return out


def fig4_verdict_records(summary: pd.DataFrame, profile: str = "") -> list[Verdict]:
    """:func:`fig4_verdicts` as :class:`~jacnb.lab.verdicts.Verdict` records (same decisions);
    claim ids ``fig4.<claim sentence as a slug>``."""
    return [
        from_row(row, f"fig4.{slug(row['claim'])}", profile=profile)
        for row in fig4_verdicts(summary).to_dict("records")
    ]
