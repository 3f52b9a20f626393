"""The rules every experiment chapter shares are written once (jacnb.lab.pipeline,
jacnb.lab.records, jacnb.lab.datasets), and every chapter follows them:

* the factor a final run uses is the one chosen at the selected size nearest to its own, in log
  scale (Fig. 3 and Tables II/III);
* a diverged run is recognised by its :class:`~jacnb.lab.records.RunStatus` only (no chapter
  compares status strings, parses a claim id or a stand-in label);
* a stand-in is labelled by the one label function, in every chapter's panels.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest

from jacnb.chapters import convolutional as cx
from jacnb.chapters import fully_connected as fx
from jacnb.chapters import low_rank_jacobian as lx
from jacnb.chapters import resnet as rx
from jacnb.chapters import weight_norm as wx
from jacnb.lab import datasets, gates, pipeline

CHAPTERS = Path(cx.__file__).parent


# --- the factor at a final run's size ------------------------------------------------------------


def _chosen(sizes, **cols):
    return pd.DataFrame(
        [
            {
                **cols,
                "n_train": n,
                "lam": float(i),
                "lam_grid": [0.0, 1.0],
                "chosen_by_tie": False,
                "selection_seeds": [10_000],
                "selection_steps": 1,
            }
            for i, n in enumerate(sizes)
        ]
    )


def _log_nearest(sizes, n):  # brute force: the size whose log is closest, first on a tie
    return min(sizes, key=lambda s: (abs(math.log(s) - math.log(n)), sizes.index(s)))


@pytest.mark.parametrize("n", [100, 250, 316, 317, 500, 999, 1000, 5000])
def test_every_chapter_uses_the_factor_of_the_log_nearest_selected_size(n):
    sizes = [100, 1000]
    want = _log_nearest(sizes, n)
    fc = _chosen(sizes, dataset="d", regularizer="jacobian", depth=2)
    conv = _chosen(sizes, dataset="d", regularizer="jacobian")
    assert int(pipeline.nearest_choice(fc, n, dataset="d", depth=2)["n_train"]) == want
    assert int(fx.chosen_row(fc, "d", "jacobian", 2, n)["n_train"]) == want
    assert cx.lookup(conv, "d", "jacobian", n)["selected_at"] == want
    # 500 is nearer to 100 on a linear scale and to 1000 on a log scale: the rule is log
    if n == 500:
        assert want == 1000


def test_no_choice_is_an_error():
    with pytest.raises(KeyError):
        pipeline.nearest_choice(_chosen([100], dataset="d"), 100, dataset="other")


# --- status, claim ids and stand-ins are typed, never parsed --------------------------------------


def string_rule_breaks(source: str) -> list[str]:
    """Places in ``source`` that decide by a string what a typed record says: a comparison with
    the status strings ``"ok"``/``"diverged"``/``"failed"``, a claim id split at ``"."``, a
    stand-in found in a label (``"stand-in" in ...``)."""
    broken = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                if isinstance(part, ast.Constant) and part.value in ("ok", "diverged", "failed"):
                    broken.append(f"line {node.lineno}: status string {part.value!r} compared")
                if (
                    isinstance(part, ast.Constant)
                    and isinstance(part.value, str)
                    and "stand-in" in part.value
                ):
                    broken.append(f"line {node.lineno}: stand-in parsed from a label")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "split"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "id"
        ):
            broken.append(f"line {node.lineno}: claim id split")
    return broken


@pytest.mark.parametrize("path", sorted(CHAPTERS.glob("*.py")), ids=lambda p: p.name)
def test_no_chapter_decides_by_strings(path):
    assert not string_rule_breaks(path.read_text())


def test_the_string_rule_sees_planted_breaks():
    planted = (
        "ok = frame[frame['status'] == 'ok']\n"
        "table = claim.id.split('.')[0]\n"
        "stand_in = '(stand-in for' in label\n"
    )
    assert len(string_rule_breaks(planted)) == 3
    assert not string_rule_breaks("ok = split_ok(frame)[0]\n")


def test_every_chapter_labels_its_stand_ins_with_the_one_function(monkeypatch):
    marker = "<<{label} standing in for {paper}>>"

    def one(label, paper):
        return marker.format(label=label, paper=paper)

    monkeypatch.setattr(datasets, "with_stand_in", one)
    monkeypatch.setattr(gates, "with_stand_in", one)
    paper = "CIFAR-10"
    fc = datasets.plan_panels({"panels": [{"paper": paper, "candidates": ["digits"]}]})
    spec = {"paper": paper, "candidates": ["digits"], "n_train": [50]}
    conv = [p for p, _ in cx.plan_table({"panels": [spec], "image_size": None})]
    wn = [wx.panel_of({"dataset": "digits"})]
    res = rx.ResnetResult("cpu", rx.settings("cpu"), "digits", "digits", None, None)
    low = lx.LowRankResult(lx.settings("smoke"), pd.DataFrame(), dataset="digits")
    panels = [*fc, *conv, *wn, res.panel("table4"), res.panel("table5"), low.panel]
    for p in panels:
        assert p.stand_in and p.label.startswith("<<") and "standing in for" in p.label, p
    assert fx.FullyConnectedResult  # the verdict label: gates.decide spells it the same way
    assert gates.stand_in_label("digits", paper) == one("digits", paper)
    real = datasets.Panel.running("MNIST", "mnist-10k")
    assert not real.stand_in and "standing in" not in real.label  # 10,000 real MNIST digits


def test_claims_table_shows_seed_counts_not_floats():
    """The paper-beside-ours table of every page: seeds as counts, a dash for a claim not run
    (a column of ``None`` and ints would print ``3.0`` and ``NaN``)."""
    from jacnb.lab import claims
    from jacnb.lab.pipeline import claims_table
    from jacnb.lab.verdicts import Verdict

    first, second = (c.id for c in claims.REGISTRY[:2])
    table = claims_table(
        [
            Verdict(first, "reproduced", "", n_seeds=3, estimate=0.1, low=0.0, high=0.2),
            Verdict(second, "not run", ""),
        ]
    )
    assert list(table["seeds"]) == ["3", "—"]
