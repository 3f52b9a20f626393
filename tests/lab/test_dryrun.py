"""The dry run of a profile (jacnb.lab.dryrun, ``python -m jacnb.run --dry-run``): synthetic
stand-ins of the exact shape that never outlive the dry run, configs grouped by cost shape,
failures reported (a planted shape error), nothing written to the result store, the JSON and
the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jacnb.chapters import weight_norm
from jacnb.core.data import DatasetMissingError
from jacnb.lab import datasets, dryrun, fc_nets, pipeline
from jacnb.lab.dryrun import PAPER_SHAPES, DryConfig

CPU = torch.device("cpu")


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch):
    """An empty data root and result store; dataset cache emptied before and after."""
    monkeypatch.setenv("JACNB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("JACNB_IMAGENET", str(tmp_path / "imagenet"))
    monkeypatch.setenv("JACNB_RESULTS", str(tmp_path / "results"))
    datasets.clear_cache()
    yield tmp_path
    datasets.clear_cache()


def test_synthetic_dataset_has_the_exact_shape_and_costs_no_memory() -> None:
    for shape in PAPER_SHAPES.values():
        if shape.name == "imagenet":
            continue
        ds = dryrun.synthetic_dataset(shape)
        assert ds.input_shape == shape.input_shape and ds.n_classes == shape.n_classes
        assert (ds.n_train, ds.n_test) == (shape.n_train, shape.n_test)
        assert ds.x_train.stride(0) == 0  # one image viewed N times
        assert torch.bincount(ds.y_train).min() >= shape.n_train // shape.n_classes
        assert ds.source.startswith("SYNTHETIC") and f"not {shape.name}" in ds.source
    lared = dryrun.synthetic_dataset(PAPER_SHAPES["lared"])
    assert len(lared.meta["y_test_other"]) == 97_200
    # LaRED's split: 81 classes x 10 subjects x 300 frames; subjects 1-6 split 80/20
    assert 116_640 + 29_160 == 81 * 6 * 300 and 97_200 == 81 * 4 * 300


def test_synthetic_stand_ins_are_labelled_and_removed(no_data: Path) -> None:
    with dryrun.datasets_or_synthetic(["cifar10", "digits", "imagenet"]) as status:
        assert status == {"cifar10": "synthetic", "digits": "real", "imagenet": "synthetic"}
        assert datasets.get_dataset("cifar10").source.startswith("SYNTHETIC")
    assert datasets.try_dataset("cifar10") is None  # gone after the dry run
    with pytest.raises(DatasetMissingError):
        datasets.get_dataset("cifar10")


def _config(phase: str, seed: int, shape: tuple, build=None) -> DryConfig:
    def default(device: torch.device):
        model = torch.nn.Linear(4, 3).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.rand(8, 4, device=device), torch.randint(3, (8,), device=device)

        def step() -> float:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss)

        return step

    return DryConfig(phase, "digits", 100 + seed, shape, build or default, {"seed": seed})


def test_configs_sharing_a_shape_are_timed_once_and_counted_all() -> None:
    built = []

    def counting(device: torch.device):
        built.append(device)
        return lambda: None

    configs = [_config("grid", s, ("linear", "batch 8"), counting) for s in range(3)]
    configs.append(_config("grid", 0, ("linear", "batch 16"), counting))
    rows = dryrun.measure("ch", configs, CPU, {"digits": "real"}, steps=2, warmup=1)
    assert [r.configs for r in rows] == [3, 1] and [r.steps for r in rows] == [303, 100]
    assert len(built) == 2  # one build per shape
    assert all(r.seconds_per_step is not None and r.peak_mb > 0 for r in rows)
    assert rows[0].hours == pytest.approx(303 * rows[0].seconds_per_step / 3600)


def test_a_shape_error_is_a_failure_row() -> None:
    def broken(device: torch.device):
        model = torch.nn.Linear(5, 3)
        return lambda: model(torch.rand(8, 4))  # 4 inputs into a net that takes 5

    rows = dryrun.measure("ch", [_config("grid", 0, ("bad",), broken)], CPU, {})
    assert rows[0].seconds_per_step is None and "RuntimeError" in rows[0].error
    summary = dryrun.chapter_summary(rows)
    assert summary[0]["failures"] == 1


def test_weight_norm_dry_run_at_smoke_writes_no_record(no_data: Path) -> None:
    rows = dryrun.dry_run_chapter("weight_norm", weight_norm, "smoke", CPU, steps=1, log=None)
    s = weight_norm.settings("smoke")
    n_configs = len(s["depths"]) * len(s["width_factors"]) * len(s["seeds"])
    assert sum(r.configs for r in rows) == n_configs and not any(r.error for r in rows)
    steps = pipeline.sgd_steps(s["n_train"], s["batch_size"], s["epochs"])
    assert sum(r.steps for r in rows) == n_configs * steps
    results = no_data / "results"
    assert not results.exists() or not any(p.is_file() for p in results.rglob("*"))


def test_planted_shape_error_in_a_chapter_fails_the_dry_run(no_data: Path, monkeypatch) -> None:
    from jacnb.core.models import fully_connected as fc_net

    def wrong_input(config, ds, weight_norm):  # the bug: the net's input is 1 pixel short
        return fc_net(63, ds.n_classes, config["depth"], config["width"], weight_norm=weight_norm)

    monkeypatch.setattr(fc_nets, "build_fc", wrong_input)
    rows = dryrun.dry_run_chapter("weight_norm", weight_norm, "smoke", CPU, steps=1, log=None)
    assert rows and all(r.error for r in rows)


def test_command_line_writes_the_table(no_data: Path, capsys) -> None:
    from jacnb import run

    out = no_data / "cost.json"
    code = run.main(["weight_norm", "--profile", "smoke", "--dry-run", "--steps", "1",
                     "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["profile"] == "smoke" and result["device_type"] == "cpu"
    (chapter,) = result["chapters"]
    assert chapter["chapter"] == "weight_norm" and chapter["failures"] == 0
    table = dryrun.table(result)
    assert table[0]["hours on a GPU"] == "no GPU measurement yet"
    printed = capsys.readouterr().out
    assert "weight_norm" in printed and "dry run of profile smoke" in printed


def test_gpu_column_from_a_gpu_dry_run() -> None:
    shape = {"chapter": "c", "phase": "p", "shape": "s", "steps": 10}
    cpu = {"chapters": [{"chapter": "c", "configs": 1, "shapes": 1, "steps": 10, "hours": 2.0,
                         "seconds_per_step": 720.0, "peak_mb": 1.0, "data": {}, "failures": 0}],
           "shapes": [{**shape, "seconds_per_step": 720.0}]}
    gpu = {"device": "cuda: X", "chapters": [{"chapter": "c", "hours": 0.1}],
           "shapes": [{**shape, "seconds_per_step": 36.0}]}
    assert dryrun.gpu_ratio(cpu, gpu) == {"c": pytest.approx(20.0)}
    assert dryrun.table(cpu, gpu)[0]["hours on a GPU"] == "0.1 h (measured on cuda: X)"


def test_make_book_paper_without_cuda_says_the_cost_and_asks(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from jacnb import book

    result = {"device": "cpu: X", "date": "today", "commit": "abc",
              "chapters": [{"chapter": "resnet", "hours": 3000.0},
                           {"chapter": "theory", "hours": 0.1}]}
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(result))
    chapters = ["05_resnet"]
    asked = []

    def no(prompt: str) -> str:
        asked.append(prompt)
        return "n"

    assert not book.confirm_paper_cost(chapters, cuda=False, ask=no, cost_json=path)
    out = capsys.readouterr().out
    assert "4.2 months" in out and "resnet 3000 h" in out and "theory" not in out
    assert book.confirm_paper_cost(chapters, yes=True, cuda=False, ask=no, cost_json=path)
    assert book.confirm_paper_cost(chapters, cuda=True, ask=no, cost_json=path)
    # without a terminal the answer is no: nothing is executed
    monkeypatch.setattr(book, "torch_cuda", lambda: False)
    monkeypatch.setattr(book, "prepare", lambda *a: pytest.fail("the build started"))
    assert book.main(["--profile", "paper", "--only", "05_resnet"]) == 1


def test_saved_paper_dry_run_is_complete() -> None:
    """The table the cost page shows: every chapter with a hook, no failure, the paper profile."""
    from jacnb.run import dry_run_chapters

    result = json.loads(dryrun.DEFAULT_JSON.read_text())
    assert result["profile"] == "paper"
    assert {c["chapter"] for c in result["chapters"]} == set(dry_run_chapters())
    assert all(c["failures"] == 0 for c in result["chapters"])
    assert all(r["seconds_per_step"] > 0 for r in result["shapes"])
    assert len(dryrun.table(result)) == len(result["chapters"])
