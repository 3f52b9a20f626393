"""Every chapter follows one interface (issue 10) and every notebook stays thin.

Each module of :mod:`jacnb.chapters` that a notebook calls has ``NAME`` (its notebook),
``settings(profile)``, ``configs(settings)`` and ``run(profile, *, executor, store)``; every
notebook's code cells define no function or class (the code lives in its chapter, where tests
reach it) and the chapters with registered claims publish their verdicts for the scorecard.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest

import jacnb.chapters
from jacnb import book
from jacnb.lab.claims import REGISTRY

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: notebook -> its chapter module, read from the modules' NAME (every public module of
#: jacnb.chapters is a chapter)
MODULES = {
    importlib.import_module(f"jacnb.chapters.{m.name}").NAME: m.name
    for m in pkgutil.iter_modules(jacnb.chapters.__path__)
    if not m.name.startswith("_")
}


def code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_every_notebook_has_its_chapter_module() -> None:
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(MODULES)
    assert sorted(MODULES) == sorted(book.CHAPTERS)  # and the book executes each of them


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_define_no_functions_or_classes(notebook: Path) -> None:
    for src in code_cells(notebook):
        lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        tree = ast.parse("\n".join(lines))
        defs = [
            n.name
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        assert not defs, f"{notebook.name} defines {defs}: move them into its chapter module"


@pytest.mark.parametrize("page", sorted(MODULES))
def test_chapter_interface(page: str) -> None:
    mod = importlib.import_module(f"jacnb.chapters.{MODULES[page]}")
    for name in ("settings", "configs", "run"):
        assert callable(getattr(mod, name, None)), f"{mod.__name__}.{name} missing"
    params = inspect.signature(mod.run).parameters
    assert "profile" in params
    for kw in ("executor", "store"):
        assert kw in params and params[kw].kind is inspect.Parameter.KEYWORD_ONLY, (
            f"{mod.__name__}.run needs keyword-only {kw!r} (python -m jacnb.run passes it)"
        )


@pytest.mark.parametrize("page", sorted({c.page for c in REGISTRY}))
def test_pages_with_claims_publish_their_verdicts(page: str) -> None:
    src = "\n".join(code_cells(REPO / "notebooks" / f"{page}.ipynb"))
    assert "publish(" in src and ".verdicts()" in src, (
        f"{page} must call jacnb.lab.chapter.publish(result.verdicts(), NAME)"
    )


@pytest.mark.parametrize("page", sorted(MODULES))
def test_notebook_and_module_name_each_other(page: str) -> None:
    module = MODULES[page]
    src = "\n".join(code_cells(REPO / "notebooks" / f"{page}.ipynb"))
    assert f"from jacnb.chapters import {module} as chapter" in src
    doc = importlib.import_module(f"jacnb.chapters.{module}").__doc__ or ""
    assert page in doc, f"jacnb.chapters.{module}'s docstring must name notebooks/{page}.ipynb"
