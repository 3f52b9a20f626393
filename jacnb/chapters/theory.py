"""Numerical checks of the paper's statements (Sokolic et al. 2017, Sec. II-V), the theory
chapter (notebooks/01_theory.ipynb).

Each check function returns a tidy :class:`pandas.DataFrame` with the measured quantities and a
boolean ``holds`` column, so the chapter can show the table and fail on it, and the tests can
call the same code. The chapter interface: ``NAME``, :func:`settings`, :func:`configs`,
:func:`run` -> :class:`TheoryResult` (``frames()``, ``figures()``, ``verdicts()``, which is empty:
the theory page has no registered claim -- its checks are identities and inequalities that must
hold, and :meth:`TheoryResult.assert_holds` fails the page if one does not).

**Score convention.** Every figure and table that certifies or bounds a margin uses the unit
score ``min_j (f_y - f_j)/sqrt(2)`` (:func:`jacnb.core.bounds.score`, ``scale="unit"``): the
proof of Theorem 4 needs unit-norm ``v_ij``; eq. (33) as printed has ``sqrt(2)(f_y - f_j)``
(``scale="printed"``), twice as large. The margin bounds gamma3 / gamma4 (eqs. 36-37) are computed
only for nets inside Lemma 1's assumptions; :func:`margins` and :func:`ge_bound_on_data` refuse
others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from jacnb.core import bounds
from jacnb.core.jacobian import (
    average_jacobian_times,
    input_jacobian,
    network_output,
    residual_expansion,
    spectral_norm,
)
from jacnb.lab.verdicts import Verdict

NAME = "01_theory"
SETTINGS_KEY = "theory"


def theorem3(
    model: nn.Module,
    x: Tensor,
    n_pairs: int,
    n_points: int = 8192,
    n_sup_points: int = 256,
    seed: int = 0,
    output: str = "softmax",
) -> pd.DataFrame:
    """Theorem 3 and Corollary 2 on random pairs ``(x, x')`` of the rows of ``x``.

    Columns: ``rel_error`` = ``||f(x') - f(x) - J_{x,x'}(x' - x)|| / ||f(x') - f(x)||`` (eq. 22,
    with the average Jacobian of eq. 23 applied to ``x' - x`` by the midpoint rule on ``n_points``
    points, :func:`jacnb.core.jacobian.average_jacobian_times`), and Corollary 2's
    ``||f(x') - f(x)|| <= max_t ||J(x + t(x'-x))||_2 ||x' - x||`` (eq. 24, the maximum over
    ``n_sup_points`` points of the segment, a lower estimate of the sup over conv(X)).
    """
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(x.shape[0], (n_pairs, 2), generator=gen)
    rows = []
    for i, j in idx.tolist():
        if i == j:
            continue
        a, b = x[i], x[j]
        with torch.no_grad():
            diff = (
                network_output(model, b[None], output) - network_output(model, a[None], output)
            )[0]
        pred = average_jacobian_times(model, a, b, n_points, output)
        t = (torch.arange(n_sup_points, dtype=x.dtype) + 0.5) / n_sup_points
        path = a[None] + t.view(-1, *([1] * a.dim())) * (b - a)[None]
        sup_j = float(spectral_norm(model, path, output).max())
        lhs = float(diff.norm())
        rows.append(
            {
                "pair": (i, j),
                "||f(x')-f(x)||": lhs,
                "rel_error": float((diff - pred).norm()) / max(lhs, 1e-12),
                "sup_J_path * ||x'-x||": sup_j * float((b - a).norm()),
            }
        )
    df = pd.DataFrame(rows)
    df["cor2_holds"] = df["||f(x')-f(x)||"] <= df["sup_J_path * ||x'-x||"] * (1 + 1e-6)
    return df


def lemma1(model: nn.Sequential, x: Tensor) -> pd.DataFrame:
    """Lemma 1 per layer of a ``nn.Sequential`` of Flatten/Linear/ReLU/pooling layers.

    For every weight layer followed by its non-linearity, the largest spectral norm of the
    layer's Jacobian over the samples must not exceed ``||W||_2`` (eq. 30), which must not exceed
    ``||W||_F``; pooling layers must have Jacobian norm <= 1 (eq. 31); the softmax layer's
    Jacobian ``diag(s) - s s^T`` (eq. 26) has norm <= 1.
    """
    rows = []
    z = x
    layers = list(model)
    k = 0
    while k < len(layers):
        layer = layers[k]
        if isinstance(layer, nn.Flatten):
            z = layer(z)
            k += 1
            continue
        block = [layer]
        if k + 1 < len(layers) and isinstance(layers[k + 1], nn.ReLU | nn.Tanh | nn.Sigmoid):
            block.append(layers[k + 1])
        sub = nn.Sequential(*block)
        jac_norm = float(spectral_norm(sub, z, output="logits").max())
        weight = getattr(layer, "weight", None)
        if isinstance(weight, Tensor) and weight.dim() == 2:
            spec = float(torch.linalg.matrix_norm(weight.detach(), 2))
            frob = float(torch.linalg.matrix_norm(weight.detach(), "fro"))
            holds = jac_norm <= spec * (1 + 1e-6) and spec <= frob * (1 + 1e-9)
            kind = "linear+" + (type(block[1]).__name__ if len(block) > 1 else "none")
        else:
            spec, frob = float("nan"), float("nan")
            holds = jac_norm <= 1 + 1e-6
            kind = type(layer).__name__
        rows.append(
            {
                "layer": k,
                "kind": kind,
                "max ||J_l||_2": jac_norm,
                "||W||_2": spec,
                "||W||_F": frob,
                "holds": holds,
            }
        )
        with torch.no_grad():
            z = sub(z)
        k += len(block)
    with torch.no_grad():
        s = torch.softmax(z, dim=-1)
    soft = torch.diag_embed(s) - s[:, :, None] * s[:, None, :]
    soft_norm = float(torch.linalg.matrix_norm(soft, 2).max())
    rows.append(
        {
            "layer": k,
            "kind": "softmax (eq. 26)",
            "max ||J_l||_2": soft_norm,
            "||W||_2": math.nan,
            "||W||_F": math.nan,
            "holds": soft_norm <= 1 + 1e-9,
        }
    )
    return pd.DataFrame(rows)


def pooling_norms(n_samples: int = 64, seed: int = 0) -> pd.DataFrame:
    """Lemma 1, eq. (31): non-overlapping max/average pooling and down-sampling have norm <= 1."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, 2, 6, 6, generator=gen)
    layers = {
        "max-pool 2x2": nn.MaxPool2d(2),
        "avg-pool 2x2": nn.AvgPool2d(2),
        "down-sample 2x": _DownSample(),
    }
    rows = []
    for name, layer in layers.items():
        net = nn.Sequential(layer, nn.Flatten())
        jac = input_jacobian(net, x, output="logits")
        norm = float(torch.linalg.matrix_norm(jac, 2).max())
        rows.append({"layer": name, "max ||J||_2": norm, "holds": norm <= 1 + 1e-6})
    return pd.DataFrame(rows)


class _DownSample(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x[..., ::2, ::2]


def margins(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_hull: Tensor,
    ball_samples: int = 16,
    seed: int = 0,
) -> pd.DataFrame:
    """Theorem 4 per correctly classified sample: ``gamma_4 <= gamma_3 <= gamma^d`` and estimates.

    Columns: score ``o`` (eq. 33), ``gamma1_est`` (eq. 34 with the sup over the ball of radius
    the measured margin estimated by sampling the ball and the segment to the boundary point),
    ``gamma2_est`` (eq. 35 with the sup over ``conv(X)`` estimated by the max over ``x_hull``
    and midpoints of pairs of its rows),
    ``gamma3`` (eq. 36), ``gamma4`` (eq. 37), ``measured`` (an upper bound on the true margin,
    :func:`jacnb.core.bounds.measured_margin`). ``holds`` checks the certified part
    ``gamma4 <= gamma3 <= measured``; the two estimates are shown, not asserted.

    Only for nets Lemma 1 covers (:func:`jacnb.bounds.lemma1_chain`: chains of linear/conv,
    ReLU/sigmoid/tanh, pooling, eval-mode batch norm); others raise ``ValueError`` up front.
    """
    bounds.lemma1_chain(model)
    o = bounds.scores_of(model, x, y)
    keep = o > 0
    x, y, o = x[keep], y[keep], o[keep]
    measured, on_boundary = bounds.boundary_points(model, x, y, x_pool=x_hull)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x_hull.shape[0], generator=gen)
    mids = (x_hull + x_hull[perm]) / 2
    sup_hull = max(
        float(spectral_norm(model, x_hull).max()), float(spectral_norm(model, mids).max())
    )
    finite = torch.where(torch.isfinite(measured), measured, torch.zeros_like(measured))
    local = bounds.local_sup_spectral_norm(
        model, x, finite, ball_samples, generator=gen, toward=on_boundary
    )
    example = x[:1]
    df = pd.DataFrame(
        {
            "score": o.numpy(),
            "gamma1_est": bounds.margin_bound(o, local).numpy(),
            "gamma2_est": bounds.gamma2_estimate(o, sup_hull).numpy(),
            "gamma3": bounds.gamma3(o, model, example).numpy(),
            "gamma4": bounds.gamma4(o, model, example).numpy(),
            "measured": measured.numpy(),
        }
    )
    df["holds"] = (df["gamma4"] <= df["gamma3"] * (1 + 1e-9)) & (
        df["gamma3"] <= df["measured"] * (1 + 1e-6)
    )
    return df


def orthonormal_rows(widths: Sequence[int], depths: Sequence[int], seed: int = 0) -> pd.DataFrame:
    """Sec. IV example: L layers of M x M matrices with orthonormal rows.

    ``prod ||W_l||_2 = 1`` whatever M and L, while ``prod ||W_l||_F = M^{L/2}``; the constraint sets
    (41) and (42) therefore ask ``1 < gamma o(s)`` and ``M^{L/2} < gamma o(s)``.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for m in widths:
        for depth in depths:
            spec, frob = 1.0, 1.0
            for _ in range(depth):
                q, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
                spec *= float(torch.linalg.matrix_norm(q, 2))
                frob *= float(torch.linalg.matrix_norm(q, "fro"))
            rows.append(
                {
                    "M": m,
                    "L": depth,
                    "prod ||W||_2": spec,
                    "prod ||W||_F": frob,
                    "M^(L/2)": m ** (depth / 2),
                }
            )
    df = pd.DataFrame(rows)
    df["holds"] = ((df["prod ||W||_2"] - 1).abs() < 1e-9) & (
        (df["prod ||W||_F"] / df["M^(L/2)"] - 1).abs() < 1e-9
    )
    return df


def batch_norm_rows(n_samples: int = 200, dim_in: int = 8, dim_out: int = 6, seed: int = 0):
    """Theorem 5 (eqs. 46-47): a batch-normalized ReLU layer has a row-normalized weight.

    With ``N(W) = diag(sum_i W z_i z_i^T W^T)^{-1/2}`` and ``W^N`` the row-normalized ``W``
    (rows scaled by the same positive factors), ``[N(W) W z]_relu = N(W^N) [W^N z]_relu``; the
    rows of ``N(W) W`` have unit norm in the data metric ``sum_i (w_r^T z_i)^2``. Returns a
    DataFrame of the two identities' errors.
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_samples, dim_in, generator=gen, dtype=torch.float64)
    w = torch.randn(dim_out, dim_in, generator=gen, dtype=torch.float64) * 3

    def norm_matrix(mat: Tensor) -> Tensor:
        return torch.diag(torch.diag(mat @ z.T @ z @ mat.T).rsqrt())

    w_n = w / w.norm(dim=1, keepdim=True)
    lhs = torch.relu(z @ (norm_matrix(w) @ w).T)
    rhs = torch.relu(z @ w_n.T) @ norm_matrix(w_n).T
    data_norms = ((z @ (norm_matrix(w) @ w).T) ** 2).sum(0)
    rows = [
        {
            "identity": "[N(W) W z]_relu = N(W^N)[W^N z]_relu",
            "max abs error": float((lhs - rhs).abs().max()),
        },
        {
            "identity": "sum_i ((N W)_r z_i)^2 = 1 for every row r",
            "max abs error": float((data_norms - 1).abs().max()),
        },
        {
            "identity": "rows of W^N have unit norm",
            "max abs error": float((w_n.norm(dim=1) - 1).abs().max()),
        },
    ]
    df = pd.DataFrame(rows)
    df["holds"] = df["max abs error"] < 1e-9
    return df


def resnet_expansion(model: nn.Module, x: Tensor) -> pd.DataFrame:
    """eq. (55) on a :func:`jacnb.core.models.tiny_resnet`: ``J = W_head (sum of sub-networks)
    W_stem``.

    For each sample, the Jacobian from autograd is compared with the head and stem matrices
    around :func:`jacnb.core.jacobian.residual_expansion` of the branch Jacobians ``J_phi_l`` taken
    at
    each block's input.
    """
    rows = []
    for i, xi in enumerate(x):
        full = input_jacobian(model, xi[None], output="logits")[0].double()
        with torch.no_grad():
            z = model.stem(xi[None])
        branch_jacs = []
        for block in model.blocks:
            jac = torch.autograd.functional.jacobian(lambda v, b=block: b.residual(v), z[0])
            branch_jacs.append(jac.double())
            with torch.no_grad():
                z = block(z)
        expanded = (
            model.head.weight.double()
            @ residual_expansion(branch_jacs)
            @ model.stem.weight.double()
        ).detach()
        rows.append(
            {
                "sample": i,
                "paths": 2 ** len(branch_jacs),
                "max abs error": float((full - expanded).abs().max()),
            }
        )
    df = pd.DataFrame(rows)
    df["holds"] = df["max abs error"] < 1e-5
    return df


def ge_bound_grid(
    ms: Sequence[int],
    gammas: Sequence[float],
    ks: Sequence[int],
    n_classes: int = 10,
    c_m: float = 1.0,
    delta: float = 0.05,
) -> pd.DataFrame:
    """Corollary 1, eq. (13), over training-set size m, margin gamma and manifold dimension k."""
    rows = [
        {
            "m": m,
            "gamma": g,
            "k": k,
            "GE bound": bounds.ge_bound_manifold(m, n_classes, k, c_m, g, delta),
        }
        for m in ms
        for g in gammas
        for k in ks
    ]
    return pd.DataFrame(rows)


def ge_bound_on_data(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    k: int,
    c_m: float,
    delta: float = 0.05,
) -> pd.DataFrame:
    """Corollary 1/3 (eqs. 13, 38) on a trained net and data on a known manifold.

    The margin ``gamma`` of eq. (11) must hold for *every* training sample, so each row takes the
    minimum over the training set of one margin notion: the certified ``gamma_3`` and
    ``gamma_4`` (Theorem 4; misclassified samples give 0) and the measured upper bound on the
    true margin (not certified: the bound it gives is what Cor. 1 would say if that were the
    margin). Eq. (13) evaluated at the median margin is shown as an illustration only: it is not
    a bound, since half of the samples have smaller margins. The measured
    generalization error ``|test - train|`` 0-1 error (eq. 3) is shown beside. Only for nets
    Lemma 1 covers (see :func:`margins`).
    """
    bounds.lemma1_chain(model)
    with torch.no_grad():
        train_err = float((model(x_train).argmax(1) != y_train).double().mean())
        test_err = float((model(x_test).argmax(1) != y_test).double().mean())
    o = bounds.scores_of(model, x_train, y_train)
    example = x_train[:1]
    g3 = torch.nan_to_num(bounds.gamma3(o, model, example), nan=0.0)
    g4 = torch.nan_to_num(bounds.gamma4(o, model, example), nan=0.0)
    measured = bounds.measured_margin(model, x_train, y_train)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    m = x_train.shape[0]
    rows = []
    for name, values in (
        ("gamma4 (certified)", g4),
        ("gamma3 (certified)", g3),
        ("measured margin (not certified)", measured),
    ):
        gamma = float(values.min())
        bound = (
            bounds.ge_bound_manifold(m, n_classes, k, c_m, gamma, delta) if gamma > 0 else math.inf
        )
        median = float(values.median())
        at_median = (
            bounds.ge_bound_manifold(m, n_classes, k, c_m, median, delta)
            if median > 0
            else math.inf
        )

        rows.append(
            {
                "margin used": name,
                "min over training set": gamma,
                "median over training set": float(values.median()),
                "GE bound (eq. 13)": bound,
                "eq. 13 at the median (not a bound)": at_median,
                "measured GE": abs(test_err - train_err),
            }
        )
    return pd.DataFrame(rows)


def settings(profile: str) -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.settings`)."""
    from jacnb.lab import settings as lab_settings

    return lab_settings.settings(SETTINGS_KEY, profile)


#: The 2-D toy problem of Fig. 2 (fixed at every profile).
TOY = {
    "n_classes": 2,
    "clusters_per_class": 2,
    "dim": 2,
    "sigma": 0.25,
    "n_train": 400,
    "n_test": 400,
    "width": 32,
    "epochs": 100,
    "batch_size": 32,
}

#: The net of the covering-number bound on a cube manifold (Sec. II-B; fixed at every profile
#: but for its training-set size and epochs).
CUBE = {"n_classes": 3, "k": 2, "dim": 10, "depth": 3, "width": 64, "batch_size": 32}


def configs(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The store configs of the chapter's three trained nets: the Fig. 2 toy net, the net under
    test and the cube-manifold net (:func:`jacnb.lab.store.trained_model` keeps their
    weights)."""
    seed = settings["seeds"][0]
    prof = settings["profile"]
    return [
        {
            "experiment": "theory-fig2",
            "profile": prof,
            "seed": seed,
            "width": TOY["width"],
            "epochs": TOY["epochs"],
            "dataset": "gaussian-mixture",
        },
        {
            "experiment": "theory-net",
            "profile": prof,
            "dataset": settings["dataset"],
            "seed": seed,
            **{
                k: settings[k]
                for k in (
                    "n_train",
                    "depth",
                    "width",
                    "epochs",
                    "batch_size",
                    "lr",
                    "lr_drop_every",
                )
            },
        },
        {
            "experiment": "theory-cube",
            "profile": prof,
            "seed": seed,
            "n_train": settings["n_train"],
            "epochs": settings["epochs"],
        },
    ]


@dataclass
class TheoryResult:
    """What :func:`run` returns: the check frames by name (each with ``holds`` columns), the
    trained nets' metrics, and what the figures need."""

    settings: dict[str, Any]
    checks: dict[str, pd.DataFrame]
    metrics: dict[str, dict[str, Any]]
    dataset: str
    source: str
    toy: dict[str, Any] = field(default_factory=dict, repr=False)
    ge_fixed: dict[str, float] = field(default_factory=dict)

    @property
    def profile(self) -> str:
        return str(self.settings["profile"])

    def provenance(self) -> str:
        from jacnb.lab.settings import provenance

        s = self.settings
        return provenance(dict(s), self.dataset, depth=s["depth"], width=s["width"])

    def frames(self) -> dict[str, pd.DataFrame]:
        return dict(self.checks)

    def summary(self) -> pd.DataFrame:
        """One row per asserted check: cases and whether every case holds."""
        names = {
            "theorem3": "(b) Theorem 3 / Cor. 2",
            "lemma1": "(c) Lemma 1, layers",
            "pooling": "(c) Lemma 1, pooling",
            "margins": "(d) Theorem 4, gamma4 <= gamma3 <= measured",
            "orthonormal": "(e) orthonormal rows",
            "batch_norm": "(f) Theorem 5",
            "resnet": "(g) eq. 55",
        }
        rows = []
        for key, label in names.items():
            df = self.checks[key]
            cols = [c for c in df.columns if c == "holds" or str(c).endswith("_holds")]
            rows.append({"check": label, "cases": len(df), "holds": bool(df[cols].all().all())})
        return pd.DataFrame(rows).assign(profile=self.profile, dataset=self.dataset)

    def assert_holds(self) -> None:
        """Fail (``AssertionError`` naming the check) if an asserted identity or inequality does
        not hold, or Theorem 3's midpoint rule misses by more than 1 %."""
        bad = self.summary()
        bad = bad[~bad["holds"]]
        assert bad.empty, f"checks that do not hold: {bad['check'].tolist()}"
        err = float(self.checks["theorem3"]["rel_error"].max())
        assert err < 1e-2, f"Theorem 3: midpoint rule off by {err:.3g}"
        ge = self.checks["ge_grid"]
        assert (
            ge.groupby(["gamma", "k"])["GE bound"].apply(lambda v: v.is_monotonic_decreasing).all()
        ), "eq. 13 does not fall with m"

    def margin_summary(self) -> pd.DataFrame:
        """Medians over the samples of every bound and the measured margin, and the median
        ratio of each to the measured margin."""
        marg = self.checks["margins"].drop(columns="holds")
        out = marg.median().to_frame("median over samples")
        out["median ratio to measured"] = marg.div(marg["measured"], axis=0).median()
        return out

    def numbers(self) -> dict[str, float]:
        ratio = self.margin_summary()["median ratio to measured"]
        return {
            "gamma4_ratio": float(ratio["gamma4"]),
            "gamma3_ratio": float(ratio["gamma3"]),
            "gamma2_ratio": float(ratio["gamma2_est"]),
            "gamma1_ratio": float(ratio["gamma1_est"]),
            "gamma3_over_gamma4": float(ratio["gamma3"] / ratio["gamma4"]),
            "train_acc": float(self.metrics["net"]["train_acc"]),
            "test_acc": float(self.metrics["net"]["test_acc"]),
        }

    def figures(self) -> dict[str, Any]:
        from jacnb.lab import plotting as plots

        toy = self.toy
        return {
            "fig2": plots.decision_regions(
                toy["net"], toy["x"], toy["y"], provenance=toy["provenance"]
            ),
            "margins": plots.margin_bounds(self.checks["margins"], provenance=self.provenance()),
            "orthonormal": plots.norm_growth(
                self.checks["orthonormal"],
                provenance=f"random orthonormal matrices (QR), seed={self.settings['seeds'][0]}",
            ),
            "ge": plots.ge_bounds(
                self.checks["ge_grid"], self.ge_fixed, provenance="closed form, eq. (13); no data"
            ),
        }

    def verdicts(self) -> list[Verdict]:
        """None: no claim is registered on the theory page (its checks must simply hold)."""
        return []


def _fit(
    x: Tensor,
    y: Tensor,
    cfg: Any,
    x_test: Tensor,
    y_test: Tensor,
    desc: str,
    device: str | None = None,
):
    from jacnb.core.train import train

    def fit(model: nn.Module) -> dict[str, Any]:
        return train(model, x, y, cfg, x_test=x_test, y_test=y_test, device=device, desc=desc)

    return fit


def run(profile: str = "cpu", *, executor: Any = None, store: Any = None) -> TheoryResult:
    """Train (or load from the store) the chapter's three nets and run every check. The nets
    are kept as weights by :func:`jacnb.lab.store.trained_model` (a check needs the model, not
    only metrics), so ``executor`` is accepted for the common interface and not used."""
    from jacnb.core.data import balanced_subset, load_dataset
    from jacnb.core.models import fully_connected, tiny_resnet
    from jacnb.core.train import TrainConfig
    from jacnb.lab.settings import provenance
    from jacnb.lab.store import ResultStore, trained_model

    del executor
    s = settings(profile)
    store = store or ResultStore()
    seed = s["seeds"][0]
    toy_cfg, net_cfg, cube_cfg = configs(s)

    toy = load_dataset(
        "gaussian-mixture",
        n_classes=TOY["n_classes"],
        clusters_per_class=TOY["clusters_per_class"],
        dim=TOY["dim"],
        sigma=TOY["sigma"],
        n_train=TOY["n_train"],
        n_test=TOY["n_test"],
        seed=seed,
    )
    toy_cfg = {**toy_cfg, "dataset": toy.name}
    torch.manual_seed(seed)
    toy_net, toy_res = trained_model(
        toy_cfg,
        lambda: fully_connected(2, 2, depth=2, width=TOY["width"]),
        _fit(
            toy.x_train,
            toy.y_train,
            TrainConfig(
                epochs=TOY["epochs"],
                batch_size=TOY["batch_size"],
                lr=0.05,
                lr_drop_every=50,
                seed=seed,
                progress=False,
            ),
            toy.x_test,
            toy.y_test,
            "Fig. 2 net",
            device="cpu",
        ),
        store,
    )

    ds = load_dataset(s["dataset"])
    x_tr, y_tr = balanced_subset(ds.x_train, ds.y_train, s["n_train"], seed)
    n_in = x_tr[0].numel()
    net_cfg = {**net_cfg, "dataset": ds.name}
    torch.manual_seed(seed)
    net, res = trained_model(
        net_cfg,
        lambda: fully_connected(n_in, ds.n_classes, depth=s["depth"], width=s["width"]),
        _fit(
            x_tr,
            y_tr,
            TrainConfig(
                epochs=s["epochs"],
                batch_size=s["batch_size"],
                lr=s["lr"],
                lr_drop_every=s["lr_drop_every"],
                seed=seed,
                progress=False,
            ),
            ds.x_test,
            ds.y_test,
            "theory net",
        ),
        store,
    )
    net = net.double().eval()
    x_eval = x_tr[: s["n_eval"]].double().flatten(1)
    y_eval = y_tr[: s["n_eval"]]
    x_hull = x_tr.double().flatten(1)

    cube = load_dataset(
        "cube-manifold",
        n_classes=CUBE["n_classes"],
        k=CUBE["k"],
        dim=CUBE["dim"],
        n_train=s["n_train"],
        n_test=1000,
        seed=seed,
    )
    torch.manual_seed(seed)
    cube_net, _ = trained_model(
        cube_cfg,
        lambda: fully_connected(
            CUBE["dim"], CUBE["n_classes"], depth=CUBE["depth"], width=CUBE["width"]
        ),
        _fit(
            cube.x_train,
            cube.y_train,
            TrainConfig(
                epochs=s["epochs"],
                batch_size=CUBE["batch_size"],
                lr=0.05,
                seed=seed,
                lr_drop_every=s["lr_drop_every"],
                progress=False,
            ),
            cube.x_test,
            cube.y_test,
            "cube net",
            device="cpu",
        ),
        store,
    )
    cube_net = cube_net.double()

    torch.manual_seed(seed)
    tiny = tiny_resnet(in_features=4, width=6, n_blocks=4, n_classes=3).double()
    checks = {
        "theorem3": theorem3(net, x_eval, n_pairs=s["n_pairs"], seed=seed),
        "lemma1": lemma1(net, x_eval),
        "pooling": pooling_norms(),
        "margins": margins(net, x_eval, y_eval, x_hull, ball_samples=s["ball_samples"], seed=seed),
        "orthonormal": orthonormal_rows(widths=[4, 16, 64], depths=[1, 2, 3, 4, 5], seed=seed),
        "batch_norm": batch_norm_rows(seed=seed),
        "resnet": resnet_expansion(tiny, torch.randn(6, 4, dtype=torch.float64)),
        "ge_grid": ge_bound_grid(
            ms=[10**3, 10**4, 10**5, 10**6, 10**7], gammas=[0.25, 0.5, 0.75, 1.0], ks=[1, 2, 4, 8]
        ),
        "ge_data": ge_bound_on_data(
            cube_net,
            cube.x_train.double(),
            cube.y_train,
            cube.x_test.double(),
            cube.y_test,
            k=2,
            c_m=cube.meta["c_m"],
        ),
    }
    toy_view = {
        "net": toy_net,
        "x": toy.x_train,
        "y": toy.y_train,
        "provenance": provenance(
            {"profile": s["profile"], "n_train": TOY["n_train"], "seeds": [seed]}, toy.source
        ),
    }
    return TheoryResult(
        s,
        checks,
        {"toy": dict(toy_res), "net": dict(res)},
        ds.name,
        ds.source,
        toy=toy_view,
        ge_fixed={"m": 10**5, "gamma": 0.5, "k": 2},
    )


# ---------------------------------------------------------------------------------------------
# Dry run (python -m jacnb.run theory --profile paper --dry-run; jacnb.lab.dryrun)
# ---------------------------------------------------------------------------------------------


def dry_run(settings: Mapping[str, Any], device: torch.device) -> list[Any]:
    """The chapter's three trained nets (:func:`configs`: the Fig. 2 toy net, the net under test
    on ``settings["dataset"]``, the cube-manifold net) as :mod:`jacnb.lab.dryrun` sees them: SGD
    steps and one training step each. The checks run on the trained nets are not counted."""
    from jacnb.core.models import fully_connected
    from jacnb.lab.datasets import get_dataset
    from jacnb.lab.dryrun import DryConfig, batch_of, random_batch
    from jacnb.lab.timing import make_step

    toy_cfg, net_cfg, cube_cfg = configs(settings)
    ds = get_dataset(settings["dataset"])
    n_in = math.prod(ds.input_shape)
    nets = [  # (config, phase, dataset, n, batch, make net, batch on a device)
        (
            toy_cfg,
            "Fig. 2 toy net",
            "gaussian-mixture",
            TOY["n_train"],
            TOY["batch_size"],
            lambda: fully_connected(2, 2, depth=2, width=TOY["width"]),
            lambda dev: random_batch((2,), 2, TOY["batch_size"], dev),
        ),
        (
            net_cfg,
            "net under test",
            ds.name,
            settings["n_train"],
            settings["batch_size"],
            lambda: fully_connected(
                n_in, ds.n_classes, depth=settings["depth"], width=settings["width"]
            ),
            lambda dev: batch_of(ds, settings["batch_size"], dev),
        ),
        (
            cube_cfg,
            "cube-manifold net",
            "cube-manifold",
            settings["n_train"],
            CUBE["batch_size"],
            lambda: fully_connected(
                CUBE["dim"], CUBE["n_classes"], depth=CUBE["depth"], width=CUBE["width"]
            ),
            lambda dev: random_batch((CUBE["dim"],), CUBE["n_classes"], CUBE["batch_size"], dev),
        ),
    ]
    out = []
    for cfg, phase, name, n, batch, make, data in nets:

        def build(dev: torch.device, make: Any = make, data: Any = data, cfg: Any = cfg) -> Any:
            torch.manual_seed(cfg["seed"])
            x, y = data(dev)
            return make_step(make().to(dev), None, x, y, lr=0.05)

        steps = int(cfg["epochs"]) * math.ceil(n / batch)
        out.append(DryConfig(phase, name, steps, (phase, f"batch {batch}"), build, cfg))
    return out
