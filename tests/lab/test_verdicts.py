"""The one Verdict record (jacnb.lab.verdicts): its fields, its table, and the mapping of the
chapters' row verdicts onto the four verdicts."""

from __future__ import annotations

import pandas as pd
import pytest

from jacnb.lab.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    NOT_TESTED,
    REPRODUCED,
    VERDICTS,
    Verdict,
    from_row,
    slug,
    verdict_frame,
)


def test_the_four_verdicts():
    assert VERDICTS == ("reproduced", "not reproduced", "inconclusive", "not run")


def test_verdict_rejects_an_unknown_word():
    with pytest.raises(ValueError, match="not tested"):
        Verdict("fig3.jr_beats_wd", NOT_TESTED, "")


def test_verdict_frame_has_one_row_per_verdict_and_every_field():
    vs = [
        Verdict("a", REPRODUCED, "x", estimate=0.1, low=0.0, high=0.2, n_seeds=3),
        Verdict("b", NOT_RUN, "", reason="dataset absent"),
    ]
    frame = verdict_frame(vs)
    assert list(frame.columns)[:4] == ["claim", "verdict", "evidence", "reason"]
    assert "seeds_needed" in frame.columns and len(frame) == 2
    assert frame.loc[0, "estimate"] == 0.1 and pd.isna(frame.loc[1, "estimate"])
    assert verdict_frame([]).empty


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"verdict": REPRODUCED, "evidence": "3/3"}, REPRODUCED),
        ({"verdict": NOT_REPRODUCED, "evidence": "1/3"}, NOT_REPRODUCED),
        ({"verdict": NOT_TESTED, "evidence": "not run: dataset absent ['cifar10']"}, NOT_RUN),
        ({"verdict": NOT_TESTED, "evidence": "only one value of depth"}, INCONCLUSIVE),
    ],
)
def test_rows_map_onto_the_four_verdicts(row, expected):
    v = from_row({"claim": "JR beats WD", **row, "panel": "MNIST"}, "fig3.jr_beats_wd")
    assert v.verdict == expected and v.claim == "fig3.jr_beats_wd" and v.dataset == "MNIST"
    assert v.evidence.startswith("JR beats WD: ")
    if expected == INCONCLUSIVE:
        assert v.reason == NOT_TESTED


def test_slug():
    assert slug("every ||W_l||_2 > 1") == "every_w_l_2_1"
