"""pyproject.toml gives version ranges (the package installs beside a user's torch);
constraints.txt pins the exact versions the book is tested with, and `make` installs with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[_norm(name)] = version
    return pins


def test_dependencies_are_ranges_not_pins():
    project = _project()
    reqs = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    pinned = [r for r in reqs if "==" in r]
    assert not pinned, f"exact pins belong in constraints.txt, not pyproject.toml: {pinned}"
    torch = next(r for r in project["dependencies"] if _norm(_NAME.match(r)[1]) == "torch")
    assert ">=" in torch
    # torchvision pins one torch per release: as a plain dependency pip would replace the
    # user's torch to install the newest torchvision (seen in a fresh venv with torch 2.13)
    assert not any(_norm(_NAME.match(r)[1]) == "torchvision" for r in project["dependencies"])


def test_constraints_pin_torch_and_only_known_packages():
    project = _project()
    reqs = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    names = {_norm(_NAME.match(r)[1]) for r in reqs}
    pins = _constraints()
    assert {"torch", "torchvision"} <= set(pins)
    # myst-nb and Sphinx come with jupyter-book; pinned because the pages depend on them
    unknown = set(pins) - names - {"myst-nb", "sphinx"}
    assert not unknown, f"constraints.txt pins packages pyproject.toml does not name: {unknown}"


def test_make_installs_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt", makefile)
    assert "torch==" not in makefile
