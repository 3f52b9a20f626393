"""The scorecard: verdict files written atomically and read back, one row per registered claim,
counts with stand-ins apart, the paper's numbers read from the paper module, the page."""

from __future__ import annotations

import json
import os
import re

import pytest

from jacnb.lab import scorecard
from jacnb.lab.claims import CLAIMS, REGISTRY, check_ids, counted_ids
from jacnb.lab.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    VERDICTS,
    Verdict,
)

FIG3 = "fig3.mnist.jr_beats_wd"


def verdicts_fc() -> list[Verdict]:
    return [
        Verdict(
            FIG3,
            REPRODUCED,
            "cells ...",
            dataset="MNIST",
            profile="cpu",
            estimate=0.011,
            low=0.0085,
            high=0.0135,
            n_seeds=3,
        ),
        Verdict(
            "fig3.cifar10.jr_beats_wd",
            NOT_REPRODUCED,
            "cells ...",
            profile="cpu",
            reason="stand-in: counted apart",
            dataset="Fashion-MNIST (stand-in for CIFAR-10)",
            estimate=-0.02,
            low=-0.03,
            high=-0.01,
            n_seeds=3,
        ),
        Verdict(
            "fig3.mnist.jr_less_data_on_par",
            INCONCLUSIVE,
            "cells ...",
            profile="cpu",
            dataset="MNIST",
            estimate=0.004,
            low=0.0015,
            high=0.0065,
            n_seeds=3,
            seeds_needed=7,
            reason="interval straddles the claim",
        ),
    ]


def test_save_and_load_round_trip(tmp_path):
    path = scorecard.save_verdicts(verdicts_fc(), tmp_path, "02_fully_connected")
    assert path == tmp_path / "verdicts" / "02_fully_connected.json"
    record = json.loads(path.read_text())
    assert record["chapter"] == "02_fully_connected" and len(record["verdicts"]) == 3
    assert scorecard.load_verdicts(tmp_path) == verdicts_fc()
    # saving again replaces the chapter's file
    scorecard.save_verdicts(verdicts_fc()[:1], tmp_path, "02_fully_connected")
    assert scorecard.load_verdicts(tmp_path) == verdicts_fc()[:1]
    assert scorecard.load_verdicts(tmp_path / "nowhere") == []


def test_nan_is_stored_as_null(tmp_path):
    v = Verdict(FIG3, INCONCLUSIVE, "x", estimate=float("nan"))
    scorecard.save_verdicts([v], tmp_path, "02_fully_connected")
    assert scorecard.load_verdicts(tmp_path)[0].estimate is None


def test_temporary_files_are_never_read(tmp_path):
    scorecard.save_verdicts(verdicts_fc(), tmp_path, "02_fully_connected")
    folder = tmp_path / "verdicts"
    # a half-written temporary of another chapter (as save_verdicts names them), and a stray
    # dot-file that even ends in .json
    (folder / ".03_weight_norm-abc123.part").write_text('{"verdicts": [{"claim": "x"')
    (folder / ".03_weight_norm-def456.json").write_text("{not json")
    assert scorecard.load_verdicts(tmp_path) == verdicts_fc()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    scorecard.save_verdicts(verdicts_fc(), tmp_path, "02_fully_connected")
    before = (tmp_path / "verdicts" / "02_fully_connected.json").read_text()

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)  # the disk fails during the write
    with pytest.raises(OSError):
        scorecard.save_verdicts(verdicts_fc()[:1], tmp_path, "02_fully_connected")
    assert (tmp_path / "verdicts" / "02_fully_connected.json").read_text() == before
    assert [p.name for p in (tmp_path / "verdicts").iterdir()] == ["02_fully_connected.json"]


def test_save_refuses_bad_records(tmp_path):
    with pytest.raises(KeyError, match="unregistered"):
        scorecard.save_verdicts([Verdict("made.up", REPRODUCED, "")], tmp_path, "x")
    with pytest.raises(ValueError, match="not one of"):
        scorecard.save_verdicts([Verdict(FIG3, "sort of", "")], tmp_path, "x")
    with pytest.raises(ValueError, match="twice"):
        scorecard.save_verdicts(verdicts_fc()[:1] * 2, tmp_path, "x")
    with pytest.raises(ValueError, match="chapter name"):
        scorecard.save_verdicts(verdicts_fc(), tmp_path, "../evil")


def test_two_chapters_judging_one_claim_is_an_error(tmp_path):
    scorecard.save_verdicts(verdicts_fc()[:1], tmp_path, "02_fully_connected")
    scorecard.save_verdicts(verdicts_fc()[:1], tmp_path, "04_convolutional")
    with pytest.raises(ValueError, match="judged in both"):
        scorecard.load_verdicts(tmp_path)


def test_one_row_per_registered_claim_and_not_run_where_missing():
    frame = scorecard.scorecard_frame(verdicts_fc())
    assert list(frame.columns) == list(scorecard.COLUMNS)
    assert list(frame["claim"]) == [c.id for c in REGISTRY]
    by = frame.set_index("claim")
    assert by.loc[FIG3, "verdict"] == REPRODUCED
    assert by.loc[FIG3, "ours"] == "+1.1 pts"  # 0.011 shown in points
    assert by.loc[FIG3, "interval"] == "[+0.85 pts, +1.35 pts]"
    assert by.loc["fig3.mnist.jr_less_data_on_par", "seeds needed"] == 7
    assert by.loc["table3.jr_helps_batch_norm", "verdict"] == NOT_RUN
    assert by.loc["table3.jr_helps_batch_norm", "reason"] == "no verdict on file"
    assert bool(by.loc["fig3.cifar10.jr_beats_wd", "stand-in"])
    link = by.loc[FIG3, "link"]
    assert link == "02_fully_connected.html#" + CLAIMS[FIG3].anchor
    assert by.loc["book.projection_on_par_with_exact", "paper"].endswith("(this book's claim)")


def test_counts_put_stand_ins_apart():
    frame = scorecard.scorecard_frame(verdicts_fc())
    c = scorecard.counts(frame)
    assert list(c.columns) == list(VERDICTS)
    papers, book, stand = c.index
    # the stand-in's "not reproduced" is not counted as a verdict on CIFAR-10
    assert c.loc[stand, NOT_REPRODUCED] == 1 and c.loc[papers, NOT_REPRODUCED] == 0
    assert c.loc[papers, REPRODUCED] == 1 and c.loc[papers, INCONCLUSIVE] == 1
    n_own = sum(not cl.paper_claim for cl in REGISTRY)
    assert c.loc[book, NOT_RUN] == n_own
    assert c.to_numpy().sum() == len(counted_ids())


def test_checks_are_never_counted():
    """A check (true by construction) is on the frame, marked, and in no count."""
    check = check_ids()[0]
    v = Verdict(check, REPRODUCED, "ev", dataset=CLAIMS[check].dataset, profile="cpu")
    frame = scorecard.scorecard_frame([v])
    assert frame.set_index("claim").loc[check, "kind"] == "check"
    c = scorecard.counts(frame)
    assert c[REPRODUCED].sum() == 0
    assert c.to_numpy().sum() == len(counted_ids())


def test_profile_filter_ignores_other_profiles():
    frame = scorecard.scorecard_frame(verdicts_fc(), profile="paper")
    row = frame.set_index("claim").loc[FIG3]
    assert row["verdict"] == NOT_RUN and "'cpu'" in row["reason"]


def test_scorecard_refuses_unknown_or_double_verdicts():
    with pytest.raises(ValueError, match="unregistered"):
        scorecard.scorecard_frame([Verdict("made.up", REPRODUCED, "")])
    with pytest.raises(ValueError, match="two verdicts"):
        scorecard.scorecard_frame(verdicts_fc()[:1] * 2)


def test_paper_numbers_come_from_the_paper_module():
    # Table II, MNIST, 1000 samples: 96.03 - 94.00 = +2.03 points (printed in the paper)
    assert "1000: +2.03" in scorecard.paper_number(CLAIMS["table2.mnist.jr_beats_wd"])
    # Table V without augmentation: GE 61.53 -> 23.83, i.e. -37.70 points
    assert scorecard.paper_number(CLAIMS["table5.jr_smaller_ge_without_aug"]).startswith(
        "61.53 → 23.83 (-37.7"
    )
    # Table VI: exact (49) on the MNIST net, increase factor 10.00
    assert scorecard.paper_number(CLAIMS["table6.exact_adds_cost"]).startswith("10 x")
    # figures print no number: the claim says so
    assert "plot" in scorecard.paper_number(CLAIMS[FIG3])
    for c in REGISTRY:
        assert scorecard.paper_number(c)


def test_page_is_generated_from_the_store(tmp_path):
    scorecard.save_verdicts(verdicts_fc(), tmp_path / "results", "02_fully_connected")
    out = scorecard.write_page(tmp_path / "results", tmp_path / "site" / "scorecard.md", "cpu")
    text = out.read_text()
    assert text.startswith("# Scorecard")
    for c in REGISTRY:
        assert f"<code>{c.id}</code>" in text
        assert f'href="{c.page}.html#{c.anchor}"' in text
    # the HTML is one block: no blank line inside it (MyST would end the raw block there)
    html_part = text[text.index("<div class=\"jacnb-scorecard\"") :]
    assert "\n\n" not in html_part.strip()
    assert re.search(r"<th>claims of the papers</th><td>1</td><td>0</td><td>1</td>", text)
    assert "<b>stand-in</b>" in text and "(7 needed)" in text
    # one collapsible line per claim, the forest plot of the decided ones at the top
    assert text.count('<details class="jacnb-claim">') == len(REGISTRY)
    assert text.index("data:image/png;base64,") < text.index('<details class="jacnb-claim">')
    assert not list((tmp_path / "site").glob(".*"))  # no temporary left behind


def test_card_displays_in_a_notebook(tmp_path):
    card = scorecard.build(tmp_path)
    assert card._repr_html_().startswith("<div class=\"jacnb-scorecard\"")
    assert (card.counts[NOT_RUN].sum()) == len(counted_ids())


def test_cells_survive_the_store_round_trip(tmp_path):
    from jacnb.lab.verdicts import CellStat

    cells = (
        CellStat("depth=2", 0.01, 0.005, 0.015, 0.0, 3, "claimed"),
        CellStat("depth=3", 0.02, float("nan"), float("nan"), 0.0, 1, "straddles"),
    )
    v = Verdict(FIG3, INCONCLUSIVE, "x", cells=cells, deciding_cell="depth=3")
    scorecard.save_verdicts([v], tmp_path, "02_fully_connected")
    (back,) = scorecard.load_verdicts(tmp_path)
    assert back.cells[0] == cells[0] and back.deciding_cell == "depth=3"
    assert isinstance(back.cells[1], CellStat) and back.cells[1].low is None


def test_forest_rows_are_the_decided_claims_at_their_deciding_cell_s_threshold():
    from jacnb.lab.verdicts import CellStat

    vs = verdicts_fc()
    cells = (
        CellStat("a", 0.02, 0.01, 0.03, 0.0, 3, "claimed"),
        CellStat("b", 0.004, 0.0015, 0.0065, 0.002, 3, "straddles"),
    )
    vs[2] = Verdict(**{**vs[2].__dict__, "cells": cells, "deciding_cell": "b"})
    card = scorecard.Scorecard(
        scorecard.scorecard_frame(vs), scorecard.counts(scorecard.scorecard_frame(vs)), "x", None
    )
    rows = scorecard.forest_rows(card)
    assert [r.label for r in rows] == [v.claim[:39] + "…" if len(v.claim) > 40 else v.claim
                                       for v in vs]
    assert [r.threshold for r in rows] == [0.0, 0.0, 0.002]
    assert rows[1].colour == scorecard.VERDICT_COLOURS[NOT_REPRODUCED]


def test_checks_are_listed_apart_after_the_claims():
    from jacnb.lab.claims import Kind

    checks = [c.id for c in REGISTRY if c.kind == Kind.CHECK]
    assert checks
    card = scorecard.build("/nonexistent")
    text = scorecard.render_html(card)
    head = text.index("<b>Checks</b>")
    for cid in checks:
        assert text.index(f"<code>{cid}</code>") > head
    for c in REGISTRY:
        if c.kind != Kind.CHECK:
            assert text.index(f"<code>{c.id}</code>") < head
