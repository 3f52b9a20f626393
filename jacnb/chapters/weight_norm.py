"""Experiments of the weight-normalization chapter (Sokolic et al. 2017, Sec. VI-A2, Fig. 4).

Notebook: ``notebooks/03_weight_norm.ipynb``
(``from jacnb.chapters import weight_norm as chapter``).

Weight-normalized nets (every layer row-normalized, eq. 45), L = 2..5, widths ``k * input_dim``,
no other regularization; per run the train/test accuracy, the smallest training score
``o(s_i)`` (eq. 33), ``max ||J(x)||_2`` over training and test sets, per-layer spectral and
Frobenius norms (eqs. 36, 37) and the margin bounds next to measured margins (Theorem 4).

**Score convention.** ``min_score`` is eq. (33) with unit-norm ``v_ij = (δ_i − δ_j)/√2``
(``jacnb.core.bounds.score(..., scale="unit")``): with it ``o(s_i)`` is the distance from
``f(x_i)`` to the nearest decision hyperplane, the constant Theorem 4 needs, so the bounds of
this page use it. ``min_score_printed`` is the paper's printed ``√2 (f_y − f_j)`` convention
(``scale="printed"``, exactly 2x), the one Fig. 4 (b) plots ("close to √2" is only reachable on
it); the figure shows both axes. The trend claims are judged on ``min_score`` (a positive
factor changes no slope's sign), the claim that the score is close to √2
(``fig4.score_close_to_sqrt2``) on ``min_score_printed``.

Interface: :data:`NAME`, :func:`settings`, :func:`configs`, :func:`run` ->
:class:`WeightNormResult` (``frames()``, ``figure()`` (Fig. 4 as the paper plots it),
``trends_figure()`` and ``values_figure()`` (each claim's per-cell statistic as its verdict
computed it), ``bounds_figure()``, ``paper_table()``, ``verdicts()``: every ``fig4.*`` claim
through :func:`jacnb.lab.gates.decide`). The net builder
and cost arithmetic are :mod:`jacnb.lab.fc_nets`' (shared with Fig. 3's page), the stacked grids
and verdicts :mod:`jacnb.lab.pipeline`'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from jacnb.chapters import _weight_norm_plots
from jacnb.core import bounds
from jacnb.core.data import Dataset, balanced_subset
from jacnb.core.jacobian import spectral_norm
from jacnb.core.stacked import train_stacked_by_size
from jacnb.core.train import TRAIN_KEYS, NonFiniteLossError, accuracy, train, train_config
from jacnb.lab import settings as lab_settings
from jacnb.lab.datasets import Panel, get_dataset, try_dataset
from jacnb.lab.dryrun import DryConfig
from jacnb.lab.fc_nets import (
    build_fc,
    dry_config,
    input_dim,
    measured_gflops,
    project_gpu_hours,
)
from jacnb.lab.pipeline import (
    assemble_verdicts,
    claims_table,
    decide_panel,
    run_grid_stacked,
    sgd_steps,
    stack_seeds,
)
from jacnb.lab.records import split_ok
from jacnb.lab.store import ResultStore
from jacnb.lab.verdicts import REPRODUCED, Verdict

NAME = "03_weight_norm"
EXP_FIG4 = "fc-weight-norm"


@dataclass(frozen=True)
class Settings:
    """Fig. 4 at the ``cpu`` profile (:data:`OVERRIDES`: the other profiles' changes): nets of
    every depth in ``depths`` and width ``k * input_dim`` for ``k`` in ``width_factors``, trained
    on ``n_train`` samples; the measured margin on ``n_margin`` of them.

    ``cpu``: batch 64, 3 seeds, 1200 samples. Measured: 24 epochs (lr /10 every 8, 456 steps)
    left one L = 5 net at 98.25 % training accuracy (the fit gate), so 30 epochs with lr /10
    every 10 (19 x 30 = 570 steps)."""

    lr: float = 0.1
    momentum: float = 0.9
    dataset: str = "mnist-10k"
    datasets: tuple[str, ...] = ("mnist-10k",)
    n_train: int = 1200
    depths: tuple[int, ...] = (2, 3, 4, 5)
    width_factors: tuple[int, ...] = (1, 2)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 30
    batch_size: int = 64
    lr_drop_every: int = 10
    n_margin: int = 32
    stack_seeds: bool | str = False


OVERRIDES: dict[str, dict[str, Any]] = {
    "smoke": dict(dataset="digits", datasets=("digits",), n_train=300, batch_size=128,
                  depths=(2, 3), seeds=(0,), epochs=3, lr_drop_every=2, n_margin=16),
    "paper": dict(dataset="mnist", datasets=("mnist",), n_train=5000, batch_size=128,
                  width_factors=(1, 2, 3, 4, 5, 6), seeds=(0, 1, 2, 3, 4), epochs=120,
                  lr_drop_every=40, n_margin=256, stack_seeds="auto"),
}


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.resolve`)."""
    return lab_settings.resolve(Settings(), OVERRIDES, profile)


def configs(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every ``(depth, width factor, seed)`` of Fig. 4 at these settings."""
    return fig4_configs(s, s["dataset"])


def fig4_configs(s: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Every ``(depth, width factor, seed)`` of Fig. 4 at settings ``s`` on ``dataset``."""
    ds = get_dataset(dataset)
    dim = input_dim(ds)
    return [
        {
            "experiment": EXP_FIG4,
            "profile": s["profile"],
            "dataset": ds.name,
            "n_train": s["n_train"],
            "depth": depth,
            "width_factor": k,
            "width": k * dim,
            "seed": seed,
            "n_margin": s["n_margin"],
            **{key: s[key] for key in TRAIN_KEYS},
        }
        for depth in s["depths"]
        for k in s["width_factors"]
        for seed in s["seeds"]
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
    """One Fig. 4 run: weight-normalized net (eq. 45, all layers), no other regularization. A
    divergence is raised (:class:`jacnb.core.train.DivergedError`) and stored as such."""
    ds = get_dataset(config["dataset"])
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    model = build_fc(config, ds, weight_norm=True)
    res = train(model, x, y, train_config(config, lam=0.0, evaluate_once=True))
    return _fig4_record(config, ds, model, x, y, res)


def fig4_run_stacked(
    configs: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any] | NonFiniteLossError]:
    """:func:`fig4_run` for the seeds of one configuration, trained together; the metrics are
    computed per trained model. A diverged seed's entry is its error (stored as diverged)."""
    ds = get_dataset(configs[0]["dataset"])
    data = [balanced_subset(ds.x_train, ds.y_train, c["n_train"], c["seed"]) for c in configs]
    models = [build_fc(c, ds, weight_norm=True) for c in configs]
    cfgs = [train_config(c, lam=0.0, evaluate_once=True) for c in configs]
    results = train_stacked_by_size(models, data, cfgs, None, None)
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
        "steps": sgd_steps(config["n_train"], config["batch_size"], config["epochs"]),
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
    s: Mapping[str, Any],
    dataset: str,
    store: ResultStore | None = None,
    executor: Any = None,
) -> pd.DataFrame:
    """The Fig. 4 grid (cached in the store; every status); seeds trained together where
    :func:`jacnb.lab.pipeline.stack_seeds` says so."""
    return run_grid_stacked(
        fig4_configs(s, dataset),
        fig4_run,
        fig4_run_stacked,
        store,
        desc="Fig. 4",
        stack=stack_seeds(s),
        executor=executor,
    )


def layer_norms_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, width, layer): mean ``||W_l||_2`` and ``||W_l||_F`` over finished seeds."""
    rows = []
    for _, r in split_ok(frame)[0].iterrows():
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


def fig4_workload(s: Mapping[str, Any], in_dim: int) -> list[dict]:
    """Every run of Fig. 4 at ``s`` (plain SGD cost; weight normalization is cheap)."""
    return [
        {
            "in_dim": in_dim,
            "depth": d,
            "width": k * in_dim,
            "n_fit": s["n_train"],
            "epochs": s["epochs"],
            "regularizer": "none",
        }
        for d in s["depths"]
        for k in s["width_factors"]
        for _ in s["seeds"]
    ]


def panel_of(s: Mapping[str, Any]) -> Panel:
    """The page's one panel: the paper's MNIST, run on ``s["dataset"]`` (named as a stand-in when
    it is not MNIST), or not run when that dataset is absent."""
    name = s["dataset"]
    if try_dataset(name) is None:
        return Panel("MNIST", None, "MNIST: not run", f"not run: dataset absent ({name})")
    return Panel.running("MNIST", name, get_dataset(name).source)


def verdicts_from_runs(runs: pd.DataFrame, panel: Panel, profile: str) -> list[Verdict]:
    """One :class:`Verdict` per ``fig4.*`` claim, :func:`jacnb.lab.gates.decide` on the tidy
    runs frame (diverged runs counted in their cells); the only verdict path of the chapter."""
    runs = with_norm_ratio(runs)
    return assemble_verdicts(
        NAME, lambda _claim: lambda c: decide_panel(c.id, runs, profile=profile, panel=panel)
    )


def with_norm_ratio(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``spec_frob_ratio``: per net, the largest ``||W_l||_2 / ||W_l||_F`` over its
    layers (claim ``fig4.spectral_much_below_frobenius``; NaN for a run without norms)."""
    if runs.empty or "spectral" not in runs:
        return runs

    def ratio(r: pd.Series) -> float:
        spec, frob = r["spectral"], r["frobenius"]
        if not isinstance(spec, (list, tuple)) or not spec:
            return float("nan")
        return max(s / f for s, f in zip(spec, frob, strict=True))

    return runs.assign(spec_frob_ratio=runs.apply(ratio, axis=1))


@dataclass
class WeightNormResult:
    """Everything the Fig. 4 page shows: the runs (store frame, every status) and the panel."""

    profile: str
    settings: dict[str, Any]
    panel: Panel
    frame: pd.DataFrame
    _verdicts: list[Verdict] | None = field(default=None, repr=False)

    def runs(self) -> pd.DataFrame:
        """The tidy runs frame: one row per run, config, metrics (with ``spec_frob_ratio``),
        ``steps`` and ``status``."""
        return with_norm_ratio(self.frame)

    def frames(self) -> dict[str, pd.DataFrame]:
        ok = split_ok(self.frame)[0]
        return {
            "runs": self.runs(),
            "layer_norms": layer_norms_table(self.frame) if len(ok) else pd.DataFrame(),
        }

    def left_out(self) -> int:
        """Diverged runs (stored as such; left out of the means, the tables and Fig. 4, counted
        in the verdicts' cells, where one withholds the verdict: the divergence gate)."""
        return split_ok(self.frame)[1]

    def verdicts(self) -> list[Verdict]:
        if self._verdicts is None:
            self._verdicts = verdicts_from_runs(self.frame, self.panel, self.profile)
        return list(self._verdicts)

    def paper_table(self) -> pd.DataFrame:
        return claims_table(self.verdicts())

    def provenance(self) -> str:
        s = self.settings
        return lab_settings.provenance(
            s, self.panel.dataset or "none", depths=s["depths"],
            widths=[f"{k}x" for k in s["width_factors"]], batch=s["batch_size"], lr=s["lr"],
        )

    def figure(self):
        """Fig. 4 (a)-(d) against width, one line per depth, mean and 95 % t-interval over the
        finished seeds (seaborn); panel (b) on the unit score with the printed √2 scale as right
        axis. A description: the verdicts are decided on :meth:`trends_figure` and
        :meth:`values_figure`."""
        return _weight_norm_plots.fig4(
            split_ok(self.frame)[0], self.provenance(), note=self.panel.note
        )

    def trends_figure(self):
        """What decided the trend claims: per cell the mean per-seed slope with its t-interval
        against 0, from every run the verdicts read (:func:`jacnb.lab.gates.cell_table`)."""
        return _weight_norm_plots.fig4_trends(self.runs(), self.provenance(), self.panel.note)

    def values_figure(self):
        """What decided the value claims (fit, spectral norms, score near √2, spectral over
        Frobenius norm): per cell the mean with its t-interval against the threshold."""
        return _weight_norm_plots.fig4_values(self.runs(), self.provenance(), self.panel.note)

    def bounds_figure(self):
        """Products of layer norms and margin bounds beside the measured margin, against depth."""
        return _weight_norm_plots.bounds_vs_depth(
            split_ok(self.frame)[0], self.provenance(), note=self.panel.note
        )

    def table(self) -> pd.DataFrame:
        """Means over finished seeds per (depth, width factor): Fig. 4's quantities, widths as
        columns."""
        ok = split_ok(self.frame)[0]
        if ok.empty:
            return pd.DataFrame()
        cols = ["train_acc", "test_acc", "min_score", "min_score_printed", "max_J_train",
                "max_J_test", "min_spectral"]
        t = ok.groupby(["depth", "width_factor"])[cols].mean()
        t[["train_acc", "test_acc"]] *= 100
        t = t.rename(columns={"train_acc": "train acc [%]", "test_acc": "test acc [%]"})
        t["seeds"] = ok.groupby(["depth", "width_factor"])["seed"].count()
        return t.round(4)

    def bounds_table(self) -> pd.DataFrame:
        ok = split_ok(self.frame)[0]
        if ok.empty:
            return pd.DataFrame()
        cols = ["measured_margin_median", "gamma_localJ_median", "gamma_supJ_median",
                "gamma3_median", "gamma4_median", "prod_spectral", "prod_frobenius"]
        return ok.groupby(["depth", "width_factor"])[cols].mean()

    def settings_table(self) -> pd.DataFrame:
        """The profile's settings, one row each."""
        return pd.Series({k: str(v) for k, v in self.settings.items()}, name="setting").to_frame()

    def width_table(self, metric: str = "test_acc") -> pd.DataFrame:
        """Mean ``metric`` over finished seeds: depth as rows, the width factors as columns."""
        ok = split_ok(self.frame)[0]
        if ok.empty:
            return pd.DataFrame()
        t = ok.pivot_table(index="depth", columns="width_factor", values=metric, aggfunc="mean")
        t.columns = [f"M={k}x" for k in t.columns]
        return t

    def cost(self) -> tuple[pd.DataFrame, dict[str, float]]:
        """Measured training seconds per run (mean over seeds; depth as rows, widths as columns)
        and the projected cost of the ``paper`` profile: ``6 x params`` FLOPs per sample and
        epoch of plain SGD at an *assumed* 10 TFLOP/s of one GPU, and at the GFLOP/s achieved
        here (median over runs): estimates, not measurements."""
        ok = split_ok(self.frame)[0]
        if ok.empty:
            return pd.DataFrame(), {}
        t = self.width_table("seconds").round(1)
        t.columns = [f"{c} [s/run]" for c in t.columns]
        ds = get_dataset(self.panel.dataset)
        dim = input_dim(ds)
        achieved = float(measured_gflops(ok, dim, ds.n_classes)["gflop_per_s"].median())
        proj = project_gpu_hours(fig4_workload(settings("paper"), 784), {}, gpu_tflops=10.0)
        proj["achieved_gflop_per_s"] = achieved
        proj["cpu_hours_at_achieved"] = proj["pflop"] * 1e6 / achieved / 3600
        return t, proj

    def numbers(self) -> dict[str, Any]:
        """Measured numbers the page glues into its prose."""
        ok = split_ok(self.frame)[0]
        v = self.verdicts()
        return {
            "wn_n_runs": len(self.frame),
            "wn_diverged": self.left_out(),
            "wn_min_train_acc": round(100 * float(ok["train_acc"].min()), 2) if len(ok) else None,
            "wn_min_steps": int(ok["steps"].min()) if len(ok) else None,
            "wn_min_spectral": round(float(ok["min_spectral"].min()), 3) if len(ok) else None,
            "wn_train_minutes": round(float(self.frame.get("seconds", pd.Series(
                dtype=float)).sum() + self.frame.get("eval_seconds", pd.Series(
                    dtype=float)).sum()) / 60, 1),
            "wn_n_reproduced": sum(x.verdict == REPRODUCED for x in v),
            "wn_n_claims": len(v),
            **self.score_context(),
            "wn_score_verdict": next(
                (x.verdict for x in v if x.claim == "fig4.score_grows_with_depth"), "not run"
            ),
        }

    def score_context(self) -> dict[str, Any]:
        """What the score-with-depth claim rests on: the mean smallest training score (unit
        scale) per depth over widths and seeds (``wn_score_by_depth``, as text), and at the
        deepest net the mean training accuracy [%] and how many nets left a training sample
        misclassified (whose smallest score is then negative)."""
        ok = split_ok(self.frame)[0]
        if ok.empty:
            return {"wn_score_by_depth": None, "wn_deep_depth": None,
                    "wn_deep_train_acc": None, "wn_deep_unfit": None, "wn_deep_nets": None}
        by = ok.groupby("depth")["min_score"].mean()
        deep = ok[ok["depth"] == ok["depth"].max()]
        return {
            "wn_score_by_depth": ", ".join(f"L = {d}: {v:.2f}" for d, v in by.items()),
            "wn_deep_depth": int(ok["depth"].max()),
            "wn_deep_train_acc": round(100 * float(deep["train_acc"].mean()), 2),
            "wn_deep_unfit": int((deep["train_acc"] < 1.0).sum()),
            "wn_deep_nets": len(deep),
        }


def run(
    profile: str = "cpu", *, executor: Any = None, store: ResultStore | None = None
) -> WeightNormResult:
    """Train (or load) every Fig. 4 run at ``profile``."""
    s = settings(profile)
    panel = panel_of(s)
    frame = (
        run_fig4(s, panel.dataset, store or ResultStore(), executor)
        if panel.dataset is not None
        else pd.DataFrame()
    )
    return WeightNormResult(s["profile"], s, panel, frame)


def dry_run(s: Mapping[str, Any], device: torch.device) -> list[DryConfig]:
    """Every Fig. 4 run at settings ``s`` (:func:`configs`) as :mod:`jacnb.lab.dryrun` sees it:
    its SGD steps and one training step of its weight-normalized net."""
    return [dry_config("Fig. 4", c, weight_norm=True) for c in configs(s)]
