"""Experiments of the low-rank Jacobian chapter (Oymak, Fabian, Li, Soltanolkotabi 2019) and
the bridge to Sokolic et al. 2017.

* :func:`jacnb.core.data.gaussian_mixture`, :class:`jacnb.core.models.OneHiddenLayer`,
:func:`synthetic_spectrum` -- their Fig. 3:
  a K-cluster-per-class Gaussian mixture and ``f(x) = V φ(Wx)`` with ``V`` fixed.
* :func:`corrupt_labels` -- each chosen label moved to a strictly different class.
* :func:`build_net` -- the chapter's nets: a one-hidden-layer MLP with its output scaled down
  (CPU profiles) and a ResNet20 without batch norm (their CIFAR-10 net; ``paper`` profile).
* :func:`run_lowrank` -- one training run for :func:`jacnb.lab.store.run_grid`: least squares,
  SGD, checkpoints; spectra and information / nuisance splits of the initial, final and
  early-stopping Jacobians; residual energies over training on train and test data. Returns a
  JSON-able dict (the store caches it, so a rerun trains nothing).
* :func:`alignment_frame`, :func:`dynamics_frame`, :func:`sweep_frame`, :func:`bridge_frame` --
  tidy DataFrames from the stored records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from jacnb.core.data import balanced_subset, gaussian_mixture, load_dataset
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
from jacnb.lab.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTED,
    REPRODUCED,
    Verdict,
)
from jacnb.lab.verdicts import NOT_RUN as V_NOT_RUN

EXPERIMENT = "low-rank"

# ---------------------------------------------------------------------------------------------
# Synthetic setting of their Fig. 3
# ---------------------------------------------------------------------------------------------


def synthetic_spectrum(settings: Mapping[str, Any]) -> pd.DataFrame:
    """Fig. 3: top singular values of ``𝒥(W₀)`` for ``n = m·C`` samples, ``m`` in
    ``settings["fig3_per_class"]`` (their 30 and 60), exact SVD via the Gram.

    Columns: ``n``, ``index`` (1-based), ``sv`` (singular value of ``𝒥``), ``sv_normalized``
    (of ``sqrt(KC/n)·𝒥``). Same ``W₀``, ``V`` and centres for every ``n``.
    """
    c, k_cl = settings["fig3_classes"], settings["fig3_clusters"]
    rows = []
    for m in settings["fig3_per_class"]:
        n = m * c
        data = gaussian_mixture(c, k_cl, settings["fig3_dim"], settings["fig3_sigma"], n, seed=0)
        net = OneHiddenLayer(settings["fig3_dim"], settings["fig3_hidden"], c, seed=1)
        spec = top_singular(ParameterJacobian(net, data["x"]), n * c, method="exact")
        for i, s in enumerate(spec.s.tolist()):
            rows.append((n, m, i + 1, s, s * math.sqrt(k_cl * c / n)))
    return pd.DataFrame(rows, columns=["n", "per_class", "index", "sv", "sv_normalized"])


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
# One run
# ---------------------------------------------------------------------------------------------


def run_configs(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run of the chapter at this profile: the corruption sweep without regularizer, and
    the bridge runs (Jacobian regularizer) at the ``bridge_corruptions``."""
    base = {
        "experiment": EXPERIMENT,
        "profile": settings["profile"],
        **{
            k: settings[k]
            for k in (
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
                "n_checkpoints",
                "rank",
                "n_spectrum",
                "svd_iters",
            )
        },
        "seed": settings["seeds"][0],
    }
    configs = [{**base, "corruption": c, "lam": 0.0} for c in settings["corruptions"]]
    configs += [
        {**base, "corruption": c, "lam": settings["bridge_lam"], "reg_output": "logits"}
        for c in settings["bridge_corruptions"]
    ]
    return configs


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


def run_lowrank(config: Mapping[str, Any]) -> dict[str, Any]:
    """One run (see module doc). Labels ``y`` are the (possibly corrupted) one-hot training
    labels; test labels are clean. The early-stopping Jacobian is taken at the checkpoint of
    lowest test error (their Table 2 uses epoch 50, their best)."""
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
    marks = checkpoint_epochs(epochs, int(config["n_checkpoints"]))
    reg = None
    if config.get("lam", 0.0) > 0:
        reg = JacobianRegularizer(method="exact", output=config.get("reg_output", "logits"))
    rank, n_spec, iters = int(config["rank"]), int(config["n_spectrum"]), int(config["svd_iters"])

    def spectrum(x: Tensor, k: int) -> tuple[Spectrum, float]:
        t0 = time.perf_counter()
        spec = top_singular(
            ParameterJacobian(model, x, chunk_size=512), k, "randomized", n_iter=iters, seed=seed
        )
        return spec, time.perf_counter() - t0

    spec0_tr, t_svd = spectrum(x_tr, max(rank, n_spec))
    spec0_te, _ = spectrum(x_te, rank)
    snaps: list[dict[str, Any]] = []
    states: dict[int, dict[str, Tensor]] = {}
    r0_tr = None
    done = 0
    train_seconds = 0.0
    for mark in marks:
        if mark > done:
            res = train(
                model,
                x_tr,
                y_tr.to(dev),
                TrainConfig(
                    epochs=mark - done,
                    batch_size=int(config["batch_size"]),
                    lr=float(config["lr"]),
                    lr_drop_every=10**9,
                    momentum=float(config["momentum"]),
                    lam=float(config.get("lam", 0.0)),
                    seed=seed * 100_003 + done,
                    loss="squared",
                    eval_every=10**9,
                    progress=False,
                ),
                regularizer=reg,
                device=dev,
            )
            train_seconds += res["seconds"]
            done = mark
        model.eval()
        r_tr, err_tr = _errors(model, x_tr, y_tr.to(dev), ys_tr)
        r_te, err_te = _errors(model, x_te, y_te.to(dev), ys_te)
        with torch.no_grad():
            err_clean = float((model(x_tr).argmax(1).cpu() != y_clean).float().mean())
        if r0_tr is None:
            r0_tr = r_tr.cpu()
        states[mark] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        snaps.append(
            {
                "epoch": mark,
                "train_error": err_tr,
                "train_error_clean_labels": err_clean,
                "test_error": err_te,
                "r_train": r_tr.cpu(),
                "r_test": r_te.cpu(),
            }
        )
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
    vectors = {"y": ys_tr, "r0": r0_tr}
    alignment = {
        "initial": _split_rows(spec0_tr, vectors, rank),
        "final": _split_rows(spec_f_tr, vectors, rank),
        "best": _split_rows(spec_b_tr, vectors, rank),
    }
    # test-set label alignment (the test Jacobian's own spaces)
    test_alignment = {
        "initial": information_split(spec0_te, ys_te, rank=rank),
        "final": information_split(spec_f_te, ys_te, rank=rank),
    }
    dyn = []
    for s in snaps:
        row = {k: s[k] for k in ("epoch", "train_error", "train_error_clean_labels", "test_error")}
        for which, sp_tr, sp_te in (
            ("initial", spec0_tr, spec0_te),
            ("final", spec_f_tr, spec_f_te),
        ):
            i_tr, n_tr = project_energy(sp_tr.u[:, :rank], s["r_train"])
            i_te, n_te = project_energy(sp_te.u[:, :rank], s["r_test"])
            row.update(
                {
                    f"train_info_{which}": i_tr,
                    f"train_nuis_{which}": n_tr,
                    f"test_info_{which}": i_te,
                    f"test_nuis_{which}": n_te,
                }
            )
        dyn.append(row)
    with torch.no_grad():
        jnorm = (
            float(
                torch.func.vmap(torch.func.jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0)))(
                    x_te[:200]
                )
                .pow(2)
                .sum((1, 2))
                .mean()
            )
            if config["arch"] == "mlp"
            else float("nan")
        )
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
        "alignment": alignment,
        "test_alignment": test_alignment,
        "dynamics": dyn,
        "spectrum_initial": spec0_tr.s.tolist(),
        "spectrum_final": spec_f_tr.s.tolist(),
        "spectrum_best": spec_b_tr.s.tolist(),
        "input_jacobian_fro_sq_test": jnorm,
        "svd_seconds": t_svd,
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - t_start,
        "device": str(dev),
        "source": ds.source,
    }


# ---------------------------------------------------------------------------------------------
# Tidy frames from the stored records
# ---------------------------------------------------------------------------------------------

_QUANTITY = {
    ("y", "info"): "||P_I y|| / ||y||",
    ("y", "nuisance"): "||P_N y|| / ||y||",
    ("r0", "info"): "||P_I r0|| / ||r0||",
    ("r0", "nuisance"): "||P_N r0|| / ||r0||",
}


def alignment_frame(frame: pd.DataFrame, corruption: float, lam: float = 0.0) -> pd.DataFrame:
    """Tables 1/2 layout for one run: rows ``jacobian`` (initial, final; ``final`` = the
    early-stopping Jacobian when labels are corrupted, as in their Table 2), columns the four
    printed quantities, plus ``||J_I^† y||``."""
    rec = _pick(frame, corruption, lam)
    rows = {}
    for label, key in (("initial", "initial"), ("final", "best" if corruption > 0 else "final")):
        a = rec["alignment"][key]
        rows[label] = {q: a[v][s] for (v, s), q in _QUANTITY.items()}
        rows[label]["||J_I^+ y||"] = a["y"]["pinv_norm"]
    return pd.DataFrame(rows).T.rename_axis("jacobian")


def paper_vs_ours(frame: pd.DataFrame, corruption: float) -> pd.DataFrame:
    """Their Table 1 (clean) or 2 (50% corrupted) beside ours, long -> wide, labelled."""
    from jacnb.lab.paper import oymak_alignment

    theirs = oymak_alignment(corrupted=corruption > 0)
    theirs = theirs.pivot(index="jacobian", columns="quantity", values="fraction")
    ours = alignment_frame(frame, corruption)[list(_QUANTITY.values())]
    both = pd.concat({"theirs (CIFAR-10, ResNet20)": theirs, "ours": ours}, names=["source"])
    return both[list(_QUANTITY.values())]


def dynamics_frame(frame: pd.DataFrame, corruption: float, lam: float = 0.0) -> pd.DataFrame:
    """Residual energies on 𝓘/𝓝 over training, as fractions of the initial residual energy
    (train: ``||r_t||²/||r_0||²`` split; test likewise), with train/test error."""
    df = pd.DataFrame(_pick(frame, corruption, lam)["dynamics"])
    for split in ("train", "test"):
        for which in ("initial", "final"):
            r0 = df[f"{split}_info_{which}"].iloc[0] + df[f"{split}_nuis_{which}"].iloc[0]
            for part in ("info", "nuis"):
                df[f"{split}_{part}_{which}"] = df[f"{split}_{part}_{which}"] / r0
    return df


def sweep_frame(frame: pd.DataFrame, lam: float = 0.0) -> pd.DataFrame:
    """Fig. 7: per corruption level, label energy on 𝓝 (initial and final Jacobian), final and
    best test error."""
    rows = []
    sub = frame[frame["lam"] == lam].sort_values("corruption")
    for _, rec in sub.iterrows():
        a = rec["alignment"]
        rows.append(
            {
                "corruption": rec["corruption"],
                "label energy on N, initial J": a["initial"]["y"]["nuisance_energy"],
                "label energy on N, final J": a["final"]["y"]["nuisance_energy"],
                "label energy on N, early-stop J": a["best"]["y"]["nuisance_energy"],
                "final test error": rec["final_test_error"],
                "best test error": rec["best_test_error"],
                "best epoch": rec["best_epoch"],
                "final train error": rec["final_train_error"],
            }
        )
    return pd.DataFrame(rows)


def bridge_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """With vs without the input-Jacobian regularizer, at each bridge corruption level."""
    rows = []
    lams = sorted(frame["lam"].unique())
    for corruption in sorted(frame[frame["lam"] > 0]["corruption"].unique()):
        for lam in lams:
            rec = _pick(frame, corruption, lam)
            a = rec["alignment"]
            s_f = np.asarray(rec["spectrum_final"])
            rows.append(
                {
                    "corruption": corruption,
                    "lam": lam,
                    "||P_I y||/||y|| final J": a["final"]["y"]["info"],
                    "||P_I y||/||y|| early-stop J": a["best"]["y"]["info"],
                    "||P_I r0||/||r0|| final J": a["final"]["r0"]["info"],
                    "top sv final": s_f[0],
                    f"sv {int(rec['rank'])} final": s_f[int(rec["rank"]) - 1],
                    "stable rank final (top k)": float((s_f**2).sum() / s_f[0] ** 2),
                    "mean ||J_x||_F^2 (input, test)": rec["input_jacobian_fro_sq_test"],
                    "best test error": rec["best_test_error"],
                    "best epoch": rec["best_epoch"],
                    "final test error": rec["final_test_error"],
                    "dip (final - best)": rec["final_test_error"] - rec["best_test_error"],
                }
            )
    return pd.DataFrame(rows)


def _pick(frame: pd.DataFrame, corruption: float, lam: float) -> pd.Series:
    sub = frame[(frame["corruption"] == corruption) & (frame["lam"] == lam)]
    if len(sub) != 1:
        raise KeyError(f"{len(sub)} records for corruption={corruption}, lam={lam}")
    return sub.iloc[0]


__all__: list[str] = [
    "EXPERIMENT",
    "alignment_frame",
    "bridge_frame",
    "build_net",
    "checkpoint_epochs",
    "corrupt_labels",
    "dynamics_frame",
    "paper_vs_ours",
    "run_configs",
    "run_lowrank",
    "sweep_frame",
    "synthetic_spectrum",
]


def verdicts(frame: pd.DataFrame, profile: str = "") -> list[Verdict]:
    """Oymak et al.'s claims, decided on the quantities the chapter computes (no new runs).

    * ``oymak.fig7.label_energy_on_nuisance_grows`` -- their Fig. 7: the share of the label
      energy on the nuisance space 𝓝 of the initial Jacobian grows with the corruption level.
      Rule: reproduced iff it rises at every step of the sweep (``lam == 0``); inconclusive with
      fewer than two levels.
    * ``oymak.early_stopping_helps_with_noise`` -- Sec. 5: with corrupted labels the best
      (early-stopped) test error is below the final one. Rule: reproduced iff
      ``best < final`` at every corruption level > 0; inconclusive if there is none.
    * ``oymak.table1.labels_on_information_space`` -- their Table 1 (clean labels): most of the
      label energy lies on the information space of the final Jacobian. Rule: reproduced iff
      ``||P_I y|| / ||y|| > ||P_N y|| / ||y||`` for the final Jacobian; not run without a clean
      run.
    """
    out: list[Verdict] = []
    sweep = sweep_frame(frame)
    col = "label energy on N, initial J"
    claim = "oymak.fig7.label_energy_on_nuisance_grows"
    if len(sweep) < 2:
        out.append(Verdict(claim, INCONCLUSIVE, "one corruption level", reason=NOT_TESTED))
    else:
        steps = np.diff(sweep[col].to_numpy(float))
        ok = bool((steps > 0).all())
        values = ", ".join(
            f"{c:g}: {e:.3f}" for c, e in zip(sweep["corruption"], sweep[col], strict=True)
        )
        out.append(
            Verdict(
                claim,
                REPRODUCED if ok else NOT_REPRODUCED,
                f"label energy on N by corruption ({values}); rises at "
                f"{int((steps > 0).sum())}/{len(steps)} steps",
                profile=profile,
            )
        )
    noisy = sweep[sweep["corruption"] > 0]
    claim = "oymak.early_stopping_helps_with_noise"
    if noisy.empty:
        out.append(Verdict(claim, INCONCLUSIVE, "no corrupted run", reason=NOT_TESTED))
    else:
        better = noisy["best test error"] < noisy["final test error"]
        out.append(
            Verdict(
                claim,
                REPRODUCED if bool(better.all()) else NOT_REPRODUCED,
                f"best < final test error at {int(better.sum())}/{len(noisy)} corruption levels",
                profile=profile,
                n_seeds=1,
            )
        )
    claim = "oymak.table1.labels_on_information_space"
    try:
        table = alignment_frame(frame, 0.0)
    except KeyError:
        out.append(Verdict(claim, V_NOT_RUN, "no clean run", reason="no clean run"))
    else:
        info = float(table.loc["final", "||P_I y|| / ||y||"])
        nuis = float(table.loc["final", "||P_N y|| / ||y||"])
        out.append(
            Verdict(
                claim,
                REPRODUCED if info > nuis else NOT_REPRODUCED,
                f"final J: ||P_I y||/||y|| = {info:.3f}, ||P_N y||/||y|| = {nuis:.3f}",
                profile=profile,
            )
        )
    return out
