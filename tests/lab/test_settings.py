"""Chapter settings as a frozen dataclass of defaults plus per-profile overrides
(jacnb.lab.settings.resolve), every chapter's settings beside it, and the profile machinery that
knows no chapter. That the values are those of before (the store keys of their configs) is
tests/chapters/test_config_keys.py."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from jacnb.chapters import chapter_modules
from jacnb.lab import settings as lab_settings
from jacnb.lab.settings import ABSENT, PROFILES, plain, resolve


@dataclasses.dataclass(frozen=True)
class Inner:
    a: int = 1
    gone: object = ABSENT


@dataclasses.dataclass(frozen=True)
class Spec:
    seeds: tuple[int, ...] = (0,)
    inner: Inner = Inner()
    maybe: object = ABSENT


def test_resolve_is_defaults_then_the_profile_overrides_as_plain_data():
    overrides = {"smoke": {"seeds": (0, 1), "maybe": 3}, "paper": {"inner": Inner(a=2, gone=5)}}
    assert resolve(Spec(), overrides, "smoke") == {
        "seeds": [0, 1], "inner": {"a": 1}, "maybe": 3, "profile": "smoke"
    }
    assert resolve(Spec(), overrides, "cpu") == {"seeds": [0], "inner": {"a": 1}, "profile": "cpu"}
    assert resolve(Spec(), overrides, "paper")["inner"] == {"a": 2, "gone": 5}
    with pytest.raises(TypeError):  # a key the dataclass does not have
        resolve(Spec(), {"cpu": {"sedes": (1,)}}, "cpu")
    with pytest.raises(ValueError, match="unknown profiles"):
        resolve(Spec(), {"gpu": {}}, "cpu")


def test_resolved_settings_are_a_fresh_copy():
    got = resolve(Spec(), {}, "cpu")
    got["seeds"].append(1)
    assert resolve(Spec(), {}, "cpu")["seeds"] == [0]
    assert plain({"x": (1, (2, 3)), "y": ABSENT}) == {"x": [1, [2, 3]]}


@pytest.mark.parametrize("name", sorted(chapter_modules()))
def test_every_chapter_defines_its_settings_beside_it(name):
    module = chapter_modules()[name]
    assert dataclasses.is_dataclass(module.Settings)
    assert module.Settings.__dataclass_params__.frozen
    assert set(module.OVERRIDES) <= set(PROFILES)
    for profile in PROFILES:
        got = module.settings(profile)
        assert got["profile"] == profile
        for key, value in module.OVERRIDES.get(profile, {}).items():
            if value is not ABSENT:
                assert key in got
    # an override that restates the default is noise: none
    defaults = module.Settings()
    for profile, changes in module.OVERRIDES.items():
        same = [k for k, v in changes.items() if getattr(defaults, k) == v]
        assert not same, f"{name} {profile}: overrides equal to the default: {same}"


def test_lab_settings_knows_no_chapter():
    tree = ast.parse(Path(lab_settings.__file__).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    chapters = {"theory", "fully_connected", "weight_norm", "convolutional", "resnet", "timing",
                "low_rank"}
    assert not (chapters & strings) and "CHAPTER_SETTINGS" not in names
    assert not hasattr(lab_settings, "get_profile") and not hasattr(lab_settings, "settings")


def test_key_values():
    ch = {m.__name__.rsplit(".", 1)[1]: m for m in chapter_modules().values()}
    assert ch["fully_connected"].settings("paper")["n_train"] == [5000, 20000, 50000]
    assert ch["fully_connected"].settings("paper")["depths"] == [2, 3, 4]
    assert ch["theory"].settings("smoke")["dataset"] == "digits"
    assert ch["resnet"].settings("paper")["table4"]["candidates"] == ["cifar10"]
    assert ch["convolutional"].settings("smoke")["profile"] == "smoke"
    assert ch["fully_connected"].settings("cpu")["momentum"] == 0.9
    assert "projection_cell" not in ch["fully_connected"].settings("paper")
