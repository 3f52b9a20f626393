"""The low-rank Jacobian chapter (Oymak, Fabian, Li, Soltanolkotabi 2019) and the bridge to
Sokolic et al. 2017 (notebooks/07_low_rank_jacobian.ipynb).

The chapter interface (``NAME``, :func:`settings`, :func:`configs`, :func:`run` ->
:class:`LowRankResult` with ``frames()``, ``figures()``, ``paper_table()``, ``verdicts()``):

* :func:`synthetic_spectrum`, :func:`spectrum_runs` -- their Fig. 3 on a K-cluster-per-class
  Gaussian mixture and ``f(x) = V φ(Wx)`` (``V`` fixed), one mixture draw per seed; the
  statistic of ``oymak.spectrum_grows_sqrt_n`` is the mean of the top ``K·C·C`` singular values
  (exact SVD), whose log-log slope against ``n`` the claim reads.
* :func:`corrupt_labels`, :func:`build_net`, :func:`run_lowrank` -- one training run for
  :func:`jacnb.lab.store.run_grid` (least squares, plain SGD, log-spaced checkpoints; spectra and
  information / nuisance splits of the initial, final and early-stopping Jacobians; residual
  energies over training on train and test data).
* :func:`alignment_runs`, :func:`residual_runs`, :func:`rise_runs` -- the tidy runs frames the
  oymak.* claims are judged on by :func:`jacnb.lab.gates.decide` (one row per run and arm;
  columns :func:`jacnb.lab.gates.required_columns`).
* :func:`alignment_frame`, :func:`paper_vs_ours`, :func:`dynamics_frame`, :func:`sweep_frame`,
  :func:`bridge_frame`, :func:`fig3_summary`, :func:`spectrum_facts`, :func:`dip_table`,
  :func:`method_check` -- the tables of the page.

Their CIFAR-10 is not available offline: a run on another dataset (MNIST digits at ``cpu``,
scikit-learn's 8x8 digits at ``smoke``) is judged as a *stand-in* (:func:`jacnb.lab.gates.decide`
with ``stand_in=True``); a dataset that is not on disk gives :func:`jacnb.lab.gates.not_run`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from jacnb.core.data import DatasetMissingError, balanced_subset, gaussian_mixture, load_dataset
from jacnb.core.lowrank import (
    ParameterJacobian,
    Spectrum,
    information_split,
    one_hot_stacked,
    project_energy,
    top_singular,
)
from jacnb.core.models import OneHiddenLayer, build_model
from jacnb.core.regularizers import JacobianRegularizer
from jacnb.core.train import TrainConfig, pick_device, train
from jacnb.lab import gates
from jacnb.lab import settings as lab_settings
from jacnb.lab.claims import Claim, get_claim
from jacnb.lab.datasets import Panel, dataset_label, get_dataset
from jacnb.lab.dryrun import DryConfig, batch_of
from jacnb.lab.pipeline import assemble_verdicts
from jacnb.lab.records import RunStatus, is_ok, split_ok
from jacnb.lab.store import ResultStore, run_grid
from jacnb.lab.timing import make_step
from jacnb.lab.verdicts import Verdict

NAME = "07_low_rank_jacobian"
EXPERIMENT = "low-rank"
#: Version of the stored record layout (2: ``train_acc``, ``steps``, the learning-rate drop).
SCHEMA = 2
#: The dataset of their Sec. 4 (the claims' dataset); any other is a stand-in.
PAPER_DATASET = "CIFAR-10"
SYNTHETIC = "Gaussian mixture (synthetic)"
SPECTRUM_CLAIM = "oymak.spectrum_grows_sqrt_n"
LOW_RANK_CLAIM = "oymak.jacobian_low_rank"
#: The numbers :meth:`LowRankResult.numbers` returns (NaN where not measured), glued into the
#: page's prose.
NUMBERS = (
    "fig3_ratio",
    "fig3_sqrt",
    "n_diverged",
    "clean_info_initial",
    "clean_info_final",
    "noisy_train_acc_min",
    "noisy_best_test_error",
    "noisy_final_test_error",
    "noisy_steps",
    "noisy_seconds",
    "seconds_total",
)


@dataclass(frozen=True)
class Settings:
    """The chapter at the ``cpu`` profile (:data:`OVERRIDES`: the other profiles' changes).

    ``seeds``: training seeds of the corruption sweep (the bridge runs use the first);
    ``fig3_seeds``: mixture draws of Fig. 3; ``lr_drop_noisy``: epoch at which corrupted-label
    runs divide the learning rate by 10 (their 800-epoch runs: 760; ``None``: no drop);
    ``n_spectrum``: singular values kept for the histogram (their Fig. 4: the top 1000). ``cpu``:
    the corrupted runs train until they fit their noisy labels (>= 99 % train accuracy, >= 1000
    SGD steps: 300 samples, batch 32, 160 epochs = 1600 steps), three seeds, corruption
    0 / 50 / 100 %.
    """

    lr: float = 0.1
    momentum: float = 0.0
    bridge_lam: float = 0.1
    lr_drop_noisy: int | None = None
    fig3_classes: int = 4
    fig3_clusters: int = 3
    fig3_sigma: float = 0.1
    fig3_per_class: tuple[int, ...] = (30, 60)
    dataset: str = "mnist-10k"
    datasets: tuple[str, ...] = ("mnist-10k",)
    seeds: tuple[int, ...] = (0, 1, 2)
    fig3_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_train: int = 300
    n_test: int = 300
    arch: str = "mlp"
    width: int = 128
    out_scale: float = 0.5
    batch_size: int = 32
    epochs_clean: int = 100
    epochs_noisy: int = 160
    n_checkpoints: int = 12
    rank: int = 50
    n_spectrum: int = 50
    svd_iters: int = 4
    corruptions: tuple[float, ...] = (0.0, 0.5, 1.0)
    bridge_corruptions: tuple[float, ...] = (0.5,)
    bench_n: int = 100
    fig3_dim: int = 20
    fig3_hidden: int = 200


OVERRIDES: dict[str, dict[str, Any]] = {
    "smoke": dict(dataset="digits", datasets=("digits",), seeds=(0,), fig3_seeds=(0, 1, 2),
                  n_train=100, n_test=100, width=32, batch_size=50, epochs_clean=10,
                  epochs_noisy=20, n_checkpoints=6, rank=10, n_spectrum=20, svd_iters=3,
                  corruptions=(0.0, 0.5), bench_n=30, fig3_dim=10, fig3_hidden=100),
    "paper": dict(dataset="cifar10", datasets=("cifar10",), n_train=50000, n_test=10000,
                  arch="resnet20", width=0, out_scale=0.1, batch_size=128, epochs_clean=400,
                  epochs_noisy=800, lr_drop_noisy=760, n_checkpoints=24, n_spectrum=1000,
                  corruptions=(0.0, 0.25, 0.5, 0.75, 1.0), bridge_corruptions=(0.0, 0.5),
                  bench_n=500),
}


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.resolve`)."""
    return lab_settings.resolve(Settings(), OVERRIDES, profile)


# ---------------------------------------------------------------------------------------------
# Synthetic setting of their Fig. 3
# ---------------------------------------------------------------------------------------------


def synthetic_spectrum(settings: Mapping[str, Any]) -> pd.DataFrame:
    """Fig. 3: top singular values of ``𝒥(W₀)`` for ``n = m·C`` samples, ``m`` in
    ``settings["fig3_per_class"]`` (their 30 and 60), exact SVD of the dense matrix, for every
    mixture draw ``seed`` in ``settings["fig3_seeds"]`` (same ``W₀``, ``V`` and centres for
    every ``n`` of a draw).

    Columns: ``seed``, ``n``, ``per_class``, ``index`` (1-based), ``sv`` (singular value of
    ``𝒥``), ``sv_normalized`` (of ``sqrt(KC/n)·𝒥``)."""
    c, k_cl = settings["fig3_classes"], settings["fig3_clusters"]
    rows = []
    for seed in settings["fig3_seeds"]:
        for m in settings["fig3_per_class"]:
            n = m * c
            data = gaussian_mixture(
                c, k_cl, settings["fig3_dim"], settings["fig3_sigma"], n, seed=int(seed)
            )
            net = OneHiddenLayer(
                settings["fig3_dim"], settings["fig3_hidden"], c, seed=1000 + int(seed)
            )
            # all singular values of the dense nK x p matrix (small here): SVD of the matrix,
            # cheaper than the eigendecomposition of its Gram
            svals = torch.linalg.svdvals(ParameterJacobian(net, data["x"]).dense().double())
            for i, s in enumerate(svals.tolist()):
                rows.append((int(seed), n, m, i + 1, s, s * math.sqrt(k_cl * c / n)))
    return pd.DataFrame(rows, columns=["seed", "n", "per_class", "index", "sv", "sv_normalized"])


def spectrum_runs(fig3: pd.DataFrame, clusters: int, classes: int) -> pd.DataFrame:
    """The runs frame of ``oymak.spectrum_grows_sqrt_n``: per (draw ``seed``, ``n``) the mean of
    the top ``K·C·C`` singular values (``top_sv_mean``)."""
    top = clusters * classes * classes
    sub = fig3[fig3["index"] <= top]
    out = sub.groupby(["seed", "n"], as_index=False)["sv"].mean()
    return out.rename(columns={"sv": "top_sv_mean"})


def low_rank_runs(fig3: pd.DataFrame, clusters: int, classes: int) -> pd.DataFrame:
    """The runs frame of ``oymak.jacobian_low_rank``: per (draw ``seed``, ``n_samples``) the
    share of ``||𝒥(W₀)||_F²`` (the sum of all squared singular values: the SVD is exact here)
    in the top ``K·C·C`` singular values (``energy_share_top``)."""
    top = clusters * classes * classes
    rows = []
    for (seed, n), g in fig3.groupby(["seed", "n"]):
        e = g.sort_values("index")["sv"].to_numpy(float) ** 2
        rows.append({"seed": int(seed), "n_samples": int(n),
                     "energy_share_top": float(e[:top].sum() / e.sum())})
    return pd.DataFrame(rows, columns=["seed", "n_samples", "energy_share_top"])


def fig3_summary(fig3: pd.DataFrame, clusters: int, classes: int) -> pd.DataFrame:
    """Per draw: the ratio of the top ``K·C·C`` singular values between the largest and the
    smallest ``n`` (mean over the indices) beside ``sqrt(n ratio)``, the gap
    ``λ_{KCC}/λ_{KCC+1}`` and ``λ_{KCC+1}/λ_1`` at the largest ``n``."""
    big = clusters * classes * classes
    rows = []
    for seed, g in fig3.groupby("seed"):
        wide = g.pivot(index="index", columns="n", values="sv")
        lo, hi = wide.columns.min(), wide.columns.max()
        rows.append(
            {
                "seed": seed,
                "top sv ratio n_hi / n_lo": float((wide[hi] / wide[lo]).loc[1:big].mean()),
                "sqrt(n_hi / n_lo)": math.sqrt(hi / lo),
                "gap λ_KCC / λ_KCC+1": float(wide[hi].loc[big] / wide[hi].loc[big + 1]),
                "λ_KCC+1 / λ_1": float(wide[hi].loc[big + 1] / wide[hi].loc[1]),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Labels and nets
# ---------------------------------------------------------------------------------------------


def corrupt_labels(
    y: Tensor, fraction: float, n_classes: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Corrupt ``round(fraction·n)`` labels chosen uniformly without replacement; each moves to
    a class drawn uniformly among the ``C - 1`` *other* classes (their setup). Returns the new
    labels and the boolean mask of corrupted samples."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    n = y.numel()
    idx = torch.randperm(n, generator=gen)[: int(round(fraction * n))]
    shift = torch.randint(1, n_classes, (idx.numel(),), generator=gen)
    y_new = y.clone()
    y_new[idx] = (y[idx] + shift) % n_classes
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    return y_new, mask


def build_net(config: Mapping[str, Any], input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The net named by ``config["arch"]`` (``"mlp"`` or ``"resnet20"``, from the registry of
    :func:`jacnb.core.models.build_model`), seeded."""
    torch.manual_seed(int(config["seed"]))
    if config["arch"] == "mlp":
        return build_model(
            "mlp",
            in_features=math.prod(input_shape),
            n_classes=n_classes,
            width=int(config["width"]),
            out_scale=config["out_scale"],
        )
    if config["arch"] == "resnet20":
        return build_model(
            "resnet20",
            n_classes=n_classes,
            in_channels=input_shape[0],
            out_scale=config["out_scale"],
        )
    raise ValueError(f"unknown arch {config['arch']!r}; valid: mlp, resnet20")


# ---------------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------------

_RUN_KEYS = (
    "dataset",
    "n_train",
    "n_test",
    "arch",
    "width",
    "out_scale",
    "batch_size",
    "lr",
    "momentum",
    "epochs_clean",
    "epochs_noisy",
    "lr_drop_noisy",
    "n_checkpoints",
    "rank",
    "n_spectrum",
    "svd_iters",
)


def configs(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run of the chapter at this profile: the corruption sweep without regularizer for
    every seed, and the bridge runs (Jacobian regularizer, ``bridge_lam``) at the
    ``bridge_corruptions`` for the first seed (the bridge is no registered claim)."""
    base = {
        "experiment": EXPERIMENT,
        "schema": SCHEMA,
        "profile": settings["profile"],
        **{k: settings.get(k) for k in _RUN_KEYS},
    }
    out = [
        {**base, "seed": int(seed), "corruption": float(c), "lam": 0.0}
        for seed in settings["seeds"]
        for c in settings["corruptions"]
    ]
    out += [
        {
            **base,
            "seed": int(settings["seeds"][0]),
            "corruption": float(c),
            "lam": float(settings["bridge_lam"]),
            "reg_output": "logits",
        }
        for c in settings["bridge_corruptions"]
    ]
    return out


def checkpoint_epochs(total: int, count: int) -> list[int]:
    """``count`` roughly log-spaced epochs in ``0..total`` (0 and ``total`` included)."""
    grid = np.unique(np.round(np.geomspace(1, total + 1, count)).astype(int) - 1)
    return sorted({0, total, *grid.tolist()})


def _errors(model: nn.Module, x: Tensor, y: Tensor, y_stacked: Tensor) -> tuple[Tensor, float]:
    with torch.no_grad():
        out = torch.cat([model(x[s : s + 1024]) for s in range(0, x.shape[0], 1024)])
    err = float((out.argmax(1) != y).float().mean())
    return out.double().reshape(-1) - y_stacked.to(out.device), err


def _split_rows(spec: Spectrum, vectors: Mapping[str, Tensor], rank: int) -> dict[str, Any]:
    return {name: information_split(spec, v.cpu(), rank=rank) for name, v in vectors.items()}


def lr_drop_epoch(config: Mapping[str, Any]) -> int | None:
    """The epoch at which a corrupted-label run divides its learning rate by 10 (their 800-epoch
    runs: epoch 760), ``None`` for no drop; clean runs never drop."""
    drop = config.get("lr_drop_noisy")
    return int(drop) if drop is not None and float(config["corruption"]) > 0 else None


#: A training segment (between two checkpoints) of seed ``s`` starting at epoch ``e`` shuffles with
#: seed ``s * SEGMENT_SEED_STRIDE + e``: every segment of every run its own stream (a prime
#: stride larger than any epoch count keeps two runs' segments apart).
SEGMENT_SEED_STRIDE = 100_003
#: "Never" as an epoch count: a segment neither drops its learning rate inside nor evaluates
#: (the learning-rate drop and the evaluations happen between segments).
NEVER = 10**9
#: Test samples over which the input-Jacobian norm ``||J(x)||_F^2`` of the bridge is averaged.
JACOBIAN_SAMPLES = 200
#: Rows of the parameter Jacobian formed at once (memory bound of the spectrum routines).
SPECTRUM_CHUNK = 512


def _checkpoints(config: Mapping[str, Any], epochs: int, drop: int | None) -> list[int]:
    """The epochs at which a run is evaluated (:func:`checkpoint_epochs`), with one at the
    learning-rate drop so that every training segment keeps one learning rate."""
    marks = checkpoint_epochs(epochs, int(config["n_checkpoints"]))
    if drop is not None and 0 < drop < epochs:
        marks = sorted({*marks, drop})
    return marks


def _train_segment(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: Mapping[str, Any],
    start: int,
    end: int,
    drop: int | None,
    reg: Any,
    dev: torch.device,
) -> float:
    """Train epochs ``start..end`` (squared loss, as their Sec. 4; the learning rate /10 from
    ``drop`` on); returns the seconds it took."""
    res = train(
        model,
        x,
        y,
        TrainConfig(
            epochs=end - start,
            batch_size=int(config["batch_size"]),
            lr=float(config["lr"]) * (0.1 if drop is not None and start >= drop else 1.0),
            lr_drop_every=NEVER,
            momentum=float(config["momentum"]),
            lam=float(config.get("lam", 0.0)),
            seed=int(config["seed"]) * SEGMENT_SEED_STRIDE + start,
            loss="squared",
            eval_every=NEVER,
            progress=False,
        ),
        regularizer=reg,
        device=dev,
    )
    return float(res["seconds"])


def _dynamics_rows(
    snaps: list[dict[str, Any]], spectra: Mapping[str, tuple[Spectrum, Spectrum]], rank: int
) -> list[dict[str, Any]]:
    """Per checkpoint: the errors and the energy of the train / test residual on the
    information and nuisance spaces (top ``rank`` left singular vectors) of the initial and
    final Jacobians (their Fig. 6)."""
    keys = ("epoch", "train_error", "train_error_clean_labels", "test_error")
    dyn = []
    for snap in snaps:
        row = {k: snap[k] for k in keys}
        for which, (sp_tr, sp_te) in spectra.items():
            i_tr, n_tr = project_energy(sp_tr.u[:, :rank], snap["r_train"])
            i_te, n_te = project_energy(sp_te.u[:, :rank], snap["r_test"])
            row.update(
                {
                    f"train_info_{which}": i_tr,
                    f"train_nuis_{which}": n_tr,
                    f"test_info_{which}": i_te,
                    f"test_nuis_{which}": n_te,
                }
            )
        dyn.append(row)
    return dyn


def _input_jacobian_fro_sq(model: nn.Module, x: Tensor, arch: str) -> float:
    """Mean ``||J(x)||_F^2`` of the logits over the first :data:`JACOBIAN_SAMPLES` rows of ``x``
    (the bridge to the Jacobian regularizer; the MLP only, NaN otherwise)."""
    if arch != "mlp":
        return float("nan")
    with torch.no_grad():
        jac = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0)))
        return float(jac(x[:JACOBIAN_SAMPLES]).pow(2).sum((1, 2)).mean())


def run_lowrank(config: Mapping[str, Any]) -> dict[str, Any]:
    """One run (see module doc). Labels ``y`` are the (possibly corrupted) one-hot training
    labels; test labels are clean. The early-stopping Jacobian is taken at the checkpoint of
    lowest test error (their Table 2 uses epoch 50, their best). ``train_acc`` is the final
    accuracy on the labels trained on (corrupted ones included), ``steps`` the SGD steps; a
    corrupted run divides its learning rate by 10 at ``config["lr_drop_noisy"]`` if set.

    Long because it is one run's record (about 90 lines), each step of which
    (data, initial spectra, training segments with a snapshot each, final and early-stopping
    spectra, alignment tables) feeds the next; the steps themselves are helpers."""
    dev = pick_device()
    t_start = time.perf_counter()
    ds = load_dataset(config["dataset"])
    seed = int(config["seed"])
    x_tr, y_clean = balanced_subset(ds.x_train, ds.y_train, int(config["n_train"]), seed)
    x_te, y_te = balanced_subset(ds.x_test, ds.y_test, int(config["n_test"]), seed)
    y_tr, flipped = corrupt_labels(y_clean, float(config["corruption"]), ds.n_classes, seed)
    c = ds.n_classes
    ys_tr, ys_te = one_hot_stacked(y_tr, c), one_hot_stacked(y_te, c)
    x_tr, x_te = x_tr.to(dev), x_te.to(dev)
    model = build_net(config, ds.input_shape, c).to(dev).eval()
    epochs = int(config["epochs_noisy"] if config["corruption"] > 0 else config["epochs_clean"])
    drop = lr_drop_epoch(config)
    marks = _checkpoints(config, epochs, drop)
    reg = None
    if config.get("lam", 0.0) > 0:
        reg = JacobianRegularizer(method="exact", output=config.get("reg_output", "logits"))
    rank, n_spec, iters = int(config["rank"]), int(config["n_spectrum"]), int(config["svd_iters"])

    def spectrum(x: Tensor, k: int) -> tuple[Spectrum, float]:
        t0 = time.perf_counter()
        op = ParameterJacobian(model, x, chunk_size=SPECTRUM_CHUNK)
        spec = top_singular(op, k, "randomized", n_iter=iters, seed=seed)
        return spec, time.perf_counter() - t0

    spec0_tr, t_svd = spectrum(x_tr, max(rank, n_spec))
    spec0_te, _ = spectrum(x_te, rank)
    snaps: list[dict[str, Any]] = []
    states: dict[int, dict[str, Tensor]] = {}
    done, train_seconds = 0, 0.0
    for mark in marks:
        if mark > done:
            train_seconds += _train_segment(model, x_tr, y_tr.to(dev), config, done, mark, drop,
                                            reg, dev)
            done = mark
        model.eval()
        r_tr, err_tr = _errors(model, x_tr, y_tr.to(dev), ys_tr)
        r_te, err_te = _errors(model, x_te, y_te.to(dev), ys_te)
        with torch.no_grad():
            err_clean = float((model(x_tr).argmax(1).cpu() != y_clean).float().mean())
        states[mark] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        snaps.append({"epoch": mark, "train_error": err_tr, "train_error_clean_labels": err_clean,
                      "test_error": err_te, "r_train": r_tr.cpu(), "r_test": r_te.cpu()})
    best = min(snaps, key=lambda s: (s["test_error"], s["epoch"]))
    spec_f_tr, _ = spectrum(x_tr, max(rank, n_spec))
    spec_f_te, _ = spectrum(x_te, rank)
    final_state = {k: v.clone() for k, v in model.state_dict().items()}
    if best["epoch"] != marks[-1]:
        model.load_state_dict(states[best["epoch"]])
        spec_b_tr, _ = spectrum(x_tr, rank)
        model.load_state_dict(final_state)
    else:
        spec_b_tr = spec_f_tr
    vectors = {"y": ys_tr, "r0": snaps[0]["r_train"]}
    return {
        "n_classes": c,
        "p": sum(p.numel() for p in model.parameters()),
        "nK": int(ys_tr.numel()),
        "epochs": epochs,
        "flipped": int(flipped.sum()),
        "best_epoch": best["epoch"],
        "best_test_error": best["test_error"],
        "final_test_error": snaps[-1]["test_error"],
        "final_train_error": snaps[-1]["train_error"],
        "train_acc": 1.0 - snaps[-1]["train_error"],
        "steps": epochs * math.ceil(x_tr.shape[0] / int(config["batch_size"])),
        "lr_drop_epoch": drop,
        "alignment": {
            "initial": _split_rows(spec0_tr, vectors, rank),
            "final": _split_rows(spec_f_tr, vectors, rank),
            "best": _split_rows(spec_b_tr, vectors, rank),
        },
        # test-set label alignment (the test Jacobian's own spaces)
        "test_alignment": {
            "initial": information_split(spec0_te, ys_te, rank=rank),
            "final": information_split(spec_f_te, ys_te, rank=rank),
        },
        "dynamics": _dynamics_rows(
            snaps, {"initial": (spec0_tr, spec0_te), "final": (spec_f_tr, spec_f_te)}, rank
        ),
        "spectrum_initial": spec0_tr.s.tolist(),
        "spectrum_final": spec_f_tr.s.tolist(),
        "spectrum_best": spec_b_tr.s.tolist(),
        "input_jacobian_fro_sq_test": _input_jacobian_fro_sq(model, x_te, config["arch"]),
        "svd_seconds": t_svd,
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - t_start,
        "device": str(dev),
        "source": ds.source,
    }


# ---------------------------------------------------------------------------------------------
# Tables from the stored records (``recs``: run_grid's frame; only runs with status "ok")
# ---------------------------------------------------------------------------------------------

_QUANTITY = {
    ("y", "info"): "||P_I y|| / ||y||",
    ("y", "nuisance"): "||P_N y|| / ||y||",
    ("r0", "info"): "||P_I r0|| / ||r0||",
    ("r0", "nuisance"): "||P_N r0|| / ||r0||",
}


def _sel(recs: pd.DataFrame, corruption: float, lam: float = 0.0) -> pd.DataFrame:
    sub = recs[(recs["corruption"] == corruption) & (recs["lam"] == lam)]
    if sub.empty:
        raise KeyError(f"no record for corruption={corruption}, lam={lam}")
    return sub.sort_values("seed")


def _pick(recs: pd.DataFrame, corruption: float, lam: float = 0.0, seed: int | None = None):
    sub = _sel(recs, corruption, lam)
    if seed is not None:
        sub = sub[sub["seed"] == seed]
        if sub.empty:
            raise KeyError(f"no record for corruption={corruption}, lam={lam}, seed={seed}")
    return sub.iloc[0]


def alignment_frame(recs: pd.DataFrame, corruption: float, lam: float = 0.0) -> pd.DataFrame:
    """Tables 1/2 layout, mean over the seeds: rows ``jacobian`` (initial, final; ``final`` =
    the early-stopping Jacobian when labels are corrupted, as in their Table 2), columns the
    four printed quantities, ``||J_I^† y||`` and the number of seeds ``n``."""
    per_seed = []
    for _, rec in _sel(recs, corruption, lam).iterrows():
        for label, key in (
            ("initial", "initial"),
            ("final", "best" if corruption > 0 else "final"),
        ):
            a = rec["alignment"][key]
            row = {"jacobian": label, **{q: a[v][s] for (v, s), q in _QUANTITY.items()}}
            row["||J_I^+ y||"] = a["y"]["pinv_norm"]
            per_seed.append(row)
    df = pd.DataFrame(per_seed)
    out = df.groupby("jacobian", sort=False).mean()
    out["n"] = df.groupby("jacobian", sort=False).size()
    return out


def paper_vs_ours(recs: pd.DataFrame, corruption: float) -> pd.DataFrame:
    """Their Table 1 (clean) or 2 (50% corrupted) beside ours (mean over seeds), labelled
    ``paper`` and ``ours``."""
    from jacnb.lab.paper import oymak_alignment

    theirs = oymak_alignment(corrupted=corruption > 0)
    theirs = theirs.pivot(index="jacobian", columns="quantity", values="fraction")
    theirs = theirs.reindex(["initial", "final"])
    ours = alignment_frame(recs, corruption)[list(_QUANTITY.values())]
    both = pd.concat({"paper (CIFAR-10, ResNet20)": theirs, "ours": ours}, names=["source"])
    return both[list(_QUANTITY.values())]


def dynamics_frame(
    recs: pd.DataFrame, corruption: float, lam: float = 0.0, seed: int | None = None
) -> pd.DataFrame:
    """One run's residual energies on 𝓘/𝓝 over training, as fractions of the initial residual
    energy (train: ``||r_t||²/||r_0||²`` split; test likewise), with train/test error."""
    df = pd.DataFrame(_pick(recs, corruption, lam, seed)["dynamics"])
    for split in ("train", "test"):
        for which in ("initial", "final"):
            r0 = df[f"{split}_info_{which}"].iloc[0] + df[f"{split}_nuis_{which}"].iloc[0]
            for part in ("info", "nuis"):
                df[f"{split}_{part}_{which}"] = df[f"{split}_{part}_{which}"] / r0
    return df


def dynamics_long(recs: pd.DataFrame, corruptions: tuple[float, ...] = (0.0, 0.5)) -> pd.DataFrame:
    """Every seed's dynamics (lam 0) in long form for the figure: ``corruption``, ``seed``,
    ``epoch``, ``split`` (train/test), ``space`` (I/N, spaces of the final Jacobian of that
    data), ``energy`` (fraction of the initial residual energy), ``train_error``,
    ``test_error``."""
    rows = []
    for c in corruptions:
        if c not in set(recs["corruption"]):
            continue
        for seed in sorted(_sel(recs, c)["seed"]):
            d = dynamics_frame(recs, c, 0.0, int(seed))
            for _, r in d.iterrows():
                for split in ("train", "test"):
                    for part, space in (("info", "I"), ("nuis", "N")):
                        rows.append(
                            {
                                "corruption": c,
                                "seed": int(seed),
                                "epoch": int(r["epoch"]),
                                "split": split,
                                "space": space,
                                "energy": float(r[f"{split}_{part}_final"]),
                                "train_error": float(r["train_error"]),
                                "test_error": float(r["test_error"]),
                            }
                        )
    return pd.DataFrame(rows)


def residual_remaining(dynamics: list[Mapping[str, Any]] | pd.DataFrame, which: str = "final"):
    """Per space, the mean over the checkpoints after the start of the remaining fraction of the
    initial training-residual energy on that space, ``||Π r_t||² / ||Π r_0||²`` (spaces of the
    ``which`` Jacobian): ``{"information": ..., "nuisance": ...}``."""
    df = pd.DataFrame(dynamics).sort_values("epoch")
    out = {}
    for part, arm in (("info", "information"), ("nuis", "nuisance")):
        e = df[f"train_{part}_{which}"].to_numpy(float)
        out[arm] = float(np.mean(e[1:] / e[0])) if len(e) > 1 and e[0] > 0 else math.nan
    return out


def _gate_cols(rec: pd.Series) -> dict[str, Any]:
    return {"train_acc": float(rec["train_acc"]), "steps": int(rec["steps"])}


def alignment_runs(recs: pd.DataFrame) -> pd.DataFrame:
    """The runs frame of ``oymak.label_noise_on_nuisance_space``: per (seed, corruption) of the
    sweep (lam 0) two rows, ``arm`` = ``jacobian`` = ``initial`` / ``final`` (the Jacobian at
    the end of training), with ``info_fraction_y`` (``||Π_𝓘 y||/||y||``) and ``nuisance_energy_y``
    (``||Π_𝓝 y||²/||y||²``) of the training labels, ``train_acc`` and ``steps``."""
    rows = []
    for _, rec in recs[recs["lam"] == 0].iterrows():
        for arm in ("initial", "final"):
            a = rec["alignment"][arm]["y"]
            rows.append(
                {
                    "seed": int(rec["seed"]),
                    "corruption": float(rec["corruption"]),
                    "arm": arm,
                    "jacobian": arm,
                    "info_fraction_y": float(a["info"]),
                    "nuisance_energy_y": float(a["nuisance_energy"]),
                    **_gate_cols(rec),
                }
            )
    cols = ["seed", "corruption", "arm", "jacobian", "info_fraction_y", "nuisance_energy_y"]
    return pd.DataFrame(rows, columns=[*cols, "train_acc", "steps"])


def table_alignment_runs(recs: pd.DataFrame) -> pd.DataFrame:
    """The runs frame of the ``oymak.table1.*`` / ``oymak.table2.*`` alignment claims: per
    (seed, corruption) of the sweep (lam 0) two rows, ``arm`` = ``initial`` / ``trained``, with
    ``info_fraction_y`` = ``||Π_𝓘 y||/||y||``. ``trained`` is the Jacobian their tables use: at
    the end of training for clean labels (Table 1), at the checkpoint of best test error for
    corrupted labels (Table 2: epoch 50, their best)."""
    rows = []
    for _, rec in recs[recs["lam"] == 0].iterrows():
        corruption = float(rec["corruption"])
        trained = "final" if corruption == 0 else "best"
        for arm, which in (("initial", "initial"), ("trained", trained)):
            rows.append(
                {
                    "seed": int(rec["seed"]),
                    "corruption": corruption,
                    "arm": arm,
                    "info_fraction_y": float(rec["alignment"][which]["y"]["info"]),
                    **_gate_cols(rec),
                }
            )
    cols = ["seed", "corruption", "arm", "info_fraction_y", "train_acc", "steps"]
    return pd.DataFrame(rows, columns=cols)


def corruption_runs(recs: pd.DataFrame) -> pd.DataFrame:
    """The runs frame of ``oymak.test_error_rises_with_corruption``: per run of the sweep (lam 0)
    its ``final_test_error`` at its ``corruption`` level."""
    sub = recs[recs["lam"] == 0]
    out = pd.DataFrame(
        {
            "seed": sub["seed"].astype(int),
            "corruption": sub["corruption"].astype(float),
            "final_test_error": sub["final_test_error"].astype(float),
            "train_acc": sub["train_acc"].astype(float),
            "steps": sub["steps"].astype(int),
        }
    )
    return out.reset_index(drop=True)


def residual_runs(recs: pd.DataFrame, corruptions: tuple[float, ...] = (0.0, 0.5)) -> pd.DataFrame:
    """The runs frame of ``oymak.residual_falls_faster_on_information_space``: per (seed,
    corruption in ``corruptions``) two rows, ``arm`` = ``information`` / ``nuisance``, with
    ``residual_remaining`` (:func:`residual_remaining`, spaces of the final Jacobian)."""
    rows = []
    sub = recs[(recs["lam"] == 0) & recs["corruption"].isin(corruptions)]
    for _, rec in sub.iterrows():
        for arm, value in residual_remaining(rec["dynamics"]).items():
            rows.append(
                {
                    "seed": int(rec["seed"]),
                    "corruption": float(rec["corruption"]),
                    "arm": arm,
                    "residual_remaining": value,
                    **_gate_cols(rec),
                }
            )
    cols = ["seed", "corruption", "arm", "residual_remaining", "train_acc", "steps"]
    return pd.DataFrame(rows, columns=cols)


def rise_runs(recs: pd.DataFrame) -> pd.DataFrame:
    """The runs frame of ``oymak.test_error_dips_then_rises``: per run of the sweep (lam 0)
    ``test_error_rise`` = final - smallest test error over the checkpoints."""
    rows = []
    for _, rec in recs[recs["lam"] == 0].iterrows():
        errs = [float(d["test_error"]) for d in rec["dynamics"]]
        rows.append(
            {
                "seed": int(rec["seed"]),
                "corruption": float(rec["corruption"]),
                "test_error_rise": errs[-1] - min(errs),
                **_gate_cols(rec),
            }
        )
    return pd.DataFrame(
        rows, columns=["seed", "corruption", "test_error_rise", "train_acc", "steps"]
    )


_RUNS = {
    **{
        f"oymak.{t}.{c}": table_alignment_runs
        for t in ("table1", "table2")
        for c in ("trained_alignment_high", "initial_alignment_low")
    },
    "oymak.test_error_rises_with_corruption": corruption_runs,
    "oymak.label_noise_on_nuisance_space": alignment_runs,
    "oymak.residual_falls_faster_on_information_space": residual_runs,
    "oymak.test_error_dips_then_rises": rise_runs,
}


def with_diverged(claim: str, runs: pd.DataFrame, records: pd.DataFrame | None) -> pd.DataFrame:
    """``runs`` (a claim's frame from the finished runs) with one row per arm of every diverged
    sweep run (lam 0), ``status`` ``"diverged"`` and NaN metrics, so that
    :func:`jacnb.lab.gates.decide` counts them (every ``oymak.*`` claim registers a diverged
    run as leaving its cell undecided)."""
    runs = runs.assign(status=RunStatus.OK)
    if records is None or records.empty or "status" not in records:
        return runs
    bad = records[~is_ok(records) & (records.get("lam", 0.0) == 0)]
    if len(runs):  # only the corruption levels this claim's frame covers
        bad = bad[bad["corruption"].isin(set(runs["corruption"]))]
    if bad.empty:
        return runs
    c = get_claim(claim)
    arms = list(c.statistic.arms) or [
        v for col, vals in c.cell_filter if col == "arm" for v in vals
    ] or [None]
    if arms == [None] and "jacobian" in runs.columns:  # a cell per Jacobian (initial, final)
        arms = sorted(set(runs["jacobian"]))
    rows = []
    for _, rec in bad.iterrows():
        for arm in arms:
            row = {"seed": int(rec["seed"]), "corruption": float(rec["corruption"]),
                   "status": RunStatus.DIVERGED, "train_acc": math.nan, "steps": 0}
            if arm is not None:
                row["arm"] = arm
                if "jacobian" in runs.columns:
                    row["jacobian"] = arm
            rows.append(row)
    return pd.concat([runs, pd.DataFrame(rows)], ignore_index=True)


def sweep_frame(recs: pd.DataFrame, lam: float = 0.0) -> pd.DataFrame:
    """Fig. 7, one row per run: per corruption level and seed, label energy on 𝓝 (initial,
    final and early-stopping Jacobian), final and best test error, train accuracy."""
    rows = []
    for _, rec in recs[recs["lam"] == lam].sort_values(["corruption", "seed"]).iterrows():
        a = rec["alignment"]
        rows.append(
            {
                "corruption": rec["corruption"],
                "seed": int(rec["seed"]),
                "label energy on N, initial J": a["initial"]["y"]["nuisance_energy"],
                "label energy on N, final J": a["final"]["y"]["nuisance_energy"],
                "label energy on N, early-stop J": a["best"]["y"]["nuisance_energy"],
                "final test error": rec["final_test_error"],
                "best test error": rec["best_test_error"],
                "best epoch": rec["best_epoch"],
                "final train acc": rec["train_acc"],
                "steps": rec["steps"],
            }
        )
    return pd.DataFrame(rows)


def bridge_runs(recs: pd.DataFrame) -> Iterator[tuple[float, float, int, Any]]:
    """``(corruption, lam, seed, record)`` of every bridge run (``lam > 0``) and its
    unregularized partner: the bridge's seed (the smallest bridged one), each bridged corruption
    level, every factor on file; pairs not on file are skipped. Used by :func:`bridge_frame` and
    :func:`bridge_series`."""
    bridged = recs[recs["lam"] > 0]
    if bridged.empty:
        return
    seed = int(bridged["seed"].min())
    for corruption in sorted(bridged["corruption"].unique()):
        for lam in sorted(recs["lam"].unique()):
            try:
                rec = _pick(recs, corruption, lam, seed)
            except KeyError:
                continue
            yield corruption, lam, seed, rec


def bridge_frame(recs: pd.DataFrame) -> pd.DataFrame:
    """With vs without the input-Jacobian regularizer, at each bridge corruption level (the
    bridge's seed only)."""
    rows = []
    for corruption, lam, _seed, rec in bridge_runs(recs):
        a = rec["alignment"]
        s_f = np.asarray(rec["spectrum_final"])
        rank = int(rec["rank"])
        rows.append(
            {
                "corruption": corruption,
                "lam": lam,
                "||P_I y||/||y|| final J": a["final"]["y"]["info"],
                "||P_I y||/||y|| early-stop J": a["best"]["y"]["info"],
                "||P_I r0||/||r0|| final J": a["final"]["r0"]["info"],
                "top sv final": s_f[0],
                f"sv {rank} final": s_f[min(rank, len(s_f)) - 1],
                "stable rank final (top k)": float((s_f**2).sum() / s_f[0] ** 2),
                "mean ||J_x||_F^2 (input, test)": rec["input_jacobian_fro_sq_test"],
                "best test error": rec["best_test_error"],
                "best epoch": rec["best_epoch"],
                "final test error": rec["final_test_error"],
                "dip (final - best)": rec["final_test_error"] - rec["best_test_error"],
            }
        )
    return pd.DataFrame(rows)


def bridge_series(
    recs: pd.DataFrame,
) -> tuple[dict[str, list[float]], dict[str, pd.DataFrame]]:
    """Final spectra and dynamics of the bridge runs and their unregularized partners (same
    seed, same corruption), named for the figure's legend."""
    spectra: dict[str, list[float]] = {}
    curves: dict[str, pd.DataFrame] = {}
    for c, lam, seed, rec in bridge_runs(recs):
        name = f"{int(100 * c)}% corr., " + (f"lambda={lam:g}" if lam else "no reg.")
        spectra[name] = list(rec["spectrum_final"])
        curves[name] = dynamics_frame(recs, c, lam, seed)
    return spectra, curves


def spectrum_facts(s0: Any, s1: Any, rank: int) -> pd.DataFrame:
    """Facts of the top singular values at initialization ``s0`` and after training ``s1``:
    λ_1, λ_10, λ_rank, the last computed, ratios, and how many exceed λ_1/10."""
    s0, s1 = np.asarray(s0, float), np.asarray(s1, float)
    r = min(rank, len(s0), len(s1))
    ten = min(10, r)
    return pd.DataFrame(
        {
            "lambda_1": [s0[0], s1[0]],
            f"lambda_{ten}": [s0[ten - 1], s1[ten - 1]],
            f"lambda_{r}": [s0[r - 1], s1[r - 1]],
            "last computed": [s0[-1], s1[-1]],
            f"lambda_1 / lambda_{ten}": [s0[0] / s0[ten - 1], s1[0] / s1[ten - 1]],
            f"lambda_1 / lambda_{r}": [s0[0] / s0[r - 1], s1[0] / s1[r - 1]],
            "# sv > lambda_1 / 10": [int((s0 > s0[0] / 10).sum()), int((s1 > s1[0] / 10).sum())],
            "# computed": [len(s0), len(s1)],
        },
        index=["initial", "final"],
    )


def dip_table(recs: pd.DataFrame, corruptions: tuple[float, ...] = (0.0, 0.5)) -> pd.DataFrame:
    """Per corruption level (lam 0), means over the seeds of: best test error and its epoch,
    final test error, the rise after the best, final training error on the training labels,
    and the final training residual on 𝓘 / 𝓝 (fractions of ``||r_0||²``)."""
    rows = []
    for c in corruptions:
        if c not in set(recs["corruption"]):
            continue
        for seed in sorted(_sel(recs, c)["seed"]):
            d = dynamics_frame(recs, c, 0.0, int(seed))
            rows.append(
                {
                    "corruption": c,
                    "best test error": d["test_error"].min(),
                    "epoch of best": int(d.loc[d["test_error"].idxmin(), "epoch"]),
                    "final test error": d["test_error"].iloc[-1],
                    "rise after best": d["test_error"].iloc[-1] - d["test_error"].min(),
                    "final train error (training labels)": d["train_error"].iloc[-1],
                    "train residual on I at end": d["train_info_final"].iloc[-1],
                    "train residual on N at end": d["train_nuis_final"].iloc[-1],
                }
            )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    out = df.groupby("corruption").mean()
    out["seeds"] = df.groupby("corruption").size()
    return out


def method_check(model: nn.Module, x: Tensor, k: int) -> pd.DataFrame:
    """Top-``k`` singular values of ``𝒥`` by the exact Gram, Lanczos and the randomized SVD on a
    small subset: seconds, the largest relative error of the values and the mean squared cosine
    of the top-``k`` left subspace to the exact one."""
    jac = ParameterJacobian(model, x, chunk_size=128, col_chunk=64)
    k = min(k, jac.n * jac.K - 1)
    rows, ref = [], None
    for method in ("exact", "lanczos", "randomized"):
        t0 = time.perf_counter()
        spec = top_singular(jac, k, method)
        sec = time.perf_counter() - t0
        ref = ref or spec
        rows.append(
            {
                "method": method,
                "seconds": sec,
                "max rel. error of top-k sv": float(((spec.s - ref.s).abs() / ref.s).max()),
                "mean cos^2 to exact subspace": float(
                    torch.linalg.svdvals(spec.u.T @ ref.u).pow(2).mean()
                ),
            }
        )
    out = pd.DataFrame(rows)
    out.attrs.update({"n": jac.n, "nK": jac.n * jac.K, "p": jac.p, "k": k})
    return out


# ---------------------------------------------------------------------------------------------
# The chapter's result
# ---------------------------------------------------------------------------------------------


@dataclass
class LowRankResult:
    """What :func:`run` returns. ``records``: every stored run of the profile (diverged ones
    included, ``None`` when the dataset is absent); ``fig3``: :func:`synthetic_spectrum`;
    ``check``: :func:`method_check` on ``bench_n`` training samples."""

    settings: dict[str, Any]
    fig3: pd.DataFrame
    records: pd.DataFrame | None = None
    dataset: str | None = None
    source: str = ""
    missing: str = ""
    check: pd.DataFrame | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def profile(self) -> str:
        return str(self.settings["profile"])

    @property
    def ran(self) -> bool:
        """Whether the training runs happened (dataset on disk)."""
        return self.records is not None

    @property
    def ok(self) -> pd.DataFrame:
        """The runs that finished (status ``ok``)."""
        return split_ok(self.records)[0] if self.records is not None else pd.DataFrame()

    @property
    def n_diverged(self) -> int:
        """Runs stored as diverged, left out of every table, counted in the verdicts (each
        leaves its cell undecided)."""
        return 0 if self.records is None else split_ok(self.records)[1]

    @property
    def panel(self) -> Panel:
        """The paper's CIFAR-10 as this page ran it (a stand-in named as such), or not run."""
        if self.dataset is None:
            return Panel(PAPER_DATASET, None, f"{PAPER_DATASET}: not run", self.missing)
        return Panel.running(PAPER_DATASET, self.dataset, self.source)

    @property
    def stand_in(self) -> bool:
        return self.panel.stand_in

    def runs(self, claim: str) -> pd.DataFrame:
        """The tidy runs frame ``claim`` is judged on (columns ``gates.required_columns``)."""
        s = self.settings
        if claim == SPECTRUM_CLAIM:
            return spectrum_runs(self.fig3, s["fig3_clusters"], s["fig3_classes"])
        if claim == LOW_RANK_CLAIM:
            return low_rank_runs(self.fig3, s["fig3_clusters"], s["fig3_classes"])
        return with_diverged(claim, _RUNS[claim](self.ok), self.records)

    def frames(self) -> dict[str, pd.DataFrame]:
        out = {"fig3": self.fig3, "spectrum_runs": self.runs(SPECTRUM_CLAIM)}
        if self.ran and len(self.ok):
            out.update(
                {
                    "alignment_runs": alignment_runs(self.ok),
                    "residual_runs": residual_runs(self.ok),
                    "rise_runs": rise_runs(self.ok),
                    "sweep": sweep_frame(self.ok),
                    "bridge": bridge_frame(self.ok),
                    "dynamics": dynamics_long(self.ok),
                }
            )
        return out

    def provenance(self) -> str:
        s = self.settings
        if not self.ran:
            return lab_settings.provenance(s, f"{s['dataset']} (absent)")
        rec = self.ok.iloc[0] if len(self.ok) else None
        extra = {
            "n_test": s["n_test"],
            "net": s["arch"],
            "rank": s["rank"],
            "epochs": (s["epochs_clean"], s["epochs_noisy"]),
        }
        if rec is not None:
            extra.update({"p": int(rec["p"]), "nK": int(rec["nK"])})
        if s.get("lr_drop_noisy") is not None:
            extra["lr/10 at epoch (corrupted)"] = s["lr_drop_noisy"]
        if self.n_diverged:
            extra["diverged runs"] = self.n_diverged
        return lab_settings.provenance(s, self.source or str(self.dataset), **extra)

    def fig3_provenance(self) -> str:
        s = self.settings
        return (
            f"profile={self.profile}; synthetic mixture C={s['fig3_classes']}, "
            f"K={s['fig3_clusters']}, d={s['fig3_dim']}, sigma={s['fig3_sigma']}, hidden "
            f"k={s['fig3_hidden']}, n={sorted(int(v) for v in self.fig3['n'].unique())}, "
            f"draws (seeds)={list(s['fig3_seeds'])}; mean with 95 % CI over draws"
        )

    def figures(self) -> dict[str, Figure]:
        """The page's figures (seaborn; means with 95 % CIs over seeds where there are
        several)."""
        from jacnb.chapters import _low_rank_plots as plots

        s = self.settings
        out = {
            "fig3": plots.synthetic_spectrum(
                self.fig3, s["fig3_clusters"], s["fig3_classes"], self.fig3_provenance()
            )
        }
        if not self.ran or self.ok.empty:
            return out
        prov = self.provenance()
        if 0.0 in set(self.ok["corruption"]):
            rec0 = _pick(self.ok, 0.0)
            out["spectrum"] = plots.spectrum_histogram(
                {
                    "initial": rec0["spectrum_initial"],
                    "final (clean labels)": rec0["spectrum_final"],
                },
                s["rank"],
                prov + f"; seed {int(rec0['seed'])}",
            )
        out["dynamics"] = plots.dynamics(dynamics_long(self.ok), prov)
        out["sweep"] = plots.corruption_sweep(sweep_frame(self.ok), prov)
        spectra, curves = bridge_series(self.ok)
        if spectra:
            out["bridge"] = plots.bridge(spectra, curves, s["rank"], prov)
        return out

    def paper_table(self) -> pd.DataFrame:
        """Their Tables 1 and 2 (``paper``) beside ours (mean over seeds)."""
        if not self.ran or self.ok.empty:
            return pd.DataFrame()
        parts = {}
        for c, name in ((0.0, "clean labels"), (0.5, "50% corrupted labels")):
            if c in set(self.ok["corruption"]):
                parts[name] = paper_vs_ours(self.ok, c)
        return pd.concat(parts, names=["labels"]) if parts else pd.DataFrame()

    def verdicts(self) -> list[Verdict]:
        """One verdict per registered claim of the page, by :func:`jacnb.lab.gates.decide`: the
        synthetic claims on Fig. 3's mixture, the training claims on every run (diverged ones
        counted: each leaves its cell undecided), ``not run`` without the dataset."""

        def spectrum(claim: Claim) -> Verdict:
            return gates.decide(claim, self.runs(claim.id), profile=self.profile, dataset=SYNTHETIC)

        def trained(claim: Claim) -> Verdict:
            if not self.ran:
                return gates.not_run(claim, self.missing, profile=self.profile)
            return gates.decide(
                claim,
                self.runs(claim.id),
                profile=self.profile,
                dataset=dataset_label(str(self.dataset)),
                stand_in=self.panel.stand_in,
            )

        return assemble_verdicts(
            NAME,
            lambda claim: spectrum if claim.id in (SPECTRUM_CLAIM, LOW_RANK_CLAIM) else trained,
        )

    def numbers(self) -> dict[str, float]:
        """Measured numbers for the prose (``myst_nb.glue``), means over seeds."""
        s = self.settings
        summ = fig3_summary(self.fig3, s["fig3_clusters"], s["fig3_classes"])
        out = dict.fromkeys(NUMBERS, math.nan)
        out.update(
            {
                "fig3_ratio": float(summ["top sv ratio n_hi / n_lo"].mean()),
                "fig3_sqrt": float(summ["sqrt(n_hi / n_lo)"].mean()),
                "n_diverged": float(self.n_diverged),
            }
        )
        if not self.ran or self.ok.empty:
            return out
        ok = self.ok
        if 0.0 in set(ok["corruption"]):
            t = alignment_frame(ok, 0.0)
            out["clean_info_initial"] = float(t.loc["initial", "||P_I y|| / ||y||"])
            out["clean_info_final"] = float(t.loc["final", "||P_I y|| / ||y||"])
        if 0.5 in set(ok["corruption"]):
            sub = _sel(ok, 0.5)
            out["noisy_train_acc_min"] = float(sub["train_acc"].min())
            out["noisy_best_test_error"] = float(sub["best_test_error"].mean())
            out["noisy_final_test_error"] = float(sub["final_test_error"].mean())
            out["noisy_steps"] = float(sub["steps"].min())
            out["noisy_seconds"] = float(sub["seconds"].mean())
        out["seconds_total"] = float(ok["seconds"].sum())
        return out


def run(
    profile: str = "cpu", *, executor: Any = None, store: ResultStore | None = None
) -> LowRankResult:
    """The chapter at ``profile``: Fig. 3 (no training, not stored), then every training run
    through the result store (a rerun trains nothing), and the method check of the spectrum
    routes. A dataset that is not on disk leaves the training claims ``not run``."""
    s = settings(profile)
    fig3 = synthetic_spectrum(s)
    try:
        ds = load_dataset(s["dataset"])
    except DatasetMissingError as err:
        why = f"{dataset_label(s['dataset'])} is not on disk (nothing is substituted): {err}"
        return LowRankResult(s, fig3, missing=why)
    store = store or ResultStore()
    records = run_grid(
        configs(s), run_lowrank, store, desc="low-rank runs", executor=executor, progress=False
    )
    x_small, _ = balanced_subset(ds.x_train, ds.y_train, s["bench_n"], s["seeds"][0])
    net0 = build_net({**s, "seed": s["seeds"][0]}, ds.input_shape, ds.n_classes).eval()
    check = method_check(net0, x_small, s["rank"])
    return LowRankResult(s, fig3, records, ds.name, ds.source, check=check)


__all__: list[str] = [
    "EXPERIMENT",
    "NAME",
    "LowRankResult",
    "alignment_frame",
    "alignment_runs",
    "bridge_frame",
    "bridge_series",
    "build_net",
    "checkpoint_epochs",
    "configs",
    "corrupt_labels",
    "dip_table",
    "dynamics_frame",
    "dynamics_long",
    "fig3_summary",
    "method_check",
    "paper_vs_ours",
    "residual_remaining",
    "residual_runs",
    "rise_runs",
    "run",
    "run_lowrank",
    "settings",
    "spectrum_facts",
    "spectrum_runs",
    "sweep_frame",
    "synthetic_spectrum",
]


# ---------------------------------------------------------------------------------------------
# Dry run (python -m jacnb.run low_rank_jacobian --profile paper --dry-run; jacnb.lab.dryrun)
# ---------------------------------------------------------------------------------------------


def dry_run(settings: Mapping[str, Any], device: torch.device) -> list[DryConfig]:
    """Every run of :func:`configs` as :mod:`jacnb.lab.dryrun` sees it: its SGD steps (clean or
    corrupted epochs x batches of ``n_train``) and one step of its net (squared loss, the exact
    Jacobian regularizer of the bridge runs). The Jacobian spectra taken at every checkpoint are
    not counted."""
    ds = get_dataset(settings["dataset"])
    out = []
    for c in configs(settings):
        lam = float(c.get("lam", 0.0))
        epochs = int(c["epochs_noisy"] if c["corruption"] > 0 else c["epochs_clean"])

        def build(device: torch.device, c: Mapping[str, Any] = c, lam: float = lam) -> Any:
            model = build_net(c, ds.input_shape, ds.n_classes).to(device)
            x, y = batch_of(ds, int(c["batch_size"]), device)
            reg = None
            if lam > 0:
                reg = JacobianRegularizer(method="exact", output=c.get("reg_output", "logits"))
            return make_step(model, reg, x, y, lam=lam, lr=float(c["lr"]), loss="squared")

        shape = (c["arch"], f"batch {c['batch_size']}", "jacobian (exact)" if lam > 0 else "none")
        steps = epochs * math.ceil(int(c["n_train"]) / int(c["batch_size"]))
        phase = "bridge (Jacobian reg.)" if lam > 0 else "corruption sweep"
        out.append(DryConfig(phase, ds.name, steps, shape, build, dict(c)))
    return out
