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
        built.append(device.type)
        return lambda: None

    configs = [_config("grid", s, ("linear", "batch 8"), counting) for s in range(3)]
    configs.append(_config("grid", 0, ("linear", "batch 16"), counting))
    rows = dryrun.measure("ch", configs, CPU, {"digits": "real"}, steps=2, warmup=1)
    assert [r.configs for r in rows] == [3, 1] and [r.steps for r in rows] == [303, 100]
    # every config built (on the meta device, at no cost), one stepped per shape
    assert built.count("meta") == 4 and built.count("cpu") == 2
    assert all(r.seconds_per_step is not None and r.peak_mb > 0 for r in rows)
    assert rows[0].hours == pytest.approx(303 * rows[0].seconds_per_step / 3600)


def _fc_step_config(phase: str, seed: int, width: int, shape: tuple, lam: float = 0.0,
                    n_in: int = 12) -> DryConfig:
    """A config whose step is the book's (:func:`jacnb.lab.timing.make_step`): a fully connected
    net on a batch of 8 inputs of 12 features, optionally with weight decay."""
    from jacnb.core.models import fully_connected
    from jacnb.core.regularizers import make_regularizer
    from jacnb.lab.timing import make_step

    def build(device: torch.device):
        torch.manual_seed(seed)
        model = fully_connected(n_in, 3, depth=2, width=width).to(device)
        x, y = dryrun.random_batch((12,), 3, 8, device)
        reg = make_regularizer("weight_decay") if lam else None
        return make_step(model, reg, x, y, lam=lam, lr=0.1 * (seed + 1))

    return DryConfig(phase, "digits", 10 * (seed + 1), shape, build, {"seed": seed, "lam": lam})


def test_one_probe_per_cost_signature_shared_by_phases_and_chapters() -> None:
    """Configs that differ only in factor, seed and learning rate share one probe, across phases
    and across chapters (the reusing rows name it); a config the chapter labels with the same
    shape but whose net differs gets its own probe (the signature is read from the built net,
    not from the label)."""
    same = ("fc", "batch 8", "weight_decay")
    grid = [_fc_step_config("selection", s, 16, same, lam=lam) for s in range(3) for lam in
            (0.1, 1.0)]
    grid += [_fc_step_config("final", s, 16, same, lam=0.5) for s in range(2)]
    grid.append(_fc_step_config("final", 0, 32, same, lam=0.5))  # mislabelled: wider net
    probes: dict = {}
    rows = dryrun.measure("a", grid, CPU, {"digits": "real"}, steps=1, probes=probes)
    assert [(r.phase, r.configs) for r in rows] == [("selection", 6), ("final", 2), ("final", 1)]
    first = "a: selection [fc, batch 8, weight_decay]"
    assert rows[0].probe == rows[1].probe == first and rows[2].probe == "a: final [fc, batch 8, " \
        "weight_decay]"
    assert rows[0].probe_seconds > 0 and rows[1].probe_seconds == 0 and rows[2].probe_seconds > 0
    assert rows[1].seconds_per_step == rows[0].seconds_per_step
    assert len(probes) == 2
    # another chapter with the same step (other seed, factor, label) reuses the probe
    other = dryrun.measure("b", [_fc_step_config("grid", 7, 16, ("x",), lam=2.0)], CPU, {},
                           steps=1, probes=probes)
    assert other[0].probe == first and other[0].probe_seconds == 0 and len(probes) == 2
    # ... but not one without the regularizer: a different cost
    plain = dryrun.measure("b", [_fc_step_config("grid", 7, 16, ("x",))], CPU, {}, steps=1,
                           probes=probes)
    assert plain[0].probe == "b: grid [x]" and len(probes) == 3
    summary = {c["chapter"]: c for c in dryrun.chapter_summary(rows + other + plain)}
    assert (summary["a"]["shapes"], summary["a"]["probes_timed"]) == (2, 2)
    assert (summary["b"]["shapes"], summary["b"]["probes_timed"]) == (2, 1)


def test_the_automatic_jacobian_strategy_counts_as_the_one_it_picks() -> None:
    """A regularizer with ``strategy="auto"`` costs what the strategy it picks costs: same
    signature as naming it (class loop for a conv net), another than naming the other."""
    from jacnb.core.models import fully_connected, mnist_convnet
    from jacnb.core.regularizers import make_regularizer
    from jacnb.lab.timing import make_step

    def config(net, strategy: str) -> DryConfig:
        def build(device: torch.device):
            x, y = dryrun.random_batch((1, 28, 28), 10, 4, device)
            reg = make_regularizer("jacobian", method="exact", strategy=strategy)
            return make_step(net().to(device), reg, x, y, lam=0.1)

        return DryConfig("p", "digits", 1, ("x",), build)

    def fc():
        return fully_connected(784, 10, depth=2)

    sig = {(n, s): dryrun.check_config(config(net, s)) for n, net in
           (("conv", mnist_convnet), ("fc", fc)) for s in ("auto", "class_loop", "vmap")}
    assert sig[("conv", "auto")] == sig[("conv", "class_loop")] != sig[("conv", "vmap")]
    assert sig[("fc", "auto")] == sig[("fc", "vmap")] != sig[("fc", "class_loop")]


def test_a_broken_config_sharing_a_probe_still_fails() -> None:
    """Only one config per shape is stepped, but every config is built and its net run on the
    meta device: a config among them whose net does not fit its batch fails the dry run."""
    shape = ("fc", "batch 8", "none")
    grid = [_fc_step_config("grid", s, 16, shape) for s in range(3)]
    grid.append(_fc_step_config("grid", 3, 16, shape, n_in=11))  # the bug: one input short
    rows = dryrun.measure("ch", grid, CPU, {}, steps=1)
    ok, bad = rows
    assert ok.configs == 3 and not ok.error and ok.seconds_per_step > 0
    assert bad.configs == 1 and bad.error.startswith("config check: RuntimeError")
    assert bad.seconds_per_step is None and bad.hours is None
    assert dryrun.chapter_summary(rows)[0]["failures"] == 1


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


def test_planted_shape_error_in_one_seed_fails_the_chapter(no_data: Path, monkeypatch) -> None:
    """The bug in one config of a shape whose other configs are fine (only they would have been
    stepped): the chapter's dry run and the command fail."""
    from jacnb import run
    from jacnb.core.models import fully_connected as fc_net

    right = fc_nets.build_fc

    def wrong_for_seed_1(config, ds, weight_norm):
        if config["seed"] != 1:
            return right(config, ds, weight_norm=weight_norm)
        return fc_net(63, ds.n_classes, config["depth"], config["width"], weight_norm=weight_norm)

    monkeypatch.setattr(fc_nets, "build_fc", wrong_for_seed_1)
    smoke = weight_norm.settings
    monkeypatch.setattr(weight_norm, "settings", lambda p: {**smoke(p), "seeds": (0, 1)})
    rows = dryrun.dry_run_chapter("weight_norm", weight_norm, "smoke", CPU, steps=1, log=None)
    bad = [r for r in rows if r.error]
    assert bad and all("config check" in r.error for r in bad)
    assert any(not r.error and r.seconds_per_step for r in rows)
    code = run.main(["weight_norm", "--profile", "smoke", "--dry-run", "--steps", "1",
                     "--json", str(no_data / "cost.json")])
    assert code == 1


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
