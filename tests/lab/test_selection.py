"""The factor choice (jacnb.lab.selection): best mean validation accuracy over every factor of the
grid (the selection nets' fit is reported, never used), exact ties broken by validation
cross-entropy, remaining ties flagged, test columns refused. Every expected choice is worked out
by hand from the rows below."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from jacnb.lab.selection import choose_lambdas

BY = ["regularizer"]


def runs(table, reg="jacobian"):
    """``table``: {lam: [(val_acc, val_loss, train_acc), ...]} one tuple per selection seed."""
    rows = []
    for lam, per_seed in table.items():
        for i, (acc, loss, fit) in enumerate(per_seed):
            rows.append(
                {
                    "regularizer": reg,
                    "lam": lam,
                    "seed": 10_000 + i,
                    "val_acc": acc,
                    "val_loss": loss,
                    "train_acc": fit,
                    "steps": 600 + i,
                }
            )
    return pd.DataFrame(rows)


def one(frame, **kw):
    (row,) = choose_lambdas(frame, BY, **kw).to_dict("records")
    return row


def test_best_mean_validation_accuracy_with_grid_seeds_and_steps():
    r = one(runs({0.01: [(0.80, 0.5, 1.0), (0.82, 0.5, 1.0)],
                  0.1: [(0.90, 0.4, 1.0), (0.88, 0.4, 1.0)],
                  1.0: [(0.70, 0.6, 1.0), (0.95, 0.6, 1.0)]}))
    assert r["lam"] == 0.1  # means 0.81, 0.89, 0.825
    assert r["val_acc"] == pytest.approx(0.89) and r["val_loss"] == pytest.approx(0.4)
    assert r["grid"] == {0.01: 0.81, 0.1: 0.89, 1.0: 0.825}
    assert r["lam_grid"] == [0.01, 0.1, 1.0]
    assert r["selection_seeds"] == [10_000, 10_001] and r["selection_steps"] == 600
    assert not r["chosen_by_tie"] and not r["tie_broken_by_loss"] and not r["at_grid_edge"]
    assert r["unfit"] == []


def test_factors_compete_on_validation_accuracy_alone_whatever_their_fit():
    # lam 1 validates best (0.86) and its nets fit 98.5 % on average: it is chosen (the paper
    # chooses on validation accuracy alone); the short fit is reported, not used
    table = {0.01: [(0.84, 0.5, 1.0)] * 2,
             0.1: [(0.85, 0.5, 1.0)] * 2,
             1.0: [(0.86, 0.5, 0.98), (0.86, 0.5, 0.99)],
             10.0: [(0.80, 0.9, 0.90)] * 2}
    r = one(runs(table), min_train_acc=0.99)
    assert r["lam"] == 1.0 and r["unfit"] == [1.0, 10.0]
    assert one(runs(table))["lam"] == 1.0
    # exactly at the threshold counts as fit (mean 0.99)
    table[1.0] = [(0.86, 0.5, 0.985), (0.86, 0.5, 0.995)]
    assert one(runs(table), min_train_acc=0.99)["unfit"] == [10.0]


def test_when_no_factor_fits_the_best_validation_still_wins():
    r = one(runs({0.1: [(0.3, 2.0, 0.4)], 1.0: [(0.5, 1.9, 0.5)], 10.0: [(0.2, 2.2, 0.3)]}),
            min_train_acc=0.99)
    assert r["lam"] == 1.0 and r["unfit"] == [0.1, 1.0, 10.0]


def test_an_accuracy_tie_is_broken_by_the_lower_validation_loss():
    # 0, 1e-4 and 1e-3 tie on accuracy; 1e-3 has the lowest loss: chosen, not the smallest
    r = one(runs({0.0: [(0.848, 0.61, 1.0)], 1e-4: [(0.848, 0.60, 1.0)],
                  1e-3: [(0.848, 0.52, 1.0)], 1e-2: [(0.845, 0.40, 1.0)]}, "weight_decay"))
    assert r["lam"] == 1e-3 and r["val_loss"] == pytest.approx(0.52)
    assert r["tie_broken_by_loss"] and not r["chosen_by_tie"]


def test_a_tie_on_accuracy_and_loss_is_flagged_and_takes_the_smallest():
    r = one(runs({1e-4: [(0.9, 0.3, 1.0)], 1e-3: [(0.9, 0.3, 1.0)], 1e-2: [(0.8, 0.2, 1.0)]}))
    assert r["lam"] == 1e-4 and r["chosen_by_tie"] and not r["tie_broken_by_loss"]
    # losses not recorded (NaN): the tie cannot be broken
    r = one(runs({1e-4: [(0.9, math.nan, 1.0)], 1e-3: [(0.9, 0.1, 1.0)]}))
    assert r["lam"] == 1e-4 and r["chosen_by_tie"]
    # no val_loss column at all
    r = one(runs({1e-4: [(0.9, 0.2, 1.0)], 1e-3: [(0.9, 0.1, 1.0)]}).drop(columns="val_loss"))
    assert r["chosen_by_tie"]


def test_a_diverged_selection_run_scores_zero():
    r = one(runs({0.1: [(0.5, 1.0, 1.0), (0.5, 1.0, 1.0)],
                  1.0: [(0.9, 0.5, 1.0), (math.nan, math.nan, math.nan)]}))
    assert r["lam"] == 0.1  # 1.0's mean is (0.9 + 0) / 2 = 0.45


def test_the_grid_edge_follows_the_factor_gate():
    assert one(runs({0.0: [(0.9, 0.1, 1.0)], 1e-4: [(0.8, 0.2, 1.0)],
                     1e-3: [(0.7, 0.3, 1.0)]}))["at_grid_edge"] is False
    assert one(runs({1e-5: [(0.9, 0.1, 1.0)], 1e-4: [(0.8, 0.2, 1.0)],
                     1e-3: [(0.7, 0.3, 1.0)]}))["at_grid_edge"] is True


def test_groups_and_test_columns():
    frame = pd.concat([runs({0.1: [(0.9, 0.1, 1.0)], 1.0: [(0.8, 0.1, 1.0)]}),
                       runs({1e-4: [(0.7, 0.1, 1.0)], 1e-3: [(0.75, 0.1, 1.0)]}, "weight_decay")])
    chosen = choose_lambdas(frame, BY).set_index("regularizer")["lam"].to_dict()
    assert chosen == {"jacobian": 0.1, "weight_decay": 1e-3}
    with pytest.raises(ValueError, match="test"):
        choose_lambdas(frame.assign(test_acc=0.5), BY)
    with pytest.raises(ValueError, match="train_acc"):
        choose_lambdas(frame.drop(columns="train_acc"), BY, min_train_acc=0.99)
    assert choose_lambdas(frame.iloc[:0], BY).empty
