"""Crash-safe, multi-device training loop for the ResNet experiments (Sokolic et al. 2017,
Sec. VI-C: Table IV, Table V, Fig. 5).

:func:`fit` trains a model with SGD + momentum under a ``[(lr, epochs), ...]`` schedule, adding
``lam * R`` with the per-layer Jacobian regularizer ``R`` of eq. (52) when asked, and

* runs unchanged on one device or on many: if ``torch.distributed`` is initialised (e.g. by
  ``torchrun``, see :func:`init_from_env` and ``scripts/train_resnet.py``) the model is wrapped
  in :class:`~torch.nn.parallel.DistributedDataParallel` and every global batch is split over the
  ranks (rank ``r`` takes samples ``r, r + W, ...`` of it), so gradients are averaged over the
  same global batch as on one device;
* writes a checkpoint (model, optimizer, curves, epoch) atomically after every epoch (temp file
  ``.tmp-<name>-*.pt`` beside it, fsync, rename; the previous epoch's checkpoint is kept as
  ``<name>.prev``) and, when started again with the same checkpoint path, resumes at the next
  epoch. A checkpoint that does not load is named in a warning, moved to ``.quarantine/`` beside
  it, and training resumes from the previous one (or from scratch); a killed write's temp file is
  removed when the run starts again. The final checkpoint stays (a rerun trains nothing more);
  :meth:`jacnb.results.ResultStore.put` removes it once the run's record is stored, unless the
  store keeps weights. All randomness of an
  epoch (data order, augmentation, the regularizer's random output indices ``pi(i)``) is drawn
  from generators seeded by ``(seed, epoch, rank)``, so a resumed run is identical to an
  uninterrupted one;
* can run the forward pass under bf16 autocast (``bf16=True``; the loss and penalty are
  accumulated in float32).

Data are either in-memory tensors ``(x, y)`` (CIFAR-10 and the stand-ins) or any map-style
:class:`torch.utils.data.Dataset` returning ``(image_tensor, label)`` (ImageNet folders), read
with a :class:`~torch.utils.data.DataLoader` over the batches this module chooses.

Augmentations (applied on tensors, per batch, on the device):

* ``"cifar"`` -- that of Zagoruyko & Komodakis [35] used for "50000 + aug." in Table IV: 4-pixel
  reflection padding, random 32x32 crop, random horizontal flip;
* ``"crop_colour"`` -- that of [1] used in Table V: random ``crop x crop`` crops (112 of 128) and
  colour augmentation (random brightness, contrast and saturation scaling, +-0.4) plus random
  horizontal flip; evaluation then uses the central crop.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from jacnb.core.regularizers import PerLayerJacobianRegularizer
from jacnb.core.train import DivergedError, nonfinite_state, pick_device

__all__ = [
    "FitConfig",
    "SimulatedCrash",
    "augment_batch",
    "center_crop",
    "fit",
    "init_from_env",
    "rank_and_world",
    "topk_correct",
]

AUGMENTATIONS = ("none", "cifar", "crop_colour")


class SimulatedCrash(RuntimeError):
    """Raised by :func:`fit` after ``crash_after_epoch`` epochs (to test resuming)."""


@dataclass
class FitConfig:
    """Settings of one training run (Sec. VI-C).

    ``schedule``: ``[(lr, epochs), ...]`` phases, e.g. Table IV's
    ``[(0.01, 5), (0.05, 20), (0.005, 40), (0.0005, 40), (0.00005, 20)]``.
    ``regularizer``: ``"none"`` or ``"per_layer"`` (eq. 52) with factor ``lam``.
    ``batch_size`` is the *global* batch (split over ranks under DDP).
    ``normalize``: per-channel ``(mean, std)`` applied after augmentation ([35]'s data
    normalization), or ``None``.
    ``train_eval_n``: evaluate the training accuracy on the first ``n`` samples of a fixed seeded
    permutation of the training set (``None``: all of it). ``eval_final_only``: evaluate after
    the last epoch only (the curves hold NaN accuracies for the other epochs; loss and learning
    rate are recorded every epoch).
    """

    schedule: Sequence[tuple[float, int]]
    batch_size: int = 128
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    regularizer: str = "none"
    lam: float = 0.0
    augment: str = "none"
    crop: int | None = None
    normalize: tuple[Sequence[float], Sequence[float]] | None = None
    seed: int = 0
    bf16: bool = False
    eval_batch: int = 256
    train_eval_n: int | None = None
    eval_final_only: bool = False
    num_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.regularizer not in ("none", "per_layer"):
            raise ValueError(f"regularizer must be 'none' or 'per_layer', got {self.regularizer!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if self.augment == "crop_colour" and not self.crop:
            raise ValueError("augment='crop_colour' needs crop (e.g. 112 for 128x128 images)")
        if self.lam < 0 or self.batch_size < 1 or not self.schedule:
            raise ValueError("need lam >= 0, batch_size >= 1 and a non-empty schedule")

    @property
    def epochs(self) -> int:
        return sum(int(n) for _, n in self.schedule)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of (0-based) ``epoch`` under the schedule."""
        done = 0
        for rate, n in self.schedule:
            done += int(n)
            if epoch < done:
                return float(rate)
        return float(self.schedule[-1][0])


# ---------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when ``torch.distributed`` is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(backend: str | None = None) -> torch.device:
    """Initialise ``torch.distributed`` from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) if present; return this rank's device.

    NCCL with one GPU per local rank when CUDA is available, else gloo on CPU. Without those
    variables nothing is initialised (single-process run).
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return device


def _all_reduce_sum(values: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# Augmentation (tensor ops, per batch)
# ---------------------------------------------------------------------------------------------


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size x size`` crop of a batch ``[B, C, H, W]``."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def _random_crops(x: Tensor, size: int, gen: torch.Generator) -> Tensor:
    b, _, h, w = x.shape
    tops = torch.randint(h - size + 1, (b,), generator=gen).tolist()
    lefts = torch.randint(w - size + 1, (b,), generator=gen).tolist()
    return torch.stack(
        [
            x[i, :, t : t + size, s : s + size]
            for i, (t, s) in enumerate(zip(tops, lefts, strict=True))
        ]
    )


def _random_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _colour_jitter(x: Tensor, gen: torch.Generator, strength: float = 0.4) -> Tensor:
    """Random brightness, contrast and (for RGB) saturation scaling in ``[1-s, 1+s]``."""
    b = x.shape[0]

    def factors() -> Tensor:
        u = torch.rand(b, generator=gen) * 2 * strength + 1 - strength
        return u.to(x.device, x.dtype)[:, None, None, None]

    x = x * factors()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors() + mean
    if x.shape[1] == 3:
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = (x - grey) * factors() + grey
    return x.clamp(0.0, 1.0)


def augment_batch(x: Tensor, kind: str, gen: torch.Generator, crop: int | None = None) -> Tensor:
    """Apply the augmentation ``kind`` (see the module docstring) to a batch in ``[0, 1]``."""
    if kind == "none":
        return x
    if kind == "cifar":
        padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
        return _random_flip(_random_crops(padded, x.shape[-1], gen), gen)
    if kind == "crop_colour":
        if crop is None:
            raise ValueError("crop_colour needs a crop size")
        return _colour_jitter(_random_flip(_random_crops(x, crop, gen), gen), gen)
    raise ValueError(f"unknown augmentation {kind!r}; valid: {AUGMENTATIONS}")


def _eval_view(x: Tensor, cfg: FitConfig) -> Tensor:
    return center_crop(x, cfg.crop) if cfg.augment == "crop_colour" and cfg.crop else x


def _normalize(x: Tensor, cfg: FitConfig) -> Tensor:
    if cfg.normalize is None:
        return x
    mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in cfg.normalize)
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


# ---------------------------------------------------------------------------------------------
# Data access: tensors or a map-style Dataset, batches chosen here
# ---------------------------------------------------------------------------------------------

Data = tuple[Tensor, Tensor] | Dataset


def _size(data: Data) -> int:
    return int(data[0].shape[0]) if isinstance(data, tuple) else len(data)  # type: ignore[arg-type]


def _batches(data: Data, batches: list[list[int]], num_workers: int):
    """Yield ``(x, y)`` for each list of indices in ``batches`` (CPU tensors)."""
    if isinstance(data, tuple):
        x, y = data
        for idx in batches:
            t = torch.as_tensor(idx, dtype=torch.long)
            yield x[t], y[t]
        return
    loader = DataLoader(data, batch_sampler=batches, num_workers=num_workers)
    for xb, yb in loader:
        yield xb, torch.as_tensor(yb)


def topk_correct(logits: Tensor, y: Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-``k`` logits, for each ``k``."""
    out = []
    for k in ks:
        k = min(k, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        out.append(int((top == y[:, None]).any(dim=1).sum()))
    return out


def evaluate(
    model: nn.Module, data: Data, cfg: FitConfig, device: torch.device, n: int | None = None
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy on (the first ``n`` of a seeded permutation of) ``data``.

    Under DDP each rank evaluates a shard and the counts are summed over ranks.
    """
    rank, world = rank_and_world()
    total = _size(data)
    order = list(range(total))
    if n is not None and n < total:
        order = torch.randperm(total, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        order = sorted(order[:n])
    mine = order[rank::world]
    batches = [mine[s : s + cfg.eval_batch] for s in range(0, len(mine), cfg.eval_batch)]
    was = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad(), _autocast(device, cfg.bf16):
        for xb, yb in _batches(data, batches, cfg.num_workers):
            xb = _normalize(_eval_view(xb.to(device), cfg), cfg)
            yb = yb.to(device)
            top1, top5 = topk_correct(model(xb).float(), yb)
            counts += torch.tensor([top1, top5, yb.shape[0]], dtype=torch.float64)
    model.train(was)
    counts = _all_reduce_sum(counts.to(device) if device.type == "cuda" else counts).cpu()
    return float(counts[0] / max(1.0, counts[2])), float(counts[1] / max(1.0, counts[2]))


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


_TMP = ".tmp-"


def previous_checkpoint(path: str | Path) -> Path:
    """Where the checkpoint before the latest one is kept (``<name>.prev``)."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` to ``path`` atomically (temp file beside it, fsync, rename), keeping the
    checkpoint it replaces as :func:`previous_checkpoint`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP}{path.name}-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_peak_bytes(model: nn.Module) -> int:
    """Disk a run of :func:`fit` needs for its checkpoints at their peak: the weights, buffers
    and SGD momentum (one tensor per weight), three times (current, previous, and the one being
    written). For :meth:`jacnb.results.ResultStore.check_room`."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return 3 * (2 * weights + buffers)


def quarantine(path: Path, why: str) -> Path | None:
    """Move a damaged checkpoint into ``.quarantine/`` beside it, with a warning naming it."""
    folder = path.parent / ".quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None
    warnings.warn(
        f"damaged checkpoint {path} ({why}) moved to {dest}; training resumes from the "
        "previous checkpoint or from scratch",
        UserWarning,
        stacklevel=3,
    )
    return dest


_CHECKPOINT_KEYS = ("config", "model", "optimizer", "curves", "epoch", "seconds", "batches")


def load_checkpoint(path: str | Path, set_aside: bool = True) -> dict[str, Any] | None:
    """The checkpoint dict at ``path`` (``None`` if there is none, or if it is damaged: then,
    with ``set_aside``, it is quarantined with a warning naming it)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS):
            raise ValueError(f"not a checkpoint of fit (keys {_CHECKPOINT_KEYS} expected)")
    except Exception as err:  # noqa: BLE001 - truncated, empty, foreign: set aside, go on
        if set_aside:
            quarantine(path, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
        return None
    return state


def _resume_state(path: Path, cfg_dict: dict[str, Any], rank: int) -> dict[str, Any] | None:
    """The latest loadable checkpoint of this config (the current one, else the previous)."""
    for candidate in (path, previous_checkpoint(path)):
        state = load_checkpoint(candidate, set_aside=rank == 0)
        if state is not None and state.get("config") == cfg_dict:
            return state
    return None


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _epoch_seed(cfg: FitConfig, epoch: int, stream: int) -> int:
    return (cfg.seed * 1_000_003 + epoch * 101 + stream) % (2**62)


def fit(
    model: nn.Module,
    train_data: Data,
    test_data: Data | None,
    cfg: FitConfig,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    crash_after_epoch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place under ``cfg``; return final metrics and per-epoch curves.

    Resumes from ``checkpoint`` if it holds a checkpoint of an earlier, unfinished run of the
    same config (the epoch after the last saved one is run next); writes it after every epoch.
    ``crash_after_epoch=k`` raises :class:`SimulatedCrash` right after epoch ``k``'s checkpoint
    is written (tests). Result keys: ``train_acc``, ``test_acc`` (top-1), ``train_top5``,
    ``test_top5``, ``ge`` (= train - test, top-1, as in Table V), ``curves`` (per epoch:
    ``epoch``, ``loss``, ``lr``, ``train_top1``, ``train_top5``, ``test_top1``, ``test_top5``),
    ``seconds``, ``sec_per_batch``, ``resumed_from``, ``device``, ``world_size``.

    Long because resume, the DDP/autocast epoch loop and the per-epoch checkpoint share the
    loop's state (optimizer, scheduler, scaler, curves); splitting them would pass that state
    around for no reader's gain.
    """
    rank, world = rank_and_world()
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    model.to(dev)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr_at(0),
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    reg = PerLayerJacobianRegularizer() if cfg.regularizer == "per_layer" and cfg.lam > 0 else None
    curves: dict[str, list[float]] = {
        k: [] for k in ("epoch", "loss", "lr", "train_top1", "train_top5", "test_top1", "test_top5")
    }
    start_epoch, seconds, batches_done = 0, 0.0, 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    cfg_dict = asdict(cfg)
    if ckpt_path is not None:
        if rank == 0:  # the single writer of this checkpoint: remove its killed writes
            for tmp in ckpt_path.parent.glob(f"{_TMP}{ckpt_path.name}-*"):
                tmp.unlink(missing_ok=True)
            state = _resume_state(ckpt_path, cfg_dict, rank)
        _barrier()  # rank 0 has set damaged checkpoints aside before the others read
        if rank != 0:
            state = _resume_state(ckpt_path, cfg_dict, rank)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            curves = state["curves"]
            start_epoch = int(state["epoch"])
            seconds = float(state["seconds"])
            batches_done = int(state["batches"])
    resumed_from = start_epoch
    n = _size(train_data)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        data_gen = torch.Generator().manual_seed(_epoch_seed(cfg, epoch, 0))
        aug_gen = torch.Generator().manual_seed(_epoch_seed(cfg, epoch, 1 + rank))
        if reg is not None:
            reg.generator = torch.Generator(device=dev).manual_seed(
                _epoch_seed(cfg, epoch, 1000 + rank)
            )
        perm = torch.randperm(n, generator=data_gen).tolist()
        global_batches = [perm[s : s + cfg.batch_size] for s in range(0, n, cfg.batch_size)]
        mine = [b[rank::world] for b in global_batches]
        mine = [b for b in mine if b]  # every rank must take the same number of steps
        if len(mine) != len(global_batches):
            raise ValueError(f"batch_size {cfg.batch_size} too small for {world} ranks")
        net.train()
        total = torch.zeros(2, dtype=torch.float64)
        for xb, yb in _batches(train_data, mine, cfg.num_workers):
            xb = augment_batch(xb.to(dev), cfg.augment, aug_gen, cfg.crop)
            xb, yb = _normalize(xb, cfg), yb.to(dev)
            with _autocast(dev, cfg.bf16):
                if reg is not None:
                    logits, penalty = reg.logits_and_penalty(net, xb)
                    loss = F.cross_entropy(logits.float(), yb) + cfg.lam * penalty.float()
                else:
                    loss = F.cross_entropy(net(xb).float(), yb)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise DivergedError(
                    f"loss became {value} at epoch {epoch}; lower lr or lam={cfg.lam}",
                    epoch=epoch,
                    loss=value,
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += torch.tensor([float(loss.detach()) * len(yb), len(yb)], dtype=torch.float64)
            batches_done += 1
        seconds += time.perf_counter() - t0
        broken = nonfinite_state(model)
        if broken is not None:
            raise DivergedError(f"{broken} after epoch {epoch}; lower lr or lam={cfg.lam}")
        total = _all_reduce_sum(total.to(dev) if dev.type == "cuda" else total).cpu()
        if world > 1:  # BN running statistics: take rank 0's, as DDP does at each forward
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        tr1, tr5, te1, te5 = (math.nan,) * 4
        if not cfg.eval_final_only or epoch == cfg.epochs - 1:
            tr1, tr5 = evaluate(model, train_data, cfg, dev, cfg.train_eval_n)
            if test_data is not None:
                te1, te5 = evaluate(model, test_data, cfg, dev)
        for key, value in zip(
            curves,
            (epoch + 1, float(total[0] / total[1]), cfg.lr_at(epoch), tr1, tr5, te1, te5),
            strict=True,
        ):
            curves[key].append(value)
        if log is not None and rank == 0:
            log(
                f"epoch {epoch + 1}/{cfg.epochs} loss {curves['loss'][-1]:.4f} "
                f"train {tr1:.3f} test {te1:.3f}"
            )
        if ckpt_path is not None:
            if rank == 0:
                state = {
                    "config": cfg_dict,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "curves": curves,
                    "epoch": epoch + 1,
                    "seconds": seconds,
                    "batches": batches_done,
                }
                _save_atomic(state, ckpt_path)
            _barrier()
        if crash_after_epoch is not None and epoch + 1 == crash_after_epoch:
            raise SimulatedCrash(f"simulated crash after epoch {epoch + 1}")
    if ckpt_path is not None and rank == 0:  # the final checkpoint is the one to keep
        previous_checkpoint(ckpt_path).unlink(missing_ok=True)
    model.eval()
    tr1, tr5 = curves["train_top1"][-1], curves["train_top5"][-1]
    te1, te5 = curves["test_top1"][-1], curves["test_top5"][-1]
    return {
        "train_acc": tr1,
        "test_acc": te1,
        "train_top5": tr5,
        "test_top5": te5,
        "ge": tr1 - te1,
        "curves": curves,
        "seconds": seconds,
        "sec_per_batch": seconds / max(1, batches_done),
        "resumed_from": resumed_from,
        "device": str(dev),
        "world_size": world,
    }
