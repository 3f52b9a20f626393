"""Chapter settings as a base plus per-profile overrides (jacnb.lab.settings): the resolution
rule, and a few values the book's pages state (the full equality with the former per-profile
literal was checked once when the layout changed, commit message of that change)."""

from __future__ import annotations

import pytest

from jacnb.lab.settings import CHAPTER_SETTINGS, PROFILES, get_profile, resolve, settings


@pytest.mark.parametrize("chapter", sorted(CHAPTER_SETTINGS))
def test_a_profile_is_base_then_its_overrides(chapter):
    spec = CHAPTER_SETTINGS[chapter]
    assert set(spec) == {"base", *PROFILES}
    for profile in PROFILES:
        got = settings(chapter, profile)
        assert got == {**spec["base"], **spec[profile], "profile": profile}
        assert got == get_profile(chapter, profile)
    # a base key that every profile overrides would be dead (a default nobody reads): none
    dead = set(spec["base"]).intersection(*(set(spec[p]) for p in PROFILES))
    assert not dead, f"{chapter}: base keys every profile overrides: {sorted(dead)}"


def test_resolve_copies():
    spec = {"base": {"seeds": [0]}, "smoke": {}}
    resolve(spec, "smoke")["seeds"].append(1)
    assert spec["base"]["seeds"] == [0]


def test_key_values():
    assert settings("fully_connected", "paper")["n_train"] == [5000, 20000, 50000]
    assert settings("fully_connected", "paper")["depths"] == [2, 3, 4]
    assert settings("theory", "smoke")["dataset"] == "digits"
    assert settings("resnet", "paper")["table4"]["candidates"] == ["cifar10"]
    assert settings("convolutional", "smoke")["profile"] == "smoke"
    assert settings("fully_connected", "cpu")["momentum"] == 0.9
