"""The low-rank Jacobian chapter (jacnb.chapters.low_rank_jacobian): its nets come from the
core registry, and its verdicts follow the rules in its docstring."""

from __future__ import annotations

import pandas as pd
import torch

from jacnb.chapters import low_rank_jacobian as lx
from jacnb.core.models import mlp, resnet20
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED


def test_build_net_is_the_registry_net_seeded():
    config = {"arch": "mlp", "seed": 3, "width": 7, "out_scale": 0.5}
    net = lx.build_net(config, (1, 4, 4), 3)
    torch.manual_seed(3)
    ref = mlp(16, 3, 7, 0.5)
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    net = lx.build_net({"arch": "resnet20", "seed": 0, "out_scale": 0.1}, (3, 8, 8), 10)
    torch.manual_seed(0)
    ref = resnet20(10, 3, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), ref.parameters(), strict=True))


def _record(corruption, nuisance, best, final, info=0.8):
    def part(n):
        return {
            "y": {"nuisance_energy": n, "info": info, "nuisance": 1 - info, "pinv_norm": 1.0},
            "r0": {"info": 0.5, "nuisance": 0.5},
        }

    return {
        "corruption": corruption,
        "lam": 0.0,
        "alignment": {"initial": part(nuisance), "final": part(nuisance), "best": part(nuisance)},
        "final_test_error": final,
        "best_test_error": best,
        "best_epoch": 1,
        "final_train_error": 0.0,
    }


def test_verdicts_follow_their_rules():
    frame = pd.DataFrame([_record(0.0, 0.1, 0.2, 0.2), _record(0.5, 0.4, 0.3, 0.35)])
    by = {v.claim: v.verdict for v in lx.verdicts(frame, "smoke")}
    assert by["oymak.fig7.label_energy_on_nuisance_grows"] == REPRODUCED
    assert by["oymak.early_stopping_helps_with_noise"] == REPRODUCED
    assert by["oymak.table1.labels_on_information_space"] == REPRODUCED
    flat = pd.DataFrame([_record(0.0, 0.4, 0.2, 0.2, info=0.3), _record(0.5, 0.1, 0.4, 0.35)])
    by = {v.claim: v.verdict for v in lx.verdicts(flat)}
    assert set(by.values()) == {NOT_REPRODUCED}
    one = pd.DataFrame([_record(0.5, 0.4, 0.3, 0.35)])
    by = {v.claim: v.verdict for v in lx.verdicts(one)}
    assert by["oymak.fig7.label_energy_on_nuisance_grows"] == INCONCLUSIVE
    assert by["oymak.table1.labels_on_information_space"] == NOT_RUN
