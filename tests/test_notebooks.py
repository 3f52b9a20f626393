"""Every notebook: committed without outputs, parameterized by `profile`, executed at `smoke`;
the book builds from the executed notebooks with warnings as errors."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from jacnb import book

NOTEBOOKS = sorted(book.NOTEBOOKS.glob("*.ipynb"))


def test_every_chapter_has_a_notebook_and_vice_versa():
    assert {p.stem for p in NOTEBOOKS} == set(book.CHAPTERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_and_parameterized(path: Path):
    raw = json.loads(path.read_text())
    missing = [i for i, c in enumerate(raw["cells"]) if "id" not in c]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat 4.5 requires one)"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: strip outputs before committing"
            assert cell.execution_count is None, f"{path.name}: clear execution counts"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "profile =" in tagged[0].source


def test_unknown_profile_fails_at_once(capsys):
    with pytest.raises(SystemExit):
        book.main(["--profile", "turbo", "--skip-execute"])
    err = capsys.readouterr().err
    assert "turbo" in err and "smoke, cpu, paper" in err


@pytest.mark.slow
def test_notebooks_execute_at_smoke_and_book_builds_with_warnings_as_errors(smoke_book):
    """The smoke book is built once per session by the ``smoke_book`` fixture (conftest.py)."""
    for out in smoke_book.executed.values():
        executed = nbformat.read(out, as_version=4)
        errors = [
            o
            for c in executed.cells
            for o in c.get("outputs", [])
            if o.get("output_type") == "error"
        ]
        assert not errors
    index = (smoke_book.html / "executed" / "01_theory.html").read_text()
    assert "Theorem 4" in index and "profile=smoke" in index
    assert index.count("<img") >= 4, "figures missing from the rendered theory chapter"


def test_every_chapter_names_its_datasets_at_every_profile():
    for chapter in book.CHAPTERS:
        for profile in ("smoke", "cpu", "paper"):
            assert book.datasets_needed(chapter, profile), (chapter, profile)


def test_prepare_reports_an_undownloadable_dataset_and_goes_on(monkeypatch, capsys):
    """Offline, MNIST/CIFAR-10 cannot be fetched: prepare says so and the build goes on."""
    import jacnb.core.data
    import jacnb.core.prepare

    calls = []

    def missing(name, download=False, **_):
        calls.append((name, download))
        raise jacnb.core.data.DatasetMissingError(f"{name}: absent")

    monkeypatch.setattr(jacnb.core.data, "load_dataset", missing)
    monkeypatch.setattr(jacnb.core.prepare, "prepare", lambda names: None)
    book.prepare("paper", ["02_fully_connected"])
    assert ("cifar10", True) in calls and ("mnist", True) in calls
    assert "cifar10: absent and not downloadable here" in capsys.readouterr().out


def test_build_html_writes_into_the_book_folder_by_default(monkeypatch, tmp_path):
    """The README promises book/_build/html; Jupyter Book 1.x with --config elsewhere would
    otherwise write to <cwd>/_build."""
    seen = {}
    monkeypatch.setattr(book.subprocess, "run", lambda cmd, check: seen.setdefault("cmd", cmd))
    html = book.build_html(book_dir=tmp_path)
    cmd = seen["cmd"]
    assert cmd[cmd.index("--path-output") + 1] == str(tmp_path)
    assert html == tmp_path / "_build" / "html"


@pytest.mark.slow
def test_scorecard_page_opens_the_book_with_a_row_per_registered_claim(smoke_book):
    """Issue 13: the scorecard comes first after the introduction and is fed by the registry and
    the chapters' stored verdicts, never typed."""
    from jacnb.lab.claims import CLAIMS

    toc = (book.BOOK / "_toc.yml").read_text().split("chapters:")[1].split()
    assert toc[:2] == ["-", "file:"] and toc[2] == "executed/scorecard"
    page = (smoke_book.html / "executed" / "scorecard.html").read_text()
    for claim_id in CLAIMS:
        assert claim_id in page, claim_id
