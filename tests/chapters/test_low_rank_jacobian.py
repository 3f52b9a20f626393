"""The low-rank Jacobian chapter (jacnb.chapters.low_rank_jacobian): the chapter interface, the
runs frames its verdicts are decided on, and its projections against brute force."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from jacnb.chapters import low_rank_jacobian as lx
from jacnb.core.data import balanced_subset, load_dataset
from jacnb.core.lowrank import one_hot_stacked
from jacnb.core.models import mlp, resnet20
from jacnb.lab import gates
from jacnb.lab.claims import claims_of
from jacnb.lab.store import ResultStore
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

SYNTHETIC_CLAIMS = (lx.SPECTRUM_CLAIM, lx.LOW_RANK_CLAIM)
TRAINING_CLAIMS = [c.id for c in claims_of(lx.NAME) if c.id not in SYNTHETIC_CLAIMS]


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


def test_settings_follow_the_paper():
    paper = lx.settings("paper")
    assert paper["lr_drop_noisy"] == 760 and paper["epochs_noisy"] == 800
    assert paper["n_spectrum"] == 1000 and paper["rank"] == 50
    cpu = lx.settings("cpu")
    steps = cpu["epochs_noisy"] * math.ceil(cpu["n_train"] / cpu["batch_size"])
    assert steps >= 1000 and len(cpu["seeds"]) >= 3 and 0.5 in cpu["corruptions"]
    assert lx.lr_drop_epoch({"lr_drop_noisy": 760, "corruption": 0.0}) is None
    assert lx.lr_drop_epoch({"lr_drop_noisy": 760, "corruption": 0.5}) == 760
    # every seed of the sweep, the bridge at the first
    cfgs = lx.configs(cpu)
    assert len(cfgs) == len(cpu["seeds"]) * len(cpu["corruptions"]) + len(cpu["bridge_corruptions"])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("results"))
    return lx.run("smoke", store=store)


def test_smoke_training_claims_are_never_decided(smoke):
    verdicts = smoke.verdicts()
    assert [v.claim for v in verdicts] == [c.id for c in claims_of(lx.NAME)]
    for v in verdicts:
        if v.claim in TRAINING_CLAIMS:
            assert v.verdict in (INCONCLUSIVE, NOT_RUN), v
            assert "stand-in" in v.dataset or v.verdict == NOT_RUN


def test_runs_frames_have_the_required_columns(smoke):
    for claim in claims_of(lx.NAME):
        runs = smoke.runs(claim.id)
        missing = set(gates.required_columns(claim)) - set(runs.columns)
        assert not missing, (claim.id, missing)
        assert len(runs)
    frames = smoke.frames()
    assert {"fig3", "spectrum_runs", "alignment_runs", "sweep", "dynamics"} <= set(frames)
    assert not smoke.paper_table().empty
    assert set(smoke.figures()) >= {"fig3", "dynamics", "sweep"}


# --- planted effects through the verdict path ------------------------------------------------


def _dynamics(info_decay: float, nuis_decay: float, errors: list[float]) -> list[dict]:
    out = []
    for t, err in enumerate(errors):
        row = {"epoch": t, "train_error": 0.0, "train_error_clean_labels": 0.0, "test_error": err}
        for split in ("train", "test"):
            for which in ("initial", "final"):
                row[f"{split}_info_{which}"] = info_decay**t
                row[f"{split}_nuis_{which}"] = nuis_decay**t
        out.append(row)
    return out


def _split(info: float) -> dict:
    return {
        "info": info,
        "nuisance": math.sqrt(1 - info**2),
        "nuisance_energy": 1 - info**2,
        "pinv_norm": 1.0,
    }


def _records(planted: bool, seeds=range(5)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for c in (0.0, 0.5, 1.0):
            noise = rng.normal(0, 0.005)
            init = 0.4 - 0.2 * c + noise if planted else 0.6 + 0.2 * c + noise
            final = 0.95 - 0.05 * c + noise if planted else init - 0.1
            fast, slow = (0.2, 0.9) if planted else (0.9, 0.2)
            errs = (
                [0.9, 0.5, 0.3, 0.4 + 0.1 * c + 0.01 * seed]
                if planted
                else [0.9, 0.5, 0.3, 0.3 - 0.05 * c]
            )
            rows.append(
                {
                    "seed": seed,
                    "corruption": c,
                    "lam": 0.0,
                    "status": "ok",
                    "alignment": {
                        "initial": {"y": _split(init), "r0": _split(init)},
                        "final": {"y": _split(final), "r0": _split(final)},
                        "best": {"y": _split(final), "r0": _split(final)},
                    },
                    "dynamics": _dynamics(fast, slow, errs),
                    "train_acc": 1.0,
                    "steps": 2000,
                    "seconds": 1.0,
                    "final_test_error": errs[-1],
                    "best_test_error": min(errs),
                    "best_epoch": 2,
                }
            )
    return pd.DataFrame(rows)


def _fig3(exponent: float, low_rank: bool = True) -> pd.DataFrame:
    """Singular values growing like n**exponent; the top K·C·C = 48 (cpu: K = 3, C = 4) ten
    times the other 151 when ``low_rank``, all equal otherwise."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(4):
        for m in (30, 60):
            n = 4 * m
            for i in range(1, 200):
                big = 10.0 if (low_rank and i <= 48) else 1.0
                sv = n**exponent * big * (1 + rng.normal(0, 0.01))
                rows.append((seed, n, m, i, sv, sv))
    return pd.DataFrame(rows, columns=["seed", "n", "per_class", "index", "sv", "sv_normalized"])


def _result(planted: bool) -> lx.LowRankResult:
    s = lx.settings("cpu")
    return lx.LowRankResult(
        s,
        _fig3(0.5 if planted else 1.0, low_rank=planted),
        _records(planted),
        dataset="mnist-10k",
        source="x",
    )


def test_planted_effects_are_reproduced_and_reversed_ones_not():
    got = {v.claim: v for v in _result(True).verdicts()}
    assert {k: v.verdict for k, v in got.items()} == {c.id: REPRODUCED for c in claims_of(lx.NAME)}
    assert all("stand-in" in got[c].dataset for c in TRAINING_CLAIMS)
    rev = {v.claim: v.verdict for v in _result(False).verdicts()}
    assert rev == {c.id: NOT_REPRODUCED for c in claims_of(lx.NAME)}


def test_diverged_runs_are_counted_and_withhold_their_cell():
    recs = _records(True)
    recs.loc[0, "status"] = "diverged"
    res = lx.LowRankResult(lx.settings("cpu"), _fig3(0.5), recs, dataset="mnist-10k")
    assert res.n_diverged == 1 and len(res.ok) == len(recs) - 1
    v = {v.claim: v for v in res.verdicts()}
    for claim in TRAINING_CLAIMS:  # seed 0 at corruption 0 diverged: every claim there counts it
        if 0.0 in dict(lx.get_claim(claim).cell_filter).get("corruption", (0.0,)):
            assert "gate divergence" in v[claim].reason, (claim, v[claim].reason)


def test_absent_dataset_is_not_run():
    res = lx.LowRankResult(lx.settings("paper"), _fig3(0.5), missing="CIFAR-10 is not on disk")
    v = {v.claim: v.verdict for v in res.verdicts()}
    assert all(v[c] == NOT_RUN for c in TRAINING_CLAIMS)
    assert v[lx.SPECTRUM_CLAIM] == v[lx.LOW_RANK_CLAIM] == REPRODUCED


# --- brute force ------------------------------------------------------------------------------


def _dense_jacobian(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """𝒥 (outputs stacked sample-major) by autograd, one output at a time."""
    rows = []
    params = [p for p in net.parameters()]
    for xi in x:
        out = net(xi[None]).squeeze(0)
        for k in range(out.numel()):
            grads = torch.autograd.grad(out[k], params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]).double().numpy())
    return np.stack(rows)


def test_run_alignment_and_residuals_match_an_explicit_svd():
    """One tiny run: the label / residual splits on the initial Jacobian's information space
    agree with the SVD of the explicit Jacobian, and residual_remaining with its definition."""
    config = {
        "experiment": "t",
        "dataset": "digits",
        "n_train": 20,
        "n_test": 20,
        "arch": "mlp",
        "width": 8,
        "out_scale": 0.5,
        "batch_size": 10,
        "lr": 0.1,
        "momentum": 0.0,
        "epochs_clean": 3,
        "epochs_noisy": 3,
        "lr_drop_noisy": None,
        "n_checkpoints": 3,
        "rank": 120,
        "n_spectrum": 120,
        "svd_iters": 2,
        "seed": 0,
        "corruption": 0.0,
        "lam": 0.0,
    }
    rec = lx.run_lowrank(config)
    ds = load_dataset("digits")
    x, y = balanced_subset(ds.x_train, ds.y_train, 20, 0)
    net = lx.build_net(config, ds.input_shape, ds.n_classes).double().eval()
    jac = _dense_jacobian(net, x.double())
    u, s, _ = np.linalg.svd(jac, full_matrices=False)
    u_i = u[:, :120]
    ys = one_hot_stacked(y, ds.n_classes).numpy()
    with torch.no_grad():
        r0 = net(x.double()).reshape(-1).numpy() - ys
    info_y = np.linalg.norm(u_i.T @ ys) / np.linalg.norm(ys)
    info_r0 = np.linalg.norm(u_i.T @ r0) / np.linalg.norm(r0)
    a = rec["alignment"]["initial"]
    assert a["y"]["info"] == pytest.approx(info_y, rel=1e-4)
    assert a["r0"]["info"] == pytest.approx(info_r0, rel=1e-4)
    assert rec["spectrum_initial"][:5] == pytest.approx(s[:5].tolist(), rel=1e-4)
    first = rec["dynamics"][0]
    assert first["train_info_initial"] == pytest.approx(np.sum((u_i.T @ r0) ** 2), rel=1e-4)
    runs = lx.alignment_runs(pd.DataFrame([{**config, **rec}]))
    assert runs.set_index("arm").loc["initial", "info_fraction_y"] == pytest.approx(
        info_y, rel=1e-4
    )
    assert (
        runs["steps"].iloc[0] == 3 * 2 and runs["train_acc"].iloc[0] == 1 - rec["final_train_error"]
    )
    # residual_remaining: mean over t > 0 of E(t) / E(0), per space
    dyn = pd.DataFrame(rec["dynamics"])
    want = (dyn["train_info_final"].iloc[1:] / dyn["train_info_final"].iloc[0]).mean()
    assert lx.residual_remaining(rec["dynamics"])["information"] == pytest.approx(want)


def test_method_check_against_the_dense_svd():
    torch.manual_seed(0)
    net = mlp(6, 3, 5, 0.5)
    x = torch.randn(12, 6)
    check = lx.method_check(net, x, 4).set_index("method")
    assert (check["max rel. error of top-k sv"] < 1e-3).all()
    assert (check["mean cos^2 to exact subspace"] > 0.99).all()
    s = np.linalg.svd(_dense_jacobian(net, x), compute_uv=False)
    fig = lx.spectrum_facts(s[:6], s[:6], 4)
    assert fig.loc["initial", "lambda_1"] == pytest.approx(s[0])


def test_synthetic_spectrum_is_the_svd_of_the_explicit_jacobian():
    from jacnb.core.data import gaussian_mixture
    from jacnb.core.models import OneHiddenLayer

    s = {
        "fig3_classes": 2,
        "fig3_clusters": 2,
        "fig3_dim": 3,
        "fig3_sigma": 0.1,
        "fig3_per_class": [3],
        "fig3_hidden": 5,
        "fig3_seeds": [0],
    }
    df = lx.synthetic_spectrum(s)
    data = gaussian_mixture(2, 2, 3, 0.1, 6, seed=0)
    net = OneHiddenLayer(3, 5, 2, seed=1000)
    weights = [n for n, p in net.named_parameters() if p.requires_grad]
    assert weights, "the model has trainable weights"
    jac = []
    for xi in data["x"]:
        out = net(xi[None]).squeeze(0)
        for k in range(out.numel()):
            g = torch.autograd.grad(
                out[k], [p for p in net.parameters() if p.requires_grad], retain_graph=True
            )
            jac.append(torch.cat([t.reshape(-1) for t in g]).double().numpy())
    sv = np.linalg.svd(np.stack(jac), compute_uv=False)
    assert df["sv"].to_numpy()[:5] == pytest.approx(sv[:5], rel=1e-5)
    runs = lx.spectrum_runs(df, 2, 2)
    assert runs["top_sv_mean"].iloc[0] == pytest.approx(sv[:8].mean(), rel=1e-5)
