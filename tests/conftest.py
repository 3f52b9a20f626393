"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch


@pytest.fixture
def float64():
    """Brute-force comparisons in double precision; the default dtype is restored afterwards.

    Modules that compare against brute force use it for every test with
    ``pytestmark = pytest.mark.usefixtures("float64")``.
    """
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@dataclass(frozen=True)
class SmokeBook:
    """The book built at the smoke profile: its Sphinx source folder, HTML folder and executed
    notebooks (chapter name -> path)."""

    site: Path
    html: Path
    executed: dict[str, Path]


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> Iterator[SmokeBook]:
    """Every notebook executed at ``smoke`` and the book built (``-W``), once per test session,
    for tests/test_notebooks.py and tests/test_browser.py.

    ``$JACNB_SMOKE_BOOK=DIR`` builds into DIR and, when DIR already holds a built book, reuses it
    (for iterating on the browser test; CI does not set it).
    """
    from jacnb import book

    reuse = os.environ.get("JACNB_SMOKE_BOOK")
    base = Path(reuse) if reuse else tmp_path_factory.mktemp("smoke-book")
    site, html = base / "book", base / "site" / "_build" / "html"
    executed = {name: site / "executed" / f"{name}.ipynb" for name in book.CHAPTERS}
    if reuse and (html / "index.html").is_file() and all(p.is_file() for p in executed.values()):
        yield SmokeBook(site, html, executed)
        return
    mp = pytest.MonkeyPatch()
    mp.setenv("JACNB_RESULTS", str(base / "results"))
    mp.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws figures
    # The kernels import the jacnb under test (this checkout), whatever the venv's install is.
    mp.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(book.REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    try:
        shutil.rmtree(site, ignore_errors=True)
        shutil.copytree(book.BOOK, site, ignore=shutil.ignore_patterns("_build", "executed"))
        for name in book.CHAPTERS:
            book.execute_notebook(name, "smoke", site / "executed")
        book.write_scorecard(site, "smoke")
        book.write_execution_report(site)
        book.vendor_mathjax(site)  # maths typeset offline when npm is there
        html = book.build_html(site, output=base / "site")
    finally:
        mp.undo()
    yield SmokeBook(site, html, executed)
