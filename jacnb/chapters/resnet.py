"""ResNets with the per-layer Jacobian regularizer (Sokolic et al. 2017, Sec. VI-C).

* Table IV -- Wide ResNet 22-5 on CIFAR-10, with and without the per-layer regularizer of
  eq. (52): 2500 and 10000 training samples without augmentation (factor 1) and 50000 with the
  augmentation of [35] (factor 0.1); learning rates
  ``(0.01, 5), (0.05, 20), (0.005, 40), (0.0005, 40), (0.00005, 20)``.
* Table V and Fig. 5 -- pre-activation ResNet-18 on ImageNet resized to 128x128, with and
  without eq. (52) (factor 1), without and with augmentation (random 112x112 crops + colour
  augmentation); learning rates ``(0.1, 30), (0.01, 30), (0.001, 30)``.

Every run is one config dict (:func:`table4_configs`, :func:`table5_configs`) trained by
:func:`run_config` through :func:`jacnb.core.distributed.fit`, which checkpoints every epoch beside
the result-store record, so a killed run resumes; :func:`run_table` goes through
:func:`jacnb.lab.store.run_grid`, so finished runs are never repeated. ``scripts/train_resnet.py``
trains the same configs under ``torchrun`` (DDP) and writes the same records.

Datasets: the real ones when present (CIFAR-10 via torchvision's files, ImageNet from a user
folder in ImageFolder layout, :func:`imagenet_folder`). A profile may list a stand-in after
the real name; it is then used only when the real one is absent, and is always *labelled* as a
stand-in (:data:`LABELS`), never by the real dataset's name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from jacnb.core.data import DatasetMissingError, balanced_subset, data_root, resize_images
from jacnb.core.distributed import FitConfig, fit
from jacnb.core.models import build_model
from jacnb.lab import paper
from jacnb.lab.datasets import NOT_RUN, get_dataset, stand_in_label, try_dataset
from jacnb.lab.store import ResultStore, run_grid
from jacnb.lab.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTED,
    REPRODUCED,
    Verdict,
)
from jacnb.lab.verdicts import NOT_RUN as V_NOT_RUN

#: Display names; a stand-in is always named as such.
LABELS = {
    "cifar10": stand_in_label("cifar10", "CIFAR-10"),
    "imagenet": stand_in_label("imagenet", "ImageNet"),
    "fashion-mnist": stand_in_label("fashion-mnist", "CIFAR-10"),
    "digits": stand_in_label("digits", "CIFAR-10", "resized"),
    "mnist-10k": stand_in_label("mnist-10k", "ImageNet", "resized"),
}


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def imagenet_root() -> Path:
    """``$JACNB_IMAGENET``, else ``<data root>/imagenet`` (holding ``train/`` and ``val/``)."""
    env = os.environ.get("JACNB_IMAGENET")
    return Path(env).expanduser() if env else data_root() / "imagenet"


def imagenet_folder(size: int = 128, root: str | Path | None = None):
    """ImageNet train/val as torchvision ``ImageFolder`` s, images resized to ``size x size``.

    Layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (Sec. VI-C2 resizes to
    128x128; cropping and colour augmentation are done on tensors by the training loop).

    Raises:
        DatasetMissingError: if ``root/train`` or ``root/val`` is missing.
    """
    from torchvision import datasets, transforms

    root = Path(root) if root is not None else imagenet_root()
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetMissingError(
            f"imagenet: {root}/train and {root}/val not found (set JACNB_IMAGENET). Download "
            "ILSVRC2012 from image-net.org and arrange it in ImageFolder layout."
        )
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    train = datasets.ImageFolder(str(root / "train"), tf)
    return train, datasets.ImageFolder(str(root / "val"), tf)


def available(name: str) -> bool:
    """Whether the files of dataset ``name`` are on disk (nothing is downloaded)."""
    if name != "imagenet":
        return try_dataset(name) is not None  # loaded once per process, reused by tensor_data
    try:
        imagenet_folder(8)
    except DatasetMissingError:
        return False
    return True


def pick_dataset(candidates: list[str]) -> str | None:
    """The first of ``candidates`` that is on disk (``None``: none is; the table is not run)."""
    for name in candidates:
        if available(name):
            return name
    return None


@functools.lru_cache(maxsize=8)
def tensor_data(
    name: str, n_train: int | None, n_test: int | None, size: int, seed: int
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], int, int]:
    """``((x_train, y_train), (x_test, y_test), in_channels, n_classes)`` of an in-memory set.

    ``n_train``/``n_test``: seeded class-balanced subsets (``None``: all). Images at ``size``.
    """
    ds = get_dataset(name)
    xtr, ytr = ds.x_train, ds.y_train
    xte, yte = ds.x_test, ds.y_test
    if n_train is not None and n_train < len(ytr):
        xtr, ytr = balanced_subset(xtr, ytr, n_train, seed)
    if n_test is not None and n_test < len(yte):
        xte, yte = balanced_subset(xte, yte, n_test, seed)
    # zero-pad when at most 4 px smaller (28 -> 32), else resize bilinearly (no antialiasing)
    xtr, xte = (resize_images(t, size, pad_upto=4, antialias=False) for t in (xtr, xte))
    return (xtr, ytr), (xte, yte), int(xtr.shape[1]), ds.n_classes


def channel_stats(x: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a training set (the data normalization of [35])."""
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


def _config(
    settings: Mapping[str, Any],
    table: Mapping[str, Any],
    dataset: str,
    augment: str,
    reg: str,
    lam: float,
    seed: int,
) -> dict[str, Any]:
    """The fields every Table IV / Table V run config has (per-table fields are added)."""
    return {
        "profile": settings["profile"],
        "dataset": dataset,
        "n_test": table["n_test"],
        "augment": augment,
        "regularizer": reg,
        "lam": lam if reg == "per_layer" else 0.0,
        "schedule": [list(p) for p in table["schedule"]],
        "batch_size": table["batch_size"],
        "weight_decay": table["weight_decay"],
        "bf16": settings.get("bf16", False),
        "seed": seed,
    }


def table4_configs(settings: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """One config per (row of Table IV, +-per-layer JR, seed) at the profile's scale."""
    s = settings["table4"]
    return [
        {
            **_config(settings, s, dataset, row["augment"], reg, row["lam"], seed),
            "experiment": "resnet-table4",
            "arch": "wide_resnet",
            "depth": s["depth"],
            "widen_factor": s["widen_factor"],
            "image_size": s.get("image_size", 32),
            "n_train": row["n_train"],
            "nesterov": s["nesterov"],
        }
        for row in s["rows"]
        for reg in ("none", "per_layer")
        for seed in settings["seeds"]
    ]


def table5_configs(settings: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """One config per setup of Table V (+-aug, +-per-layer JR) and seed."""
    s = settings["table5"]
    return [
        {
            **_config(settings, s, dataset, augment, reg, s["lam"], seed),
            "experiment": "resnet-table5",
            "arch": "preact_resnet18",
            "image_size": s["image_size"],
            "crop": s["crop"],
            "n_train": s["n_train"],
            "nesterov": False,
            "train_eval_n": s.get("train_eval_n"),
        }
        for augment in ("none", "crop_colour")
        for reg in ("none", "per_layer")
        for seed in settings["seeds"]
    ]


# ---------------------------------------------------------------------------------------------
# Running one config
# ---------------------------------------------------------------------------------------------


def build_and_data(config: Mapping[str, Any]) -> tuple[nn.Module, Any, Any, FitConfig]:
    """The fresh model, train data, test data and :class:`FitConfig` of a config dict."""
    name, size = config["dataset"], int(config["image_size"])
    if name == "imagenet":
        train, test = imagenet_folder(size)
        in_ch, n_classes = 3, len(train.classes)
        normalize = None
    else:
        train, test, in_ch, n_classes = tensor_data(
            name, config["n_train"], config["n_test"], size, int(config["seed"])
        )
        normalize = channel_stats(train[0]) if config["arch"] == "wide_resnet" else None
    torch.manual_seed(int(config["seed"]))
    if config["arch"] == "wide_resnet":
        model = build_model(
            "wide_resnet",
            depth=config["depth"],
            widen_factor=config["widen_factor"],
            n_classes=n_classes,
            in_channels=in_ch,
        )
    else:
        model = build_model("preact_resnet18", n_classes=n_classes, in_channels=in_ch)
    cfg = FitConfig(
        schedule=[tuple(p) for p in config["schedule"]],
        batch_size=int(config["batch_size"]),
        momentum=0.9,
        nesterov=bool(config.get("nesterov", False)),
        weight_decay=float(config["weight_decay"]),
        regularizer=config["regularizer"],
        lam=float(config["lam"]),
        augment=config["augment"],
        # without augmentation Table V trains and tests on the full 128x128 image
        crop=config.get("crop") if config["augment"] == "crop_colour" else None,
        normalize=normalize,
        seed=int(config["seed"]),
        bf16=bool(config.get("bf16", False)),
        train_eval_n=config.get("train_eval_n"),
        num_workers=8 if name == "imagenet" else 0,
    )
    return model, train, test, cfg


def run_config(
    config: Mapping[str, Any], store: ResultStore | None = None, device: str | None = None
) -> dict[str, Any]:
    """Train one config (resuming from its per-epoch checkpoint if one exists)."""
    store = store or ResultStore()
    model, train, test, cfg = build_and_data(config)
    ckpt = store.path(config).with_suffix(".train.pt")
    return fit(model, train, test, cfg, checkpoint=ckpt, device=device)


def run_table(
    configs: list[dict[str, Any]], store: ResultStore | None = None, progress: bool = False
) -> pd.DataFrame:
    """All configs through :func:`jacnb.lab.store.run_grid` (finished ones are not rerun)."""
    store = store or ResultStore()
    return run_grid(
        configs, lambda c: run_config(c, store), store, desc="resnet", progress=progress
    )


# ---------------------------------------------------------------------------------------------
# Tables and verdicts
# ---------------------------------------------------------------------------------------------

REG_LABEL = {"none": "ResNet", "per_layer": "ResNet + Jac. reg."}


def table4_frame(records: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy [%] (mean over seeds) per training-set size and regularizer."""
    df = records.copy()
    df["row"] = [
        f"{n}" + (" + aug." if a != "none" else "")
        for n, a in zip(df["n_train"], df["augment"], strict=True)
    ]
    df["test_acc"] = 100 * df["test_acc"]
    out = df.pivot_table(index=["n_train", "row"], columns="regularizer", values="test_acc")
    out = out.rename(columns=REG_LABEL).reset_index().drop(columns="n_train")
    return out.set_index("row").rename_axis("# train samples").rename_axis(None, axis=1)


def table4_paper() -> pd.DataFrame:
    """The paper's Table IV in the same layout (CIFAR-10, WRN-22-5)."""
    p = paper.table4()
    p["row"] = [
        f"{n}" + (" + aug." if a else "") for n, a in zip(p.n_train, p.augmentation, strict=True)
    ]
    out = p.pivot_table(index="row", columns="label", values="accuracy", sort=False)
    return out.rename_axis("# train samples").rename_axis(None, axis=1)


SETUPS = {
    ("none", "none"): "Baseline",
    ("none", "per_layer"): "Baseline + Jac. reg.",
    ("crop_colour", "none"): "Baseline + aug.",
    ("crop_colour", "per_layer"): "Baseline + aug + Jac. reg.",
}


def table5_frame(records: pd.DataFrame) -> pd.DataFrame:
    """Train / test top-1 accuracy and GE [%] (mean over seeds) per setup of Table V."""
    rows = []
    for (aug, reg), label in SETUPS.items():
        sel = records[(records.augment == aug) & (records.regularizer == reg)]
        if len(sel):
            tr, te = 100 * sel.train_acc.mean(), 100 * sel.test_acc.mean()
            rows.append({"Setup": label, "Train": tr, "Test": te, "GE": tr - te})
    return pd.DataFrame(rows).set_index("Setup")


def table5_paper() -> pd.DataFrame:
    """The paper's Table V (ImageNet, ResNet-18, 128x128)."""
    p = paper.table5().rename(
        columns={
            "label": "Setup",
            "train_accuracy": "Train",
            "test_accuracy": "Test",
            "generalization_error": "GE",
        }
    )
    return p.set_index("Setup")[["Train", "Test", "GE"]]


def improves_everywhere(ours: pd.DataFrame, base: str, reg: str) -> tuple[bool, list[str]]:
    """Whether column ``reg`` beats ``base`` in every row; the rows where it does not."""
    worse = [str(i) for i, r in ours.iterrows() if not r[reg] > r[base]]
    return not worse, worse


def verdict_table4(ours: pd.DataFrame | None, settings: Mapping[str, Any], label: str) -> str:
    """Verdict on "per-layer JR improves accuracy in every setting of Table IV".

    Only the paper's setting (``paper`` profile on CIFAR-10) can reproduce or refute the claim;
    elsewhere the verdict is "not tested at this scale" and the observation is reported as such.
    """
    if ours is None:
        return "Table IV claim: not tested (" + NOT_RUN + ")."
    ok, worse = improves_everywhere(ours, "ResNet", "ResNet + Jac. reg.")
    real = settings["profile"] == "paper" and label == "CIFAR-10"
    seen = "JR higher in every row" if ok else f"no gain in rows {', '.join(worse)}"
    if real:
        what = "reproduced" if ok else "not reproduced"
        return f"Table IV claim (JR better in every row): {what} ({seen})."
    t4 = settings["table4"]
    return (
        "Table IV claim (JR better in every row): not tested at this scale "
        f"({label}, WRN-{t4['depth']}-{t4['widen_factor']}, short schedule); observed here: "
        f"{seen}."
    )


def verdict_table5(ours: pd.DataFrame | None, settings: Mapping[str, Any], label: str) -> str:
    """Verdict on "per-layer JR improves test accuracy and lowers GE" (Table V); as for
    :func:`verdict_table4`, only the ``paper`` profile on ImageNet can reproduce or refute it."""
    if ours is None or len(ours) < 4:
        return "Table V claim: not tested (" + NOT_RUN + ")."
    gain_plain = ours.loc["Baseline + Jac. reg.", "Test"] - ours.loc["Baseline", "Test"]
    gain_aug = ours.loc["Baseline + aug + Jac. reg.", "Test"] - ours.loc["Baseline + aug.", "Test"]
    ok = gain_plain > 0 and gain_aug > 0
    real = settings["profile"] == "paper" and label == "ImageNet"
    seen = f"test gain {gain_plain:+.2f} points without, {gain_aug:+.2f} with augmentation"
    claim = "Table V claim (JR raises test accuracy without and with augmentation)"
    if real:
        return f"{claim}: {'reproduced' if ok else 'not reproduced'} ({seen})."
    return f"{claim}: not tested at this scale ({label}, tiny scale); observed here: {seen}."


def fig5_curves(records: pd.DataFrame) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Per (augment, regularizer): the curves of the first seed (for Fig. 5)."""
    out = {}
    for (aug, reg), _ in SETUPS.items():
        sel = records[(records.augment == aug) & (records.regularizer == reg)]
        if len(sel):
            out[(aug, reg)] = sel.sort_values("seed").iloc[0]["curves"]
    return out


def _record(text: str, claim: str, dataset: str, profile: str) -> Verdict:
    """One of :func:`verdict_table4` / :func:`verdict_table5`'s sentences as a record (same
    decision: the sentence's verdict word)."""
    if f"not tested ({NOT_RUN})" in text:
        return Verdict(claim, V_NOT_RUN, text, reason=NOT_RUN, dataset=dataset, profile=profile)
    if ": not reproduced" in text:
        return Verdict(claim, NOT_REPRODUCED, text, dataset=dataset, profile=profile)
    if ": reproduced" in text:
        return Verdict(claim, REPRODUCED, text, dataset=dataset, profile=profile)
    return Verdict(claim, INCONCLUSIVE, text, reason=NOT_TESTED, dataset=dataset, profile=profile)


def verdict_records(
    ours4: pd.DataFrame | None,
    ours5: pd.DataFrame | None,
    settings: Mapping[str, Any],
    label4: str,
    label5: str,
) -> list[Verdict]:
    """The Table IV and Table V claims as :class:`~jacnb.lab.verdicts.Verdict` records
    (``table4.jr_better_every_row``, ``table5.jr_raises_test_accuracy``); the decisions are those
    of :func:`verdict_table4` and :func:`verdict_table5`: only the ``paper`` profile on the real
    dataset can reproduce or refute, elsewhere the verdict is inconclusive (not tested at this
    scale), and an absent dataset is "not run"."""
    profile = settings["profile"]
    return [
        _record(
            verdict_table4(ours4, settings, label4), "table4.jr_better_every_row", label4, profile
        ),
        _record(
            verdict_table5(ours5, settings, label5),
            "table5.jr_raises_test_accuracy",
            label5,
            profile,
        ),
    ]
