"""Stored records stay valid: every chapter's settings and run configs hash to the same store keys
as before the chapters' settings moved beside them (``config_keys.json``, computed on the code of
that time: the settings of every chapter at ``smoke``/``cpu``/``paper``, and the run configs that
can be built with only scikit-learn's ``digits`` on disk -- the selection grids, and the final
grids of Fig. 3 and Table II at the first factor of each grid).

A changed value, a renamed key or a changed config builder changes a key and fails here: the
records stored under the old keys would silently stop being found (and be retrained)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from jacnb.chapters import convolutional as cv
from jacnb.chapters import fully_connected as fc
from jacnb.chapters import low_rank_jacobian as lr
from jacnb.chapters import resnet, theory, timing
from jacnb.chapters import weight_norm as wn
from jacnb.lab import datasets
from jacnb.lab.store import config_key

FIXTURE = json.loads((Path(__file__).parent / "config_keys.json").read_text())
MODULES = {
    "theory": theory,
    "fully_connected": fc,
    "weight_norm": wn,
    "convolutional": cv,
    "resnet": resnet,
    "timing": timing,
    "low_rank": lr,
}
PROFILES = ("smoke", "cpu", "paper")


@pytest.fixture
def digits_only(monkeypatch, tmp_path):
    """A data root with nothing in it: only ``digits`` (from scikit-learn) loads."""
    monkeypatch.setenv("JACNB_DATA", str(tmp_path))
    datasets.clear_cache()
    yield
    datasets.clear_cache()


def keys(configs):
    return sorted(config_key(c) for c in configs)


def as_first_spelled(name: str, settings: dict) -> dict:
    """``settings`` as the fixture's code spelled them: panels then named their dataset and its
    stand-ins ``dataset`` + ``fallback`` (Fig. 3) or ``fallbacks`` (Tables II/III), where they now
    list ``candidates``; the theory chapter's Fig. 2 and cube-net blocks were constants then.
    Neither spelling enters a run config (those are checked as they are, below)."""
    if name == "theory":
        del settings["toy"], settings["cube"]
    if name == "fully_connected":
        settings["panels"] = [
            {"paper": p["paper"], "dataset": p["candidates"][0],
             "fallback": (p["candidates"][1:] or [None])[0]}
            for p in settings["panels"]
        ]
    if name == "convolutional":
        for table in ("table2", "table3"):
            settings[table]["panels"] = [
                {"paper": p["paper"], "dataset": p["candidates"][0],
                 "fallbacks": p["candidates"][1:], "n_train": p["n_train"]}
                for p in settings[table]["panels"]
            ]
    return settings


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("profile", PROFILES)
def test_settings_hash_as_before(name, profile):
    got = as_first_spelled(name, MODULES[name].settings(profile))
    assert config_key(got) == FIXTURE["settings"][f"{name}/{profile}"]


@pytest.mark.parametrize("name", ["theory", "low_rank", "resnet", "weight_norm",
                                  "fully_connected", "convolutional"])
def test_run_configs_hash_as_before(name, digits_only):
    m = MODULES[name]
    for profile in PROFILES:
        want = FIXTURE["configs"].get(f"{name}/{profile}")
        if want is None:  # its dataset is not digits: configs() needs data not on disk here
            continue
        assert keys(m.configs(m.settings(profile))) == want, profile


def test_final_configs_hash_as_before(digits_only):
    s = fc.settings("smoke")
    chosen = pd.DataFrame(
        [
            {"dataset": "digits", "regularizer": r, "depth": d, "n_train": n,
             "lam": s["lambdas"][r][0]}
            for r in fc.REGULARIZERS
            for d in s["depths"]
            for n in s["select_n_train"]
        ]
    )
    got = FIXTURE["configs"]
    assert keys(fc.fig3_configs(s, "digits", chosen)) == got["fully_connected/smoke/final"]
    assert keys(fc.projection_configs(s, "digits", chosen)) == got[
        "fully_connected/smoke/projection"
    ]
    ts = cv.table_settings(cv.settings("smoke"), "table2")
    chosen = pd.DataFrame(
        [
            {"dataset": "digits", "regularizer": r, "n_train": n, "lam": ts["lambdas"][r][0],
             "lam_grid": ts["lambdas"][r], "chosen_by_tie": False, "selection_seeds": [1000],
             "selection_steps": 1}
            for r in cv.TABLES["table2"].selected
            for n in ts["select_n_train"]
        ]
    )
    final = cv.final_configs(ts, "table2", "digits", [200, 400], chosen)
    assert keys(final) == got["convolutional/smoke/table2_final"]


def test_the_fixture_can_fail():
    s = fc.settings("smoke")
    s["epochs"] += 1
    assert config_key(s) != FIXTURE["settings"]["fully_connected/smoke"]
