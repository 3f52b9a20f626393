"""The protocol digest and its amendment log: a change to claims, gates, selection or the
statistics without a new log entry fails here; the digest ignores docstrings and comments but
not code; the log is complete and ordered."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from jacnb.lab import claims, protocol

REPO = Path(__file__).resolve().parents[2]


def test_the_current_digest_has_a_log_entry():
    """If this fails you changed the registry or the rule code: add an Amendment to
    jacnb/lab/protocol.py (date, what, why, whether results existed) with the new digest."""
    last = protocol.AMENDMENTS[-1]
    reg, code = last.digest.split(".")
    assert protocol.registry_part() == reg, (
        f"registry changed without a protocol entry: digest now {protocol.protocol_digest()}"
    )
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != last.python:
        pytest.skip(f"code part recorded on Python {last.python}, running {here}")
    assert protocol.code_part() == code, (
        f"rule code changed without a protocol entry: digest now {protocol.protocol_digest()}"
    )


def test_a_changed_threshold_changes_the_registry_part(monkeypatch):
    before = protocol.registry_part()
    c = claims.REGISTRY[0]
    altered = dataclasses.replace(c, rule=dataclasses.replace(c.rule, threshold=0.001))
    monkeypatch.setattr(claims, "REGISTRY", (altered, *claims.REGISTRY[1:]))
    assert protocol.registry_part() != before


def _module(tmp_path: Path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_code_part_ignores_docs_and_comments_but_not_code(tmp_path):
    base = '"""Doc."""\n\ndef rule(x):\n    """Doc."""\n    return x > 0.5  # comment\n'
    docs = (
        '"""Other doc."""\n\n\ndef rule(x):\n    """Other."""\n    # a comment\n'
        "    return x > 0.5\n"
    )
    code = '"""Doc."""\n\ndef rule(x):\n    """Doc."""\n    return x >= 0.5  # comment\n'
    trees = [protocol._code_tree(_module(tmp_path, f"m{i}", src))
             for i, src in enumerate((base, docs, code))]
    assert trees[0] == trees[1]
    assert trees[0] != trees[2]


def test_the_log_is_ordered_complete_and_names_the_selection_change():
    dates = [a.date for a in protocol.AMENDMENTS]
    assert dates == sorted(dates)
    for a in protocol.AMENDMENTS:
        assert a.what and a.why and a.results_existed, a
    commits = {a.commit for a in protocol.AMENDMENTS}
    assert "f866ae8" in commits  # the selection rule written after cpu results existed
    assert protocol.AMENDMENTS[-1].digest and protocol.AMENDMENTS[-1].python
    frame = protocol.amendments_frame()
    assert len(frame) == len(protocol.AMENDMENTS)
    page = protocol.page_markdown()
    assert page.count("- **20") == len(protocol.AMENDMENTS)


def test_the_book_has_the_protocol_page():
    toc = (REPO / "book" / "_toc.yml").read_text()
    assert "file: protocol" in toc
    page = (REPO / "book" / "protocol.md").read_text()
    assert "protocol_digest" in page and "page_markdown" in page
