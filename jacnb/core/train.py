"""The one training loop of the book (Sokolic et al. 2017, Sec. VI settings).

SGD with momentum, a step learning-rate schedule given as ``(rate, epochs)`` phases or
``lr`` with ``lr_drop_every``, mini-batches, any regularizer ``reg(model, x)`` added as
``lam * reg``, tqdm progress, and a hard stop on divergence (:class:`DivergedError`: a
non-finite loss, gradient or weight at any step, or a loss above ``diverge_factor`` times its
initial value). Data lives on the device.
"""

from __future__ import annotations

import math
import numbers
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def progress_off(enabled: bool) -> bool:
    """``disable=`` for a progress bar: off when ``enabled`` is false or ``$TQDM_DISABLE`` is set
    (``jacnb.book`` sets it while it executes the pages, so no bar reaches the HTML; a live
    notebook or a terminal shows the bars, as widgets through ``tqdm.auto`` in JupyterLab).
    Used by :func:`train`, :func:`jacnb.lab.store.run_grid` and the chapters' grids."""
    flag = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return (not enabled) or flag not in ("", "0", "false", "no")


class DivergedError(RuntimeError):
    """Training diverged: a non-finite loss, gradient or weight, or a loss that grew past
    ``diverge_factor`` times its initial value.

    ``status == "diverged"`` and ``details`` (epoch, step, loss) let
    :func:`jacnb.lab.store.run_grid` store the run as ``diverged`` with this message as reason.
    """

    status = "diverged"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.details = details


#: The former name of :class:`DivergedError` (it covers every divergence, not only NaN losses).
NonFiniteLossError = DivergedError


@dataclass
class TrainConfig:
    """Optimisation settings. ``schedule``: ``[(lr, epochs), ...]`` phases (overrides the rest).

    ``drop_last``: drop each epoch's final incomplete batch (when at least one full batch
    precedes it, so every epoch takes a step). ``None`` (default): drop it when the model has
    batch norm, whose batch statistics on a handful of samples are noise and which refuses a
    batch of one (BatchNorm1d) or silently normalizes one sample by itself (BatchNorm2d).
    """

    epochs: int = 120
    batch_size: int = 128
    lr: float = 0.01
    lr_drop_every: int = 40
    lr_drop_factor: float = 0.1
    momentum: float = 0.9
    lam: float = 0.0
    schedule: Sequence[tuple[float, int]] | None = None
    seed: int = 0
    loss: str = "cross_entropy"
    #: Stop when a mini-batch loss exceeds this multiple of the first one (``None``: never).
    #: The first loss is floored at 1 (a resumed run starts near zero): from a fresh
    #: initialisation cross-entropy starts at ~ln C (2.3 for 10 classes) and the squared loss of
    #: one-hot targets near 1, and SGD that learns stays below that start after its first steps,
    #: so 100x is two orders of magnitude beyond any transient spike; ``lr=1e4`` runs sit at
    #: 10^3-10^10 x.
    diverge_factor: float | None = 100.0
    eval_every: int = 1
    progress: bool = True
    extra: dict = field(default_factory=dict)
    drop_last: bool | None = None

    def __post_init__(self) -> None:
        _check_number("lam", self.lam, minimum=0.0, what="regularization factor")
        if self.schedule is None:
            _check_size("epochs", self.epochs)
        else:
            if not self.schedule:
                raise ValueError("TrainConfig.schedule must have at least one (lr, epochs) phase")
            for i, (rate, n) in enumerate(self.schedule):
                _check_number(f"schedule[{i}] lr", rate, positive=True)
                _check_size(f"schedule[{i}] epochs", n)
        _check_size("batch_size", self.batch_size)
        _check_number("lr", self.lr, positive=True, what="learning rate")
        _check_size("lr_drop_every", self.lr_drop_every)
        _check_number("lr_drop_factor", self.lr_drop_factor, positive=True, maximum=1.0)
        _check_number("momentum", self.momentum, minimum=0.0, below=1.0)
        _check_size("eval_every", self.eval_every)
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):
            raise ValueError(f"TrainConfig.seed must be an integer, got {self.seed!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.diverge_factor is not None:
            _check_number("diverge_factor", self.diverge_factor, minimum=1.0)
        if not isinstance(self.progress, bool):
            raise ValueError(f"TrainConfig.progress must be a bool, got {self.progress!r}")
        if self.drop_last is not None and not isinstance(self.drop_last, bool):
            raise ValueError(f"TrainConfig.drop_last must be a bool or None, got {self.drop_last}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"TrainConfig.extra must be a dict, got {self.extra!r}")

    def lr_at(self, epoch: int) -> float:
        if self.schedule is not None:
            done = 0
            for rate, n in self.schedule:
                done += n
                if epoch < done:
                    return rate
            return self.schedule[-1][0]
        return self.lr * self.lr_drop_factor ** (epoch // self.lr_drop_every)

    @property
    def total_epochs(self) -> int:
        return sum(n for _, n in self.schedule) if self.schedule is not None else self.epochs


#: The keys of an experiment config that are training settings (copied into every config, so
#: that they enter its result-store key).
TRAIN_KEYS = ("epochs", "lr", "lr_drop_every", "batch_size", "momentum")


def train_config(
    config: Mapping[str, Any], *, evaluate_once: bool = False, **overrides: Any
) -> TrainConfig:
    """The :class:`TrainConfig` of an experiment config: its :data:`TRAIN_KEYS`, ``lam`` and
    ``seed``, no progress bar; ``evaluate_once``: evaluate after the last epoch only
    (``eval_every=epochs``: for runs whose records keep only final metrics, the same trained
    net); ``overrides`` replace any field (e.g. ``lam=0.0`` for a baseline)."""
    fields: dict[str, Any] = {k: config[k] for k in TRAIN_KEYS}
    fields.update(lam=config.get("lam", 0.0), seed=config["seed"], progress=False)
    if evaluate_once:
        fields["eval_every"] = config["epochs"]
    fields.update(overrides)
    return TrainConfig(**fields)


def _check_size(name: str, value: object) -> None:
    """A positive integer (bools and integral floats such as ``2.0`` are not sizes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")


def _check_number(
    name: str,
    value: object,
    positive: bool = False,
    minimum: float | None = None,
    what: str = "",
    maximum: float | None = None,
    below: float | None = None,
) -> None:
    """A finite real number (``> 0`` if ``positive``, ``>= minimum``, ``<= maximum`` and
    ``< below`` where given)."""
    label = f"TrainConfig.{name}" + (f" ({what})" if what else "")
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)  # type: ignore[arg-type]
    if not ok:
        raise ValueError(f"{label} must be a finite number, got {value!r}")
    if positive and value <= 0:  # type: ignore[operator]
        raise ValueError(f"{label} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise ValueError(f"{label} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:  # type: ignore[operator]
        raise ValueError(f"{label} must be <= {maximum}, got {value!r}")
    if below is not None and value >= below:  # type: ignore[operator]
        raise ValueError(f"{label} must be < {below}, got {value!r}")


def nonfinite_state(model: nn.Module) -> str | None:
    """Why ``model``'s gradients or weights are not all finite after a step, else ``None``.

    Exact (``isfinite`` on every entry: a huge but finite value is not flagged) and a single
    device sync for both checks.
    """
    params = list(model.parameters())
    if not params:
        return None
    grads = [p.grad for p in params if p.grad is not None]
    checks = [torch.stack([torch.isfinite(g).all() for g in grads]).all()] if grads else []
    checks.append(torch.stack([torch.isfinite(p.detach()).all() for p in params]).all())
    finite = torch.stack(checks).tolist()
    if grads and not finite[0]:
        return "non-finite gradient (inf or NaN entries)"
    if not finite[-1]:
        return "non-finite weights (inf or NaN entries)"
    return None


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` on ``(x, y)`` in one pass (model in eval
    mode during it). The cross-entropy is the continuous companion of the accuracy on a
    validation set: the factor selection of :mod:`jacnb.lab.selection` breaks exact accuracy
    ties with it (notebooks 02 and 04)."""
    was = model.training
    model.eval()
    correct, total = 0, 0.0
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            logits, yb = model(x[s : s + batch_size]), y[s : s + batch_size]
            correct += int((logits.argmax(1) == yb).sum())
            total += float(F.cross_entropy(logits, yb, reduction="sum"))
    model.train(was)
    n = max(1, x.shape[0])
    return correct / n, total / n


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Fraction of correctly classified samples (model in eval mode during the pass)."""
    return evaluate(model, x, y, batch_size)[0]


def cross_entropy_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Mean cross-entropy of ``model`` on ``(x, y)`` (see :func:`evaluate`)."""
    return evaluate(model, x, y, batch_size)[1]


#: The training losses :class:`TrainConfig` knows.
LOSSES = ("cross_entropy", "squared")


def _loss(kind: str, logits: Tensor, y: Tensor) -> Tensor:
    if kind == "cross_entropy":
        return F.cross_entropy(logits, y)
    if kind == "squared":
        return 0.5 * (logits - F.one_hot(y, logits.shape[1]).to(logits.dtype)).pow(2).sum(1).mean()
    raise ValueError(f"unknown loss {kind!r}; valid: cross_entropy, squared")


def training_step(
    model: nn.Module,
    xb: Tensor,
    yb: Tensor,
    optimizer: torch.optim.Optimizer,
    loss_kind: str = "cross_entropy",
    regularizer: Callable[[nn.Module, Tensor], Tensor] | None = None,
    lam: float = 0.0,
) -> float:
    """One SGD step on ``loss + lam * reg``; returns the loss value (not stepped if non-finite).

    A regularizer with ``logits_and_penalty(model, x)`` shares the forward pass with the loss
    (the Jacobian regularizers need the forward graph anyway); a plain callable
    ``reg(model, x)`` runs its own.
    """
    if regularizer is not None and lam > 0 and hasattr(regularizer, "logits_and_penalty"):
        logits, penalty = regularizer.logits_and_penalty(model, xb)
        loss = _loss(loss_kind, logits, yb) + lam * penalty
    else:
        loss = _loss(loss_kind, model(xb), yb)
        if regularizer is not None and lam > 0:
            loss = loss + lam * regularizer(model, xb)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value
    optimizer.zero_grad(set_to_none=True)
    # Only the parameters: the Jacobian regularizers differentiate through an input that
    # requires grad, and a plain backward() would also compute d loss / d x (one wasted
    # input-gradient pass through the first layer).
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    loss.backward(inputs=params)
    optimizer.step()
    return value


def train(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    config: TrainConfig,
    regularizer: Callable[[nn.Module, Tensor], Tensor] | None = None,
    x_test: Tensor | None = None,
    y_test: Tensor | None = None,
    device: str | torch.device | None = None,
    desc: str = "train",
) -> dict:
    """Train ``model`` in place; return curves and final metrics as a JSON-able dict.

    ``x_test``/``y_test``: a held-out set evaluated every ``eval_every`` epochs (both or
    neither, with as many labels as samples, not empty: an empty set has no accuracy, and a
    ``test_acc`` of 0.0 from it would be reported as a result). The training set must not be
    empty either.

    Long because it is the book's one training loop, kept in one function so that it reads in
    the order it runs (checks, seed, batches, step, divergence, evaluation) and so that the
    stacked loop of :func:`jacnb.core.stacked.train_stacked` can mirror it line by line."""
    if (x_test is None) != (y_test is None):
        raise ValueError("train() needs both x_test and y_test, or neither")
    if x_train.shape[0] == 0 or x_train.shape[0] != y_train.shape[0]:
        raise ValueError(
            f"train() needs a non-empty training set with one label per sample, got "
            f"{x_train.shape[0]} samples and {y_train.shape[0]} labels"
        )
    if (
        x_test is not None
        and y_test is not None
        and (x_test.shape[0] == 0 or x_test.shape[0] != y_test.shape[0])
    ):
        raise ValueError(
            f"train() got an empty or mismatched test set ({x_test.shape[0]} samples, "
            f"{y_test.shape[0]} labels): there is no test accuracy to report; pass a non-empty "
            "held-out set, or none"
        )
    dev = pick_device(device)
    gen = set_seed(config.seed)
    model.to(dev)
    x_train, y_train = x_train.to(dev), y_train.to(dev)
    if x_test is not None and y_test is not None:
        x_test, y_test = x_test.to(dev), y_test.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr_at(0), momentum=config.momentum)
    n = x_train.shape[0]
    drop_last = config.drop_last
    if drop_last is None:
        drop_last = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # batch starts; the final incomplete batch is dropped only behind a full one
    end = n - n % config.batch_size if drop_last and n > config.batch_size else n
    curves: dict[str, list[float]] = {"epoch": [], "loss": [], "train_acc": [], "test_acc": []}
    start = time.perf_counter()
    first_loss: float | None = None
    test_loss = math.nan
    advice = f"lower the learning rate or the regularization factor (lam={config.lam})"
    epochs = config.total_epochs
    bar = tqdm(range(epochs), desc=desc, disable=progress_off(config.progress), mininterval=10.0)
    for epoch in bar:
        for group in opt.param_groups:
            group["lr"] = config.lr_at(epoch)
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        total, batches = 0.0, 0
        for s in range(0, end, config.batch_size):
            idx = perm[s : s + config.batch_size]
            value = training_step(
                model, x_train[idx], y_train[idx], opt, config.loss, regularizer, config.lam
            )
            where = {"epoch": epoch, "step": batches, "loss": value}
            if not math.isfinite(value):
                raise DivergedError(f"loss became {value} at epoch {epoch}; {advice}", **where)
            first_loss = value if first_loss is None else first_loss
            limit = None if config.diverge_factor is None else config.diverge_factor
            if limit is not None and value > limit * max(first_loss, 1.0):
                raise DivergedError(
                    f"loss {value:.4g} at epoch {epoch} is above diverge_factor={limit:g} x its "
                    f"initial value {first_loss:.4g} (floored at 1); {advice}",
                    **where,
                )
            total += value
            batches += 1
        # Weights (and the last step's gradients) once per epoch, as the stacked loop does: a
        # step that leaves non-finite weights makes the next step's loss non-finite (caught
        # above), and this check catches the epoch's last step. Per step it cost about a
        # third of a cpu-profile fully connected run (11.7 s against 8.0 s without it).
        broken = nonfinite_state(model)
        if broken is not None:
            raise DivergedError(
                f"{broken} after epoch {epoch}; {advice}", epoch=epoch, step=batches - 1,
                loss=value,
            )
        if (epoch + 1) % config.eval_every == 0 or epoch == epochs - 1:
            curves["epoch"].append(epoch + 1)
            curves["loss"].append(total / batches)
            curves["train_acc"].append(accuracy(model, x_train, y_train))
            if x_test is not None and y_test is not None:
                test_acc, test_loss = evaluate(model, x_test, y_test)
                curves["test_acc"].append(test_acc)
            bar.set_postfix(
                loss=f"{total / batches:.4f}",
                train_acc=f"{curves['train_acc'][-1]:.3f}",
                refresh=False,
            )
    model.eval()
    result = {
        "train_acc": curves["train_acc"][-1],
        "final_loss": curves["loss"][-1],
        "seconds": time.perf_counter() - start,
        "device": str(dev),
        "curves": curves,
    }
    if curves["test_acc"]:
        result["test_acc"] = curves["test_acc"][-1]
        result["test_loss"] = test_loss  # of the last evaluation, the final epoch's
    return result
