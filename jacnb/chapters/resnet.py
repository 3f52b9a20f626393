"""ResNets with the per-layer Jacobian regularizer (Sokolic et al. 2017, Sec. VI-C).

Notebook: ``notebooks/05_resnet.ipynb``
(``from jacnb.chapters import resnet as chapter``).

* Table IV -- Wide ResNet 22-5 on CIFAR-10, with and without the per-layer regularizer of
  eq. (52): 2500 and 10000 training samples without augmentation (factor 1) and 50000 with the
  augmentation of [35] (factor 0.1); learning rates
  ``(0.01, 5), (0.05, 20), (0.005, 40), (0.0005, 40), (0.00005, 20)``: 125 epochs in all.
* Table V and Fig. 5 -- pre-activation ResNet-18 on ImageNet resized to 128x128, with and
  without eq. (52) (factor 1), without and with augmentation (random 112x112 crops + colour
  augmentation; our augmentation also flips images horizontally, which the paper does not
  mention); learning rates ``(0.1, 30), (0.01, 30), (0.001, 30)``.

The per-layer regularizer is :class:`jacnb.core.regularizers.PerLayerJacobianRegularizer` with
its default ``batch_norm="fixed"``: ``g^l`` per sample with the batch statistics held fixed
(eq. 52 is per sample); ``"coupled"`` would differentiate the training forward pass as it is.

Chapter interface: :data:`NAME`, :func:`settings`, :func:`configs`, :func:`run`
-> :class:`ResnetResult` (``frames``, ``figures``, ``paper_table``, ``verdicts``). Every run is
one config dict (:func:`table4_configs`, :func:`table5_configs`) trained by :func:`run_config`
through :func:`jacnb.core.distributed.fit`, which checkpoints every epoch beside the result-store
record, so a killed run resumes; :func:`run_tables` sends both tables through
:func:`jacnb.lab.store.run_grids` (with the executor, and the runs' peak checkpoint size; one
SLURM job array for both), so finished runs are never repeated. ``scripts/train_resnet.py``
trains the same configs under ``torchrun`` (DDP) and writes the same records. The verdicts come
only from :func:`jacnb.lab.gates.decide` on the tidy runs frames, or
:func:`jacnb.lab.gates.not_run` where no dataset is on disk. The factors are the paper's (no
selection), so no factor gate applies.

Datasets: the real ones when present (CIFAR-10 from torchvision's ``cifar-10-batches-py`` files,
ImageNet from a user folder in ImageFolder layout, :func:`jacnb.core.data.load_imagenet`). A
profile may list a stand-in after the real name; it is then used only when the real one is
absent, and is always *labelled* as a stand-in (:meth:`ResnetResult.panel`,
:func:`jacnb.lab.datasets.stand_in_label`), never by the real dataset's name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from jacnb.core.data import (
    DatasetMissingError,
    balanced_subset,
    load_imagenet,
    resize_images,
)
from jacnb.core.distributed import FitConfig, fit
from jacnb.core.models import build_model
from jacnb.lab import gates, paper
from jacnb.lab import settings as lab_settings
from jacnb.lab.claims import Claim
from jacnb.lab.datasets import NOT_RUN, Panel, dataset_label, get_dataset, try_dataset
from jacnb.lab.dryrun import DryConfig, batch_of
from jacnb.lab.pipeline import assemble_verdicts, decide_panel
from jacnb.lab.records import RunStatus, is_ok
from jacnb.lab.settings import ABSENT
from jacnb.lab.store import Grid, ResultStore, run_grids
from jacnb.lab.tables import percent_mean_sd
from jacnb.lab.timing import default_threads, make_step
from jacnb.lab.verdicts import Verdict

NAME = "05_resnet"

#: The paper's dataset of each table (its claims are about it; anything else is a stand-in).
PAPER = {"table4": "CIFAR-10", "table5": "ImageNet"}
#: Stand-ins labelled "resized" (their images are scaled to the table's input size).
RESIZED = ("digits", "mnist-10k")


def _rows(sizes: tuple[int, int, int]) -> tuple[dict[str, Any], ...]:
    """Table IV's rows: the two smaller sets without augmentation (factor 1), the largest with
    it (factor 0.1), as in the paper."""
    a, b, c = sizes
    return (
        {"n_train": a, "augment": "none", "lam": 1.0},
        {"n_train": b, "augment": "none", "lam": 1.0},
        {"n_train": c, "augment": "cifar", "lam": 0.1},
    )


@dataclass(frozen=True)
class Table4Settings:
    """Table IV (Wide ResNet) at ``cpu``: the first of ``candidates`` on disk runs (a stand-in
    labelled as such); ``schedule``: ``[(lr, epochs), ...]`` phases. ``cpu`` rows of 250, 500
    and 1,000 samples (500, 1,000 and 2,000 until the book was cut to its 45-minute budget; the
    protocol page's log says when and why)."""

    candidates: tuple[str, ...] = ("cifar10", "fashion-mnist")
    depth: int = 10
    widen_factor: int = 2
    image_size: int = 32
    rows: tuple[dict[str, Any], ...] = _rows((250, 500, 1000))
    n_test: int | None = 2000
    schedule: tuple[tuple[float, int], ...] = ((0.01, 1), (0.05, 3), (0.005, 3), (0.0005, 1))
    batch_size: int = 128
    weight_decay: float = 0.0005
    nesterov: bool = True
    #: Evaluate only after the last epoch (Table IV shows final accuracies; its curves are not
    #: drawn). At ``cpu`` the per-epoch evaluation on 2,000 test images was about 40 % of a
    #: Table IV run's work; absent at ``smoke`` and ``paper`` (evaluated every epoch).
    eval_final_only: Any = True


@dataclass(frozen=True)
class Table5Settings:
    """Table V and Fig. 5 (pre-activation ResNet-18) at ``cpu``: ``image_size`` then a random
    ``crop``; ``train_eval_n``: training samples the training accuracy is measured on (absent:
    all). ``cpu``: 500 training samples (1,000 until the 45-minute cut, as Table IV's)."""

    candidates: tuple[str, ...] = ("imagenet", "mnist-10k")
    image_size: int = 32
    crop: int = 28
    n_train: int | None = 500
    n_test: int | None = 1000
    schedule: tuple[tuple[float, int], ...] = ((0.1, 3), (0.01, 2), (0.001, 1))
    batch_size: int = 64
    lam: float = 1.0
    weight_decay: float = 0.0001
    train_eval_n: Any = ABSENT


@dataclass(frozen=True)
class Settings:
    """Tables IV, V and Fig. 5 at the ``cpu`` profile (:data:`OVERRIDES`: the other
    profiles')."""

    seeds: tuple[int, ...] = (0,)
    datasets: tuple[str, ...] = ("cifar10", "fashion-mnist", "imagenet", "mnist-10k")
    table4: Table4Settings = Table4Settings()
    table5: Table5Settings = Table5Settings()


OVERRIDES: dict[str, dict[str, Any]] = {
    # smoke lists the paper's datasets first too, so that the page's data paths run in CI on
    # small fixtures in their on-disk layouts (tests/core/test_data_layouts.py).
    "smoke": dict(
        datasets=("cifar10", "fashion-mnist", "digits", "imagenet", "mnist-10k"),
        table4=replace(
            Table4Settings(),
            candidates=("cifar10", "fashion-mnist", "digits"),
            widen_factor=1,
            image_size=16,
            rows=(
                {"n_train": 60, "augment": "none", "lam": 1.0},
                {"n_train": 120, "augment": "cifar", "lam": 0.1},
            ),
            n_test=100,
            schedule=((0.05, 1),),
            batch_size=60,
            eval_final_only=ABSENT,
        ),
        table5=replace(
            Table5Settings(),
            candidates=("imagenet", "mnist-10k"),
            image_size=16,
            crop=14,
            n_train=20,
            n_test=20,
            schedule=((0.1, 1), (0.01, 1)),
            batch_size=10,
        ),
    ),
    # paper: 3 seeds, the minimum every Table IV-V claim needs (jacnb.lab.claims,
    # GateSpec.min_seeds); with one seed no claim of the page could be decided. Cost of the
    # two extra seeds, Table V: 4 runs x 90 epochs x 5,005 steps (ImageNet, batch 256) at
    # the paper's own Table VI step times on a Titan X (0.120 s plain, 0.190 s per-layer
    # JR) = 77.6 GPU-hours per seed, so +155 Titan X-hours; Table IV (WRN-22-5): 2 arms x
    # 125 epochs x (20 + 79 + 391) steps = 122,500 steps per seed, no measured GPU step time.
    "paper": dict(
        seeds=(0, 1, 2),
        datasets=("cifar10", "imagenet"),
        table4=replace(
            Table4Settings(),
            candidates=("cifar10",),
            depth=22,
            widen_factor=5,
            rows=_rows((2500, 10000, 50000)),
            n_test=None,
            schedule=((0.01, 5), (0.05, 20), (0.005, 40), (0.0005, 40), (5e-05, 20)),
            eval_final_only=ABSENT,
        ),
        table5=replace(
            Table5Settings(),
            candidates=("imagenet",),
            image_size=128,
            crop=112,
            n_train=None,
            n_test=None,
            schedule=((0.1, 30), (0.01, 30), (0.001, 30)),
            batch_size=256,
            train_eval_n=50000,
        ),
    ),
}


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.resolve`)."""
    return lab_settings.resolve(Settings(), OVERRIDES, profile)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def available(name: str) -> bool:
    """Whether the files of dataset ``name`` are on disk (nothing is downloaded)."""
    if name != "imagenet":
        return try_dataset(name) is not None  # loaded once per process, reused by tensor_data
    try:
        load_imagenet(size=8)
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
            **({"eval_final_only": True} if s.get("eval_final_only") else {}),
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
        ds = load_imagenet(
            size=size, n_train=config["n_train"], n_test=config["n_test"], seed=int(config["seed"])
        )
        train, test, in_ch, n_classes = ds.train, ds.test, 3, ds.n_classes
        normalize = None
    else:
        train, test, in_ch, n_classes = tensor_data(
            name, config["n_train"], config["n_test"], size, int(config["seed"])
        )
        normalize = channel_stats(train[0]) if config["arch"] == "wide_resnet" else None
    torch.manual_seed(int(config["seed"]))
    model = build_net(config, in_ch, n_classes)
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
        eval_final_only=bool(config.get("eval_final_only", False)),
        num_workers=loader_workers(name, train),
    )
    return model, train, test, cfg


#: Images from which ImageNet is decoded in loader processes (below: their start-up, at every
#: epoch and evaluation, costs more than they save).
LOADER_WORKERS_FROM = 10_000


def loader_workers(name: str, train: Any) -> int:
    """Loader processes that decode a folder dataset's images: up to 8, never more than the
    cores at hand, none for in-memory tensors or fewer than :data:`LOADER_WORKERS_FROM`
    images."""
    if name != "imagenet" or len(train) < LOADER_WORKERS_FROM:
        return 0
    return min(8, default_threads())


def run_config(
    config: Mapping[str, Any], store: ResultStore | None = None, device: str | None = None
) -> dict[str, Any]:
    """Train one config (resuming from its per-epoch checkpoint if one exists); the record adds
    ``steps``, the SGD steps of the schedule (global batches)."""
    store = store or ResultStore()
    model, train, test, cfg = build_and_data(config)
    ckpt = store.path(config).with_suffix(".train.pt")
    result = fit(model, train, test, cfg, checkpoint=ckpt, device=device)
    n = len(train[1]) if isinstance(train, tuple) else len(train)
    return {**result, "steps": int(cfg.epochs * math.ceil(n / cfg.batch_size))}


def configs(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run of Tables IV and V at these settings, on the first candidate dataset of each
    table that is on disk (a table with none contributes nothing)."""
    out: list[dict[str, Any]] = []
    name4 = pick_dataset(settings["table4"]["candidates"])
    name5 = pick_dataset(settings["table5"]["candidates"])
    if name4 is not None:
        out += table4_configs(settings, name4)
    if name5 is not None:
        out += table5_configs(settings, name5)
    return out


def build_net(config: Mapping[str, Any], in_channels: int, n_classes: int) -> nn.Module:
    """The config's net from the one model registry: ``wide_resnet`` (Table IV) or
    ``preact_resnet18`` (Table V)."""
    if config["arch"] == "wide_resnet":
        return build_model(
            "wide_resnet",
            depth=config["depth"],
            widen_factor=config["widen_factor"],
            n_classes=n_classes,
            in_channels=in_channels,
        )
    return build_model("preact_resnet18", n_classes=n_classes, in_channels=in_channels)


def _n_classes(config: Mapping[str, Any]) -> tuple[int, int]:
    if config["dataset"] == "imagenet":
        return 3, load_imagenet(size=8).n_classes
    ds = get_dataset(config["dataset"])
    return int(ds.x_train.shape[1]), int(ds.n_classes)


def checkpoint_bytes(config: Mapping[str, Any]) -> int:
    """A run's peak checkpoint use on disk: weights and momentum buffers (float32) of its net,
    twice (the new checkpoint is written beside the old one before it replaces it), plus 1 MiB
    for curves and metadata."""
    in_ch, n_classes = _n_classes(config)
    model = build_net(config, in_ch, n_classes)
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    return int(2 * 2 * 4 * n + 2**20)


def run_tables(
    tables: Mapping[str, list[dict[str, Any]]],
    store: ResultStore | None = None,
    executor: Any = None,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Every table's configs (``{"Table IV": configs, ...}``) through
    :func:`jacnb.lab.store.run_grids` (finished ones are not rerun), with the executor and the
    largest :func:`checkpoint_bytes` of the configs; the tables do not depend on each other, so
    their missing runs go out together (one SLURM job array). An empty table gets an empty
    frame."""
    store = store or ResultStore()
    present = {name: configs for name, configs in tables.items() if configs}
    if not present:
        return {name: pd.DataFrame() for name in tables}
    peak = max(checkpoint_bytes(c) for configs in present.values() for c in configs)
    run = functools.partial(run_config, store=store)
    frames = run_grids(
        [Grid(configs, run, desc=name) for name, configs in present.items()],
        store,
        executor,
        progress=progress,
        checkpoint_bytes=peak,
    )
    out = dict(zip(present, frames, strict=True))
    return {name: out.get(name, pd.DataFrame()) for name in tables}


def run_table(
    configs: list[dict[str, Any]],
    store: ResultStore | None = None,
    executor: Any = None,
    progress: bool = True,
    desc: str = "resnet",
) -> pd.DataFrame:
    """One table's configs through :func:`run_tables`."""
    return run_tables({desc: configs}, store, executor, progress)[desc]


def run(
    profile: str = "cpu",
    *,
    executor: Any = None,
    store: ResultStore | None = None,
    bf16: bool = False,
) -> ResnetResult:
    """Train (or load) every run of Tables IV and V at ``profile`` (``bf16``: the runs trained
    under bf16 autocast, e.g. by ``scripts/train_resnet.py --bf16``; a config key)."""
    s = settings(profile)
    s["bf16"] = bool(bf16)
    store = store or ResultStore()
    name4 = pick_dataset(s["table4"]["candidates"])
    name5 = pick_dataset(s["table5"]["candidates"])
    frames = run_tables(
        {
            "Table IV": table4_configs(s, name4) if name4 else [],
            "Table V": table5_configs(s, name5) if name5 else [],
        },
        store,
        executor,
    )
    rec4 = frames["Table IV"] if name4 else None
    rec5 = frames["Table V"] if name5 else None
    return ResnetResult(s["profile"], s, name4, name5, rec4, rec5)


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------

REG_LABEL = {"none": "ResNet", "per_layer": "ResNet + Jac. reg."}
#: the claims' arms: the per-layer regularizer is the claims' "jacobian" arm
ARM = {"none": "none", "per_layer": "jacobian"}
SETUPS = {
    ("none", "none"): "Baseline",
    ("none", "per_layer"): "Baseline + Jac. reg.",
    ("crop_colour", "none"): "Baseline + aug.",
    ("crop_colour", "per_layer"): "Baseline + aug + Jac. reg.",
}


def tidy_runs(records: pd.DataFrame | None) -> pd.DataFrame:
    """One row per stored run: ``seed``, ``arm`` (``none``/``jacobian``), ``regularizer``,
    ``n_train``, ``augment``, ``augmentation`` (bool), ``test_acc``, ``train_acc``, ``gap``
    (train - test accuracy), top-5 accuracies, ``steps``, ``epochs``, ``lam``, ``dataset``,
    ``status``, ``seconds``, ``curves``."""
    if records is None or records.empty:
        return pd.DataFrame(
            columns=[
                "seed",
                "arm",
                "regularizer",
                "n_train",
                "augment",
                "augmentation",
                "test_acc",
                "train_acc",
                "gap",
                "steps",
                "lam",
                "dataset",
                "status",
            ]
        )
    df = records.copy()
    out = pd.DataFrame(
        {
            "seed": df["seed"].astype(int),
            "arm": df["regularizer"].map(ARM),
            "regularizer": df["regularizer"],
            "n_train": df["n_train"],
            "augment": df["augment"],
            "augmentation": df["augment"] != "none",
            "test_acc": df.get("test_acc", np.nan),
            "train_acc": df.get("train_acc", np.nan),
            "test_top5": df.get("test_top5", np.nan),
            "train_top5": df.get("train_top5", np.nan),
            "steps": df.get("steps", np.nan),
            "epochs": [sum(int(e) for _, e in s) for s in df["schedule"]],
            "lam": df["lam"],
            "dataset": df["dataset"],
            "status": df["status"] if "status" in df else RunStatus.OK,
            "seconds": df.get("seconds", np.nan),
            "curves": df.get("curves", None),
        }
    )
    out["gap"] = out["train_acc"] - out["test_acc"]
    return out.reset_index(drop=True)


def _row4(n: int, augment: Any) -> str:
    return f"{n}" + (" + aug." if augment not in ("none", False) else "")


def _curve_rows(r: pd.Series) -> list[dict[str, Any]]:
    """Fig. 5's rows of one run ``r``: per epoch, split and k, its top-k accuracy (none when the
    run stored no curves)."""
    c = r["curves"]
    if not isinstance(c, Mapping):
        return []
    return [
        {
            "augment": r["augment"],
            "regularizer": r["regularizer"],
            "seed": r["seed"],
            "epoch": ep,
            "split": split,
            "k": k,
            "accuracy": c[f"{split}_top{k}"][i],
        }
        for i, ep in enumerate(c["epoch"])
        for split in ("train", "test")
        for k in (1, 5)
    ]


def fig5_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5's data from Table V's finished runs (:meth:`ResnetResult.curves`)."""
    return pd.DataFrame([row for _, r in runs.iterrows() for row in _curve_rows(r)])


def table_provenance(s: Mapping[str, Any], table: str, label: str) -> str:
    """The provenance line of ``table`` under the chapter settings ``s``, its dataset named by
    ``label`` (:meth:`ResnetResult.provenance`)."""
    t = s[table]
    common = dict(
        epochs=sum(n for _, n in t["schedule"]), schedule=t["schedule"], batch=t["batch_size"]
    )
    if table == "table4":
        return lab_settings.provenance(
            s,
            label,
            net=f"WRN-{t['depth']}-{t['widen_factor']}",
            n_train=[r["n_train"] for r in t["rows"]],
            n_test=t["n_test"] or "all",
            **common,
            lam={r["n_train"]: r["lam"] for r in t["rows"]},
        )
    return lab_settings.provenance(
        s,
        label,
        net="pre-activation ResNet-18",
        image_size=t["image_size"],
        crop=t["crop"],
        n_train=t["n_train"] or "all",
        n_test=t["n_test"] or "all",
        **common,
        lam=t["lam"],
    )


def _paired(df: pd.DataFrame, metric: str) -> float:
    """The mean paired JR - baseline difference of ``metric`` over seeds [points] (NaN without
    both arms)."""
    if df.empty:
        return float("nan")
    w = df.pivot_table(index="seed", columns="arm", values=metric)
    if not {"none", "jacobian"} <= set(w.columns):
        return float("nan")
    d = (w["jacobian"] - w["none"]).dropna()
    return round(100 * float(d.mean()), 2) if len(d) else float("nan")


def _table4_ours(runs: pd.DataFrame, n: int, aug: Any) -> dict[str, Any]:
    """Our cells of one Table IV row: mean ± sd per arm and the mean paired difference."""
    o = runs[(runs.n_train == n) & (runs.augment == aug)] if len(runs) else runs
    w = o.pivot_table(index="seed", columns="arm", values="test_acc")
    d = (
        (w["jacobian"] - w["none"]).dropna()
        if {"none", "jacobian"} <= set(w.columns)
        else pd.Series(dtype=float)
    )
    return {
        "ours: # train samples": _row4(n, aug),
        "ours: ResNet": percent_mean_sd(o.loc[o.arm == "none", "test_acc"]),
        "ours: ResNet + Jac. reg.": percent_mean_sd(o.loc[o.arm == "jacobian", "test_acc"]),
        "ours: diff": round(100 * d.mean(), 2) if len(d) else np.nan,
    }


def table4_paper(
    runs: pd.DataFrame, ours_rows: Sequence[tuple[int, Any]], ran: bool
) -> pd.DataFrame:
    """Table IV beside ours (:meth:`ResnetResult.paper_table`): the paper's rows in order, ours
    (``ours_rows``: (size, augmentation) of the profile) in the same order."""
    p = paper.table4()
    p_rows = p.drop_duplicates(["n_train", "augmentation"])[["n_train", "augmentation"]]
    out = []
    for i, (_, pr) in enumerate(p_rows.iterrows()):
        cell = p[(p.n_train == pr.n_train) & (p.augmentation == pr.augmentation)]
        acc = cell.set_index("regularizer")["accuracy"]
        row: dict[str, Any] = {
            "paper: # train samples": _row4(int(pr.n_train), bool(pr.augmentation)),
            "paper: ResNet": acc.get("none"),
            "paper: ResNet + Jac. reg.": acc.get("jacobian"),
            "paper: diff": round(acc.get("jacobian") - acc.get("none"), 2),
        }
        if i < len(ours_rows) and ran:
            row.update(_table4_ours(runs, *ours_rows[i]))
        else:
            row["ours: # train samples"] = "not run"
        out.append(row)
    return pd.DataFrame(out)


def table5_paper(runs: pd.DataFrame) -> pd.DataFrame:
    """Table V beside ours (:meth:`ResnetResult.paper_table`): per setup, train / test accuracy
    and GE."""
    p = paper.table5().set_index("label")
    out = []
    for (aug, reg), setup in SETUPS.items():
        row = {"setup": setup}
        for col, name in (
            ("train_accuracy", "Train"),
            ("test_accuracy", "Test"),
            ("generalization_error", "GE"),
        ):
            row[f"paper: {name}"] = p.loc[setup, col]
        o = runs[(runs.augment == aug) & (runs.regularizer == reg)] if len(runs) else runs
        for col, name in (("train_acc", "Train"), ("test_acc", "Test"), ("gap", "GE")):
            row[f"ours: {name}"] = percent_mean_sd(o[col]) if len(o) else "not run"
        out.append(row)
    return pd.DataFrame(out)


def _table_numbers(runs: pd.DataFrame) -> dict[str, float]:
    """The fewest SGD steps, the epochs, training minutes and lowest training accuracy [%] of
    one table's finished runs (NaN where none)."""
    nan = float("nan")
    if not len(runs):
        return dict(min_steps=nan, epochs=nan, minutes=nan, min_train_acc=nan)
    return dict(
        min_steps=int(runs["steps"].min()),
        epochs=int(runs["epochs"].max()),
        minutes=round(float(runs["seconds"].sum()) / 60, 1),
        min_train_acc=round(100 * float(runs["train_acc"].min()), 2),
    )


def paired_numbers(r4: pd.DataFrame, r5: pd.DataFrame) -> dict[str, float]:
    """The mean paired JR - baseline differences the page quotes: Table IV's first row's test
    accuracy; Table V's test accuracy and GE without augmentation, test accuracy with it."""
    first = r4[r4.n_train == r4.n_train.min()] if len(r4) else r4
    plain = r5[~r5.augmentation.astype(bool)] if len(r5) else r5
    aug = r5[r5.augmentation.astype(bool)] if len(r5) else r5
    return {
        "table4_diff_first_row": _paired(first, "test_acc"),
        "table5_test_diff_no_aug": _paired(plain, "test_acc"),
        "table5_ge_diff_no_aug": _paired(plain, "gap"),
        "table5_test_diff_aug": _paired(aug, "test_acc"),
    }


@dataclass
class ResnetResult:
    """Tables IV and V (and Fig. 5) as run at one profile (:func:`run`); its methods name what
    the page shows, the module-level functions above build it."""

    profile: str
    settings: dict[str, Any]
    dataset4: str | None
    dataset5: str | None
    records4: pd.DataFrame | None
    records5: pd.DataFrame | None

    # --- tidy frames ------------------------------------------------------------------------

    def runs(self, table: str, ok_only: bool = True) -> pd.DataFrame:
        """The tidy runs of ``table`` (``"table4"``/``"table5"``, :func:`tidy_runs`); only the
        runs with status ``ok`` unless ``ok_only=False``."""
        df = tidy_runs(self.records4 if table == "table4" else self.records5)
        return df[is_ok(df)].reset_index(drop=True) if ok_only else df

    def diverged(self) -> dict[str, int]:
        """Runs stored as diverged per table (left out of every mean and table, counted in the
        verdicts)."""
        return {
            t: int((~is_ok(self.runs(t, ok_only=False))).sum())
            for t in ("table4", "table5")
        }

    def curves(self) -> pd.DataFrame:
        """Fig. 5's data, long: one row per (run, epoch, split, k) with the top-k accuracy."""
        return fig5_curves(self.runs("table5"))

    def frames(self) -> dict[str, pd.DataFrame]:
        """``table4_runs``, ``table5_runs`` (status ``ok`` only, without the curves) and
        ``fig5_curves`` (:meth:`curves`)."""
        return {
            "table4_runs": self.runs("table4").drop(columns=["curves"], errors="ignore"),
            "table5_runs": self.runs("table5").drop(columns=["curves"], errors="ignore"),
            "fig5_curves": self.curves(),
        }

    # --- tables -----------------------------------------------------------------------------

    def panel(self, table: str) -> Panel:
        """What ``table`` ran: the paper's dataset, or a stand-in named as such (a resized one
        says so), or not run (the candidates looked for)."""
        name = self.dataset4 if table == "table4" else self.dataset5
        if name is None:
            cands = self.settings[table]["candidates"]
            return Panel(PAPER[table], None, NOT_RUN, f"{NOT_RUN} (looked for {', '.join(cands)})")
        return Panel.running(PAPER[table], name, label_note="resized" if name in RESIZED else "")

    def label(self, table: str) -> str:
        """The dataset label of ``table`` (:meth:`panel`)."""
        return self.panel(table).label

    def provenance(self, table: str) -> str:
        """The provenance line of ``table``: dataset, net, sizes, schedule (epochs), factors."""
        return table_provenance(self.settings, table, self.label(table))

    def paper_table(self, table: str = "table4") -> pd.DataFrame:
        """The paper's table (columns labelled "paper") beside ours (mean ± sd over the ``ok``
        seeds, %). Table IV: one row per paper row, ours in the same order (our sizes are the
        profile's, named in ``ours: n_train``); ``diff`` = JR - ResNet in points (ours: mean
        paired difference). Table V: one row per setup, train / test accuracy and GE."""
        if table == "table4":
            ours = [(r["n_train"], r["augment"]) for r in self.settings["table4"]["rows"]]
            return table4_paper(self.runs(table), ours, self.dataset4 is not None)
        return table5_paper(self.runs(table))

    def numbers(self) -> dict[str, float]:
        """Measured numbers the page's prose quotes (``myst_nb.glue``), the same keys at every
        profile: per table the mean paired JR - baseline difference [points] (Table IV: in its
        first row; Table V: test accuracy and GE without augmentation), the fewest SGD steps and
        the epochs of the runs, training minutes, diverged runs."""
        out: dict[str, float] = {}
        for table in ("table4", "table5"):
            n = _table_numbers(self.runs(table))
            out[f"{table}_min_steps"] = n["min_steps"]
            out[f"{table}_epochs"] = n["epochs"]
            out[f"{table}_minutes"] = n["minutes"]
            out[f"{table}_diverged"] = self.diverged()[table]
            out[f"{table}_min_train_acc"] = n["min_train_acc"]
        return {**out, **paired_numbers(self.runs("table4"), self.runs("table5"))}

    # --- figures ----------------------------------------------------------------------------

    def figures(self) -> dict[str, Figure]:
        """Table IV (test accuracy per row, mean and 95 % CI over seeds) and Fig. 5 (top-1 /
        top-5 accuracy during training, mean and 95 % CI over seeds), for the tables that ran."""
        from jacnb.chapters import _resnet_plots

        out: dict[str, Figure] = {}
        r4 = self.runs("table4")
        if len(r4):
            out["Table IV"] = _resnet_plots.table4_figure(r4, self.provenance("table4"))
        curves = self.curves()
        if len(curves):
            out["Fig. 5"] = _resnet_plots.fig5(curves, self.provenance("table5"))
        return out

    def figure(self, name: str = "Table IV") -> Figure:
        """One of :meth:`figures` (``"Table IV"``, ``"Fig. 5"``); a figure saying "not run"
        where that table did not run."""
        from jacnb.lab.plotting import pick_figure

        return pick_figure(self.figures(), name, f"{name}: {NOT_RUN}")

    def settings_table(self) -> pd.DataFrame:
        """The settings of Tables IV and V at this profile."""
        return pd.DataFrame(
            {
                "Table IV": {k: str(v) for k, v in self.settings["table4"].items()},
                "Table V": {k: str(v) for k, v in self.settings["table5"].items()},
            }
        ).fillna("")

    # --- verdicts ---------------------------------------------------------------------------

    def verdicts(self) -> list[Verdict]:
        """One verdict per claim registered on this page: :func:`jacnb.lab.pipeline.decide_panel`
        on every run of the table whose paper dataset is the claim's (diverged ones counted as
        the claim registers; a stand-in named as such), or :func:`jacnb.lab.gates.not_run` when no
        candidate dataset is on disk."""
        table_of = {paper: table for table, paper in PAPER.items()}

        def decider(claim: Claim):
            table = table_of[claim.dataset]
            panel = self.panel(table)
            return lambda c: decide_panel(
                c.id,
                self.runs(table, ok_only=False),
                profile=self.profile,
                panel=panel,
                dataset=dataset_label(str(panel.dataset)) if panel.ran else None,
                columns=gates.required_columns(c.id),
            )

        return assemble_verdicts(NAME, decider)


# ---------------------------------------------------------------------------------------------
# Dry run (python -m jacnb.run resnet --profile paper --dry-run; jacnb.lab.dryrun)
# ---------------------------------------------------------------------------------------------


def dry_run(settings: Mapping[str, Any], device: torch.device) -> list[DryConfig]:
    """Every run of Tables IV and V at ``settings`` on the paper's datasets (the first candidate
    of each table) as :mod:`jacnb.lab.dryrun` sees it: its SGD steps (epochs x batches of its
    training set) and one step of its net on a batch at its training input size (the crop with
    augmentation), with the per-layer regularizer of eq. (52) where it has one. ImageNet's
    images are read from its folder when it is there, else its shape is used."""
    from jacnb.lab.dryrun import PAPER_SHAPES, random_batch

    out = []
    for table, make in (("table4", table4_configs), ("table5", table5_configs)):
        name = settings[table]["candidates"][0]
        for c in make(settings, name):
            size = int(c["crop"] if c["augment"] == "crop_colour" else c["image_size"])
            if name == "imagenet":
                try:
                    ds = load_imagenet(size=size, n_train=c["n_train"], seed=int(c["seed"]))
                    n_classes, n = ds.n_classes, ds.n_train

                    def batch(dev: torch.device, ds: Any = ds, b: int = c["batch_size"]) -> Any:
                        xs, ys = zip(*(ds.train[i] for i in range(b)), strict=True)
                        return torch.stack(xs).to(dev), torch.as_tensor(ys).to(dev)

                except DatasetMissingError:
                    shape = PAPER_SHAPES["imagenet"]
                    n_classes, n = shape.n_classes, c["n_train"] or shape.n_train

                    def batch(dev: torch.device, b: int = c["batch_size"], s: int = size) -> Any:
                        return random_batch((3, s, s), 1000, b, dev)

                in_ch = 3
            else:
                ds_mem = get_dataset(name)
                n_classes, in_ch = ds_mem.n_classes, int(ds_mem.x_train.shape[1])
                n = c["n_train"] or ds_mem.n_train

                def batch(dev: torch.device, ds: Any = ds_mem, c: Any = c, s: int = size) -> Any:
                    x, y = batch_of(ds, int(c["batch_size"]), torch.device("cpu"))
                    return resize_images(x, s, pad_upto=4, antialias=False).to(dev), y.to(dev)

            out.append(_dry_config(table, c, name, n, in_ch, n_classes, size, batch))
    return out


def _dry_config(
    table: str,
    c: Mapping[str, Any],
    name: str,
    n: int,
    in_ch: int,
    n_classes: int,
    size: int,
    batch: Any,
) -> DryConfig:
    from jacnb.core.regularizers import make_regularizer

    lam = float(c["lam"])
    epochs = sum(int(e) for _, e in c["schedule"])

    def build(device: torch.device) -> Any:
        torch.manual_seed(int(c["seed"]))
        model = build_net(c, in_ch, n_classes).to(device)
        x, y = batch(device)
        reg = make_regularizer("per_layer") if c["regularizer"] == "per_layer" and lam else None
        return make_step(model, reg, x, y, lam=lam, lr=float(c["schedule"][0][0]))

    reg = c["regularizer"] if lam else "none"
    shape = (c["arch"], f"{size}x{size}", f"batch {c['batch_size']}", reg)
    phase = "Table IV" if table == "table4" else "Table V"
    steps = epochs * math.ceil(int(n) / int(c["batch_size"]))
    return DryConfig(phase, name, steps, shape, build, dict(c))
