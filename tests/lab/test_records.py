"""Run status as a typed record (jacnb.lab.records): stored strings map onto the enum (records
written before it stay valid), a divergence is a result and anything else is raised, and the one
ok-filter counts what it leaves out."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from jacnb.core.train import DivergedError
from jacnb.lab.records import (
    RunStatus,
    diverged_record,
    is_divergence,
    run_or_diverged,
    split_ok,
    statuses,
)
from jacnb.lab.store import ResultStore


@pytest.mark.parametrize(
    ("stored", "status"),
    [
        ("ok", RunStatus.OK),
        ("diverged", RunStatus.DIVERGED),
        ("failed", RunStatus.FAILED),
        (None, RunStatus.OK),
        ("", RunStatus.OK),
        (math.nan, RunStatus.OK),
        (RunStatus.DIVERGED, RunStatus.DIVERGED),
    ],
)
def test_stored_values_map_onto_the_enum(stored, status):
    assert RunStatus.of(stored) is status


def test_an_unknown_status_is_refused_and_the_enum_is_its_string():
    with pytest.raises(ValueError):
        RunStatus.of("exploded")
    assert RunStatus.OK == "ok" and str(RunStatus.DIVERGED) == "diverged"


def test_a_divergence_is_a_result_anything_else_is_raised():
    def diverge():
        raise DivergedError("loss became nan", epoch=3)

    err = run_or_diverged(diverge)
    assert isinstance(err, DivergedError) and is_divergence(err)
    rec = diverged_record(err, test_acc=math.nan)
    assert rec["status"] is RunStatus.DIVERGED and rec["epoch"] == 3 and "nan" in rec["reason"]

    def fail():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        run_or_diverged(fail)
    assert not is_divergence(RuntimeError("x"))


def test_split_ok_leaves_out_and_counts_every_status_but_ok():
    frame = pd.DataFrame({"status": ["ok", "diverged", None, "failed"], "x": [1, 2, 3, 4]})
    ok, left = split_ok(frame)
    assert list(ok["x"]) == [1, 3] and left == 2
    assert split_ok(pd.DataFrame({"x": [1]}))[1] == 0  # no status column: every row finished
    assert list(statuses(frame)) == [
        RunStatus.OK, RunStatus.DIVERGED, RunStatus.OK, RunStatus.FAILED
    ]


def test_the_store_keeps_the_string_and_reads_it_back(tmp_path):
    store = ResultStore(tmp_path)
    err = DivergedError("loss became inf", step=7)
    store.put({"experiment": "t", "seed": 0}, diverged_record(err, val_acc=0.0))
    store.put({"experiment": "t", "seed": 1}, {"val_acc": 0.5})
    raw = (store.path({"experiment": "t", "seed": 0})).read_text()
    assert '"status": "diverged"' in raw or '"status":"diverged"' in raw
    ok, left = split_ok(store.frame("t"))
    assert left == 1 and list(ok["seed"]) == [1]
