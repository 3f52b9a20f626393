"""The one Verdict record (jacnb.lab.verdicts): its four verdicts, its fields, its table."""

from __future__ import annotations

import pandas as pd
import pytest

from jacnb.lab.verdicts import (
    NOT_RUN,
    REPRODUCED,
    VERDICTS,
    Verdict,
    verdict_frame,
)


def test_the_four_verdicts():
    assert VERDICTS == ("reproduced", "not reproduced", "inconclusive", "not run")


def test_verdict_rejects_an_unknown_word():
    with pytest.raises(ValueError, match="not tested"):
        Verdict("fig3.mnist.jr_beats_wd", "not tested at this scale", "")


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
