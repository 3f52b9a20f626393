"""ResNet chapter (Sec. VI-C): per-layer regularizer on real ResNet blocks, configs, tables,
verdicts, the ImageNet folder loader and stand-in labelling."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from jacnb.chapters import resnet as rx
from jacnb.core.distributed import FitConfig, fit
from jacnb.core.models import wide_resnet
from jacnb.core.regularizers import CONV_LAYERS, LINEAR_LAYERS, PerLayerJacobianRegularizer
from jacnb.lab.settings import get_profile


def test_per_layer_on_preact_blocks_is_the_sum_over_layers() -> None:
    """Eq. (52) summed over layers: hooks must pair each layer with its own output even where
    the shortcut conv runs before conv1 (execution order != registration order)."""
    torch.manual_seed(0)
    model = wide_resnet(10, 1, n_classes=4, in_channels=1).eval()
    x = torch.rand(3, 1, 8, 8)
    layers = [m for m in model.modules() if isinstance(m, LINEAR_LAYERS + CONV_LAYERS)]
    total = PerLayerJacobianRegularizer(generator=torch.Generator().manual_seed(5))(model, x)
    parts = [
        PerLayerJacobianRegularizer(layers=[m], generator=torch.Generator().manual_seed(5))(
            model, x
        )
        for m in layers
    ]
    torch.testing.assert_close(total, torch.stack(parts).sum(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_configs_follow_the_paper_settings(profile: str) -> None:
    s = get_profile("resnet", profile)
    t4, t5 = rx.table4_configs(s, "x"), rx.table5_configs(s, "y")
    assert len(t4) == 2 * len(s["table4"]["rows"]) * len(s["seeds"])
    assert len(t5) == 4 * len(s["seeds"])
    assert {c["lam"] for c in t4 if c["regularizer"] == "none"} == {0.0}
    if profile == "paper":
        assert t4[0]["schedule"] == [
            [0.01, 5],
            [0.05, 20],
            [0.005, 40],
            [0.0005, 40],
            [0.00005, 20],
        ]
        assert (t4[0]["depth"], t4[0]["widen_factor"]) == (22, 5)
        lam = {(c["n_train"], c["augment"]): c["lam"] for c in t4 if c["lam"]}
        assert lam == {(2500, "none"): 1.0, (10000, "none"): 1.0, (50000, "cifar"): 0.1}
        assert t5[0]["schedule"] == [[0.1, 30], [0.01, 30], [0.001, 30]]
        assert (t5[0]["image_size"], t5[0]["crop"]) == (128, 112)
        assert s["table4"]["candidates"] == ["cifar10"]
        assert s["table5"]["candidates"] == ["imagenet"]


def test_stand_ins_are_never_named_as_the_real_dataset() -> None:
    for name, label in rx.LABELS.items():
        if name not in ("cifar10", "imagenet"):
            assert "stand-in" in label, name
        assert name in ("cifar10", "imagenet") or "CIFAR-10 " not in label.split("(")[0]
    assert rx.pick_dataset(["imagenet"]) is None or rx.imagenet_root().exists()


def _records4() -> pd.DataFrame:
    rows = []
    for n, aug, acc0, acc1 in [(100, "none", 0.5, 0.6), (400, "cifar", 0.7, 0.65)]:
        for reg, acc in (("none", acc0), ("per_layer", acc1)):
            rows.append(
                {"n_train": n, "augment": aug, "regularizer": reg, "test_acc": acc, "seed": 0}
            )
    return pd.DataFrame(rows)


def test_table4_frame_and_verdict() -> None:
    ours = rx.table4_frame(_records4())
    assert list(ours.columns) == ["ResNet", "ResNet + Jac. reg."]
    assert list(ours.index) == ["100", "400 + aug."]
    s = get_profile("resnet", "paper")
    v = rx.verdict_table4(ours, s, "CIFAR-10")
    assert "not reproduced" in v and "400 + aug." in v
    stand_in = rx.verdict_table4(ours, get_profile("resnet", "cpu"), rx.LABELS["fashion-mnist"])
    assert "not tested at this scale" in stand_in and "reproduced" not in stand_in
    assert "not tested" in rx.verdict_table4(None, s, "CIFAR-10")
    assert list(rx.table4_paper().columns) == ["ResNet", "ResNet + Jac. reg."]


def test_table5_frame_and_verdict() -> None:
    rows = []
    for (aug, reg), acc in zip(
        rx.SETUPS, [(0.9, 0.3), (0.6, 0.36), (0.6, 0.47), (0.6, 0.48)], strict=True
    ):
        rows.append(
            {
                "augment": aug,
                "regularizer": reg,
                "train_acc": acc[0],
                "test_acc": acc[1],
                "seed": 0,
                "curves": {"epoch": [1]},
            }
        )
    ours = rx.table5_frame(pd.DataFrame(rows))
    assert ours.loc["Baseline", "GE"] == pytest.approx(60.0)
    v = rx.verdict_table5(ours, get_profile("resnet", "paper"), "ImageNet")
    assert v.startswith("Table V claim") and "reproduced" in v and "not reproduced" not in v
    assert list(rx.table5_paper().index) == list(rx.SETUPS.values())
    assert len(rx.fig5_curves(pd.DataFrame(rows))) == 4


def test_imagenet_folder_loader_trains(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                arr = (torch.rand(20, 24, 3) * 255).to(torch.uint8).numpy()
                Image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    train, val = rx.imagenet_folder(16, tmp_path)
    assert train[0][0].shape == (3, 16, 16) and len(val) == 4
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 14 * 14, 2))
    cfg = FitConfig(
        schedule=[(0.1, 1)],
        batch_size=2,
        augment="crop_colour",
        crop=14,
        regularizer="per_layer",
        lam=1.0,
    )
    result = fit(model, train, val, cfg)
    assert 0 <= result["test_acc"] <= 1 and len(result["curves"]["test_top5"]) == 1
    with pytest.raises(FileNotFoundError):
        rx.imagenet_folder(16, tmp_path / "absent")


def test_verdict_records_keep_the_table_decisions() -> None:
    from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN

    ours = rx.table4_frame(_records4())
    paper = get_profile("resnet", "paper")
    v4, v5 = rx.verdict_records(ours, None, paper, "CIFAR-10", "ImageNet")
    assert (v4.claim, v4.verdict) == ("table4.jr_better_every_row", NOT_REPRODUCED)
    assert v5.verdict == NOT_RUN
    cpu = get_profile("resnet", "cpu")
    v4, _ = rx.verdict_records(ours, None, cpu, rx.LABELS["fashion-mnist"], "")
    assert v4.verdict == INCONCLUSIVE and "stand-in" in v4.dataset
