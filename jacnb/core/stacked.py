"""Train several seeds of one small net together, as one vectorised model (``torch.func``).

Fig. 3 and Fig. 4 of Sokolic et al. 2017 (Sec. VI-A) average every configuration over random
draws of the training set and of the initialization. For the small fully connected nets of those
figures one SGD step is a handful of small matrix products, so on a GPU a step is dominated by
kernel launches and Python, not by arithmetic. :func:`train_stacked` trains ``S`` independently
initialised copies of one architecture in a single loop: their parameters are stacked along a new
leading axis (``torch.func.stack_module_state``), and one ``vmap`` over that axis of
``grad(loss)`` (with ``functional_call``) does the work of ``S`` separate steps.

Each member keeps everything a separate run of :func:`jacnb.core.train.train` has:

* its own training set (stacked to ``[S, n, ...]``; all members need the same ``n``) and its own
  batch order (a CPU generator seeded with the member's seed, as :func:`jacnb.core.train.set_seed`);
* its own regularization factor ``lam`` (members may differ in seed and ``lam`` only);
* its own penalty: weight decay ``sum_l ||W_l||_F^2``, or the Jacobian regularizer
  ``R_F = 1/m sum_i ||J(x_i)||_F^2`` of eq. (49) -- exact (sum of the C squared rows of J,
  eq. 50, by ``vjp`` + ``vmap`` over the C one-hot cotangents) or by random projections whose
  directions come from a per-member generator seeded like the global one a separate run uses;
* the SGD-with-momentum update and the step schedule of :class:`jacnb.core.train.TrainConfig`
  (``buf = m * buf + g``, ``w -= lr * buf``; first step ``buf = g``, as ``torch.optim.SGD``);
* the divergence rules of :func:`jacnb.core.train.train`: a member whose loss becomes NaN/inf,
  or exceeds ``diverge_factor`` times its first loss (floored at 1), or whose weights are
  non-finite at the epoch's end, gets the :class:`jacnb.core.train.DivergedError` a separate run
  raises (``status == "diverged"``; for a loss, at the same epoch and step with the same value)
  and leaves the stack; the others go on.

Weight normalization (eq. 45) needs no care: :class:`jacnb.core.models.WeightNormLinear` computes
its
row-normalized ``weight`` from the free parameter ``weight_raw`` at every forward, and
``functional_call`` swaps ``weight_raw``, so the stacked forward applies eq. (45) per member.

The non-finite check runs once per epoch (one device sync per epoch, not per step): a member
that diverged mid-epoch keeps computing NaNs, isolated in its own slice, until the epoch ends.
Its model is not written back. Whether stacking pays depends on the device and the net:
``benchmarks/stacked_training.py`` measures it, and ``jacnb.chapters.fully_connected`` uses it only
where
the profile says so.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, stack_module_state, vjp, vmap

from jacnb.core.regularizers import JacobianRegularizer, WeightDecay
from jacnb.core.train import DivergedError, NonFiniteLossError, TrainConfig, pick_device

__all__ = [
    "penalty_fn",
    "stacked_accuracy",
    "stacked_evaluate",
    "train_stacked",
    "train_stacked_by_size",
    "weight_names",
]

Params = dict[str, Tensor]
Penalty = Callable[[Params, Tensor, Tensor | None], tuple[Tensor, Tensor]]


def weight_names(model: nn.Module) -> list[str]:
    """Parameter names of the weights :func:`jacnb.core.regularizers.weight_matrices` decays, in the
    same order: ``weight`` of linear/conv layers, ``weight_raw`` of weight-normalized ones."""
    names = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
            names.append(prefix + "weight")
        elif hasattr(module, "weight_raw"):
            names.append(prefix + "weight_raw")
    return names


def penalty_fn(base: nn.Module, regularizer: Any) -> Penalty:
    """``(params, x, v) -> (logits, penalty)`` for one member, usable inside ``vmap``.

    ``base`` is the architecture (any device, ``meta`` included); ``regularizer`` one of
    ``None``, :class:`~jacnb.core.regularizers.WeightDecay`,
    :class:`~jacnb.core.regularizers.JacobianRegularizer`. ``v``: the member's unit projection
    directions ``[n_proj, B, C]`` (projection method only, else ``None``).
    """

    def forward(params: Params, x: Tensor) -> Tensor:
        return functional_call(base, params, (x,))

    if regularizer is None:

        def none(params: Params, x: Tensor, v: Tensor | None) -> tuple[Tensor, Tensor]:
            return forward(params, x), x.new_zeros(())

        return none

    if isinstance(regularizer, WeightDecay):
        names = weight_names(base)
        if not names:
            raise ValueError("model has no linear or convolutional weights to decay")

        def weight_decay(params: Params, x: Tensor, v: Tensor | None) -> tuple[Tensor, Tensor]:
            # sum_l ||W_l||_F^2, summed in the order of jacnb.core.regularizers.WeightDecay
            return forward(params, x), sum(params[n].pow(2).sum() for n in names)

        return weight_decay

    if isinstance(regularizer, JacobianRegularizer):
        method, output = regularizer.method, regularizer.output
        if method not in ("exact", "projection"):
            raise ValueError(f"method must be 'exact' or 'projection', got {method!r}")

        def jacobian(params: Params, x: Tensor, v: Tensor | None) -> tuple[Tensor, Tensor]:
            def f(inp: Tensor) -> tuple[Tensor, Tensor]:
                logits = forward(params, inp)
                out = torch.softmax(logits, dim=-1) if output == "softmax" else logits
                return out, logits

            out, vjp_fn, logits = vjp(f, x, has_aux=True)
            n_out = out.shape[-1]
            if method == "exact":  # eq. (50): the C rows g_k(x_i) = e_k^T J(x_i)
                eye = torch.eye(n_out, dtype=out.dtype, device=out.device)
                (g,) = vmap(vjp_fn)(eye[:, None, :].expand(n_out, *out.shape))
                fro = g.transpose(0, 1).pow(2).flatten(2).sum(dim=(1, 2))
            else:  # unbiased: C * mean_p ||v_p^T J(x_i)||^2, v_p uniform on the unit sphere
                assert v is not None
                if v.shape[0] == 1:
                    (g,) = vjp_fn(v[0])
                    g = g.unsqueeze(0)
                else:
                    (g,) = vmap(vjp_fn)(v)
                fro = n_out * g.pow(2).flatten(2).sum(-1).mean(0)
            return logits, fro.mean()  # R_F, eq. (49)

        return jacobian

    raise TypeError(
        f"stacked training supports no regularizer, WeightDecay and JacobianRegularizer; "
        f"got {type(regularizer).__name__}"
    )


def _loss(kind: str, logits: Tensor, y: Tensor) -> Tensor:
    """The losses of :func:`jacnb.core.train._loss`, written so that they run under ``vmap``."""
    if kind == "cross_entropy":
        return F.cross_entropy(logits, y)
    if kind == "squared":
        target = torch.eye(logits.shape[-1], dtype=logits.dtype, device=logits.device)[y]
        return 0.5 * (logits - target).pow(2).sum(-1).mean()
    raise ValueError(f"unknown loss {kind!r}; valid: cross_entropy, squared")


def stacked_evaluate(
    base: nn.Module, params: Params, x: Tensor, y: Tensor, shared: bool, batch_size: int = 1024
) -> tuple[list[float], list[float]]:
    """Accuracy and mean cross-entropy of every member in one pass: ``x, y`` are ``[S, n, ...]``,
    or ``[n, ...]`` when ``shared`` (one test set for all); batched over samples like
    :func:`jacnb.core.train.evaluate`."""
    n_members = next(iter(params.values())).shape[0]
    axis = 0 if shared else 1
    n = x.shape[axis]
    fwd = vmap(lambda p, xb: functional_call(base, p, (xb,)), in_dims=(0, None if shared else 0))
    correct = torch.zeros(n_members, dtype=torch.long, device=x.device)
    total = torch.zeros(n_members, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for s in range(0, n, batch_size):
            xb = x.narrow(axis, s, min(batch_size, n - s))
            yb = y.narrow(axis, s, min(batch_size, n - s))
            logits = fwd(params, xb)  # [S, b, C]
            yy = yb.expand(n_members, -1) if shared else yb
            correct += (logits.argmax(-1) == yy).sum(-1)
            nll = F.cross_entropy(logits.transpose(1, 2), yy, reduction="none")  # [S, b]
            total += nll.sum(-1).double()
    m = max(1, n)
    return [c / m for c in correct.tolist()], [t / m for t in total.tolist()]


def stacked_accuracy(
    base: nn.Module, params: Params, x: Tensor, y: Tensor, shared: bool, batch_size: int = 1024
) -> list[float]:
    """Accuracy of every member (see :func:`stacked_evaluate`)."""
    return stacked_evaluate(base, params, x, y, shared, batch_size)[0]


def _common(configs: Sequence[TrainConfig]) -> TrainConfig:
    """The shared settings; members may differ in ``seed`` and ``lam`` only."""
    first = dataclasses.replace(configs[0], seed=0, lam=0.0)
    for c in configs[1:]:
        if dataclasses.replace(c, seed=0, lam=0.0) != first:
            raise ValueError("stacked members must share every TrainConfig field but seed, lam")
    if len({c.lam > 0 for c in configs}) > 1:
        raise ValueError("stack members with lam > 0 and lam == 0 separately")
    return configs[0]


def train_stacked(
    models: Sequence[nn.Module],
    data: Sequence[tuple[Tensor, Tensor]],
    configs: Sequence[TrainConfig],
    regularizer: Any = None,
    test: Sequence[tuple[Tensor, Tensor]] | tuple[Tensor, Tensor] | None = None,
    device: str | torch.device | None = None,
) -> list[dict[str, Any] | NonFiniteLossError]:
    """Train ``models[i]`` on ``data[i]`` under ``configs[i]``, all ``S`` in one vmapped loop.

    Same result per member as ``train(models[i], *data[i], configs[i], regularizer, *test_i)``
    (to float rounding; see the module docstring for what each member keeps). ``test`` is one
    ``(x, y)`` for all members or one per member. Returns, per member, the dict
    :func:`jacnb.core.train.train` returns (``seconds``: the loop's wall time divided by ``S``), or
    the :class:`~jacnb.core.train.NonFiniteLossError` it would have raised. Finished models are
    trained in place (moved to the device); a diverged one is left as it was.

    Long because the epoch / batch / evaluation structure must mirror
    :func:`jacnb.core.train.train` line by line (the test compares them member by member), which
    reads more directly in one loop than split across helpers.
    """
    n_members = len(models)
    if not (n_members == len(data) == len(configs)) or n_members == 0:
        raise ValueError("models, data and configs must be non-empty and of equal length")
    cfg = _common(configs)
    if regularizer is not None and not isinstance(regularizer, WeightDecay | JacobianRegularizer):
        raise TypeError(f"unsupported regularizer for stacked training: {regularizer!r}")
    sizes = {int(x.shape[0]) for x, _ in data}
    if len(sizes) != 1:
        raise ValueError(f"stacked members need training sets of one size, got {sorted(sizes)}")
    n = sizes.pop()
    dev = pick_device(device)
    for m in models:
        m.to(dev).train()
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(list(models))
    if buffers:
        raise ValueError(f"stacked training supports models without buffers, got {list(buffers)}")
    names = list(params)
    p = {k: v.detach().to(dev) for k, v in params.items()}
    xs = torch.stack([x.to(dev) for x, _ in data])
    ys = torch.stack([y.to(dev) for _, y in data])
    shared_test = isinstance(test, tuple) and len(test) == 2 and isinstance(test[0], Tensor)
    x_te: Tensor | None = None
    y_te: Tensor | None = None
    if test is not None and shared_test:
        x_te, y_te = test[0].to(dev), test[1].to(dev)
    elif test is not None:
        x_te = torch.stack([x.to(dev) for x, _ in test])
        y_te = torch.stack([y.to(dev) for _, y in test])

    use_reg = regularizer is not None and cfg.lam > 0  # as training_step: no penalty at lam = 0
    pen = penalty_fn(base, regularizer if use_reg else None)
    projection = use_reg and isinstance(regularizer, JacobianRegularizer)
    projection = projection and regularizer.method == "projection"
    n_proj = regularizer.n_proj if projection else 0
    if projection and n_proj < 1:
        raise ValueError(f"n_proj must be >= 1, got {n_proj}")
    dtype = next(iter(p.values())).dtype
    lam = torch.tensor([c.lam for c in configs], dtype=dtype, device=dev)

    def member_loss(
        params: Params, x: Tensor, y: Tensor, lam_i: Tensor, v: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        logits, penalty = pen(params, x, v)
        loss = _loss(cfg.loss, logits, y)
        if use_reg:
            loss = loss + lam_i * penalty
        return loss, loss.detach()

    step = vmap(grad(member_loss, has_aux=True), in_dims=(0, 0, 0, 0, 0 if projection else None))
    # batch order: one CPU generator per member (jacnb.core.train.set_seed); projections: one
    # generator per member on the device, seeded like the global one a separate run draws from
    orders = [torch.Generator().manual_seed(c.seed) for c in configs]
    draws = [torch.Generator(device=dev).manual_seed(c.seed) for c in configs] if projection else []
    n_classes = 0
    if projection:
        with torch.no_grad():
            n_classes = int(
                functional_call(base, {k: v[0] for k, v in p.items()}, xs[0, :1]).shape[-1]
            )

    active = list(range(n_members))  # original index of each row of the stack
    out: list[dict[str, Any] | NonFiniteLossError | None] = [None] * n_members
    curves: list[dict[str, list[float]]] = [
        {"epoch": [], "loss": [], "train_acc": [], "test_acc": []} for _ in active
    ]
    epoch_loss = [math.nan] * n_members
    last_test_loss = [math.nan] * n_members
    first_loss = [math.nan] * n_members
    bufs: list[Tensor] | None = None
    epochs = cfg.total_epochs
    n_batches = math.ceil(n / cfg.batch_size)
    start = time.perf_counter()
    for epoch in range(epochs):
        lr = cfg.lr_at(epoch)
        perm = torch.stack([torch.randperm(n, generator=orders[i]) for i in active]).to(dev)
        rows = torch.arange(len(active), device=dev)[:, None]
        losses = torch.empty(n_batches, len(active), dtype=torch.float64, device=dev)
        for b, s in enumerate(range(0, n, cfg.batch_size)):
            idx = perm[:, s : s + cfg.batch_size]
            v = None
            if projection:
                shape = (n_proj, idx.shape[1], n_classes)
                v = torch.stack(
                    [
                        torch.randn(shape, dtype=dtype, device=dev, generator=draws[i])
                        for i in active
                    ]
                )
                v = v / v.norm(dim=-1, keepdim=True)
            grads, loss = step(p, xs[rows, idx], ys[rows, idx], lam, v)
            losses[b] = loss
            g = [grads[k] for k in names]
            w = [p[k] for k in names]
            if cfg.momentum != 0:  # torch.optim.SGD: buf = g, then buf = m buf + g; w -= lr buf
                if bufs is None:
                    bufs = [t.clone() for t in g]
                else:
                    torch._foreach_mul_(bufs, cfg.momentum)
                    torch._foreach_add_(bufs, g)
                torch._foreach_add_(w, bufs, alpha=-lr)
            else:
                torch._foreach_add_(w, g, alpha=-lr)
        values = losses.cpu().tolist()  # the one sync of the epoch
        finite_w = torch.stack([torch.isfinite(p[k]).flatten(1).all(1) for k in names]).all(0)
        finite_w = finite_w.cpu().tolist()
        keep = []
        for row, i in enumerate(active):
            total = 0.0
            advice = (
                "lower the learning rate or the regularization factor "
                f"(lam={configs[i].lam})"
            )
            for b, step_values in enumerate(values):
                value = step_values[row]
                first = values[0][row] if epoch == 0 else first_loss[i]
                first_loss[i] = first
                where = {"epoch": epoch, "step": b, "loss": value}
                if not math.isfinite(value):
                    out[i] = DivergedError(
                        f"loss became {value} at epoch {epoch}; {advice}", **where
                    )
                    break
                limit = cfg.diverge_factor
                if limit is not None and value > limit * max(first, 1.0):
                    out[i] = DivergedError(
                        f"loss {value:.4g} at epoch {epoch} is above diverge_factor={limit:g} x "
                        f"its initial value {first:.4g} (floored at 1); {advice}",
                        **where,
                    )
                    break
                total += value
            else:
                if not finite_w[row]:
                    out[i] = DivergedError(
                        f"non-finite weights after epoch {epoch}; {advice}", epoch=epoch
                    )
                    continue
                keep.append(row)
                epoch_loss[i] = total / n_batches
        if len(keep) < len(active):
            sel = torch.tensor(keep, dtype=torch.long, device=dev)
            p = {k: v.index_select(0, sel) for k, v in p.items()}
            if bufs is not None:
                bufs = [t.index_select(0, sel) for t in bufs]
            xs, ys, lam = xs.index_select(0, sel), ys.index_select(0, sel), lam.index_select(0, sel)
            if x_te is not None and not shared_test:
                x_te, y_te = x_te.index_select(0, sel), y_te.index_select(0, sel)
            active = [active[r] for r in keep]
        if not active:
            break
        if (epoch + 1) % cfg.eval_every == 0 or epoch == epochs - 1:
            train_acc = stacked_accuracy(base, p, xs, ys, shared=False)
            test_acc = None
            if x_te is not None and y_te is not None:
                test_acc, test_loss = stacked_evaluate(base, p, x_te, y_te, shared=shared_test)
                for row, i in enumerate(active):
                    last_test_loss[i] = test_loss[row]
            for row, i in enumerate(active):
                c = curves[i]
                c["epoch"].append(epoch + 1)
                c["loss"].append(epoch_loss[i])
                c["train_acc"].append(train_acc[row])
                if test_acc is not None:
                    c["test_acc"].append(test_acc[row])
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = (time.perf_counter() - start) / n_members
    with torch.no_grad():
        for row, i in enumerate(active):
            for k in names:
                models[i].get_parameter(k).copy_(p[k][row])
            models[i].eval()
            c = curves[i]
            result: dict[str, Any] = {
                "train_acc": c["train_acc"][-1],
                "final_loss": c["loss"][-1],
                "seconds": seconds,
                "device": str(dev),
                "curves": c,
            }
            if c["test_acc"]:
                result["test_acc"] = c["test_acc"][-1]
                result["test_loss"] = last_test_loss[i]  # the final epoch's evaluation
            out[i] = result
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def train_stacked_by_size(
    models: Sequence[nn.Module],
    data: Sequence[tuple[Tensor, Tensor]],
    configs: Sequence[TrainConfig],
    regularizer: Any = None,
    test: Sequence[tuple[Tensor, Tensor]] | tuple[Tensor, Tensor] | None = None,
) -> list[dict[str, Any] | NonFiniteLossError]:
    """:func:`train_stacked` over the members grouped by their number of training samples (one
    vmapped loop per size: the members of one loop share the batch schedule), results in the
    members' order."""
    out: list[Any] = [None] * len(models)
    sizes: dict[int, list[int]] = {}
    for i, (x, _) in enumerate(data):
        sizes.setdefault(int(x.shape[0]), []).append(i)
    for idx in sizes.values():
        sub_test = test if test is None or isinstance(test, tuple) else [test[i] for i in idx]
        res = train_stacked(
            [models[i] for i in idx],
            [data[i] for i in idx],
            [configs[i] for i in idx],
            regularizer,
            sub_test,
        )
        for i, r in zip(idx, res, strict=True):
            out[i] = r
    return out
