"""jacnb.lab.chapter: the claims panel every chapter page shows (the scorecard's link targets)."""

import json

import pytest

from jacnb.lab.chapter import claims_panel, publish
from jacnb.lab.claims import REGISTRY, claims_of
from jacnb.lab.gates import not_run


def test_every_registered_claim_of_a_page_gets_a_row_under_its_anchor() -> None:
    pages = sorted({c.page for c in REGISTRY})
    for page in pages:
        html = claims_panel(page, [])._repr_html_()
        for c in claims_of(page):
            assert f'id="{c.anchor}"' in html
    # a claim of another page is refused
    other = next(c for c in REGISTRY if c.page != pages[0])
    with pytest.raises(ValueError, match="not registered on page"):
        claims_panel(pages[0], [not_run(other.id, "x")])


def test_publish_stores_the_verdicts_for_the_scorecard(tmp_path) -> None:
    c = claims_of("05_resnet")[0]
    panel = publish([not_run(c.id, "dataset absent")], "05_resnet", tmp_path)
    record = json.loads((tmp_path / "verdicts" / "05_resnet.json").read_text())
    assert [r["claim"] for r in record["verdicts"]] == [c.id]
    row = panel.frame.set_index("claim").loc[c.id]
    assert row["verdict"] == "not run" and row["reason"] == "dataset absent"
