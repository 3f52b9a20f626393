"""jacnb.lab.tables: the paper-vs-ours cells."""

import pandas as pd

from jacnb.lab.tables import factor_list, percent_mean_sd


def test_percent_mean_sd_by_hand():
    # 0.90, 0.92, 0.97 -> mean 93.00, sd sqrt((3^2 + 1^2 + 4^2) / 2) = sqrt(13) = 3.61
    assert percent_mean_sd(pd.Series([0.90, 0.92, 0.97])) == "93.00 ± 3.61 (n=3)"
    assert percent_mean_sd(pd.Series([0.5, None])) == "50.00 (n=1)"
    assert percent_mean_sd(pd.Series([], dtype=float)) == "n/a"


def test_factor_list():
    assert factor_list([1.0, 10.0, 100.0]) == "1, 10, 100"
    assert factor_list([0.0, 1e-4]) == "0, 0.0001"
    assert factor_list([]) == "–"
