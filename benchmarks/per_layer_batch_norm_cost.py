"""Cost of the per-sample convention of the per-layer regularizer (eq. 52) under batch norm.

With batch norm in training mode, :class:`jacnb.regularizers.PerLayerJacobianRegularizer` takes
``g^l`` per sample with the batch statistics held fixed (``batch_norm="fixed"``, the default),
which needs a second forward pass; ``batch_norm="coupled"`` differentiates the training forward
pass as it is. One full SGD step (forward, cross-entropy ``+ lam * R``, backward, update) is timed
for: no regularizer, the coupled and the fixed per-layer regularizer, on a batch-normalized MLP,
a WRN-10-2 (the ``cpu`` profile's Table IV net) and a pre-activation ResNet-18, all on CPU.

Run::

    OMP_NUM_THREADS=1 python -m benchmarks.per_layer_batch_norm_cost [--repeats 7] [--json out]

Median seconds per step over ``--repeats`` timed steps after two warm-up steps; nothing is
asserted. The ResNet chapters (notebooks 05_resnet, 06_timing) quote the measured ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from jacnb.core.models import preact_resnet18, wide_resnet
from jacnb.core.regularizers import PerLayerJacobianRegularizer
from jacnb.core.train import training_step


def bn_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


#: name -> (builder, input shape without batch, batch size)
NETS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "bn_mlp 784-256-256-10": (bn_mlp, (784,), 128),
    "wrn-10-2 32x32": (lambda: wide_resnet(10, 2, 10), (3, 32, 32), 32),
    "preact-resnet18 28x28": (lambda: preact_resnet18(10), (3, 28, 28), 16),
}


def time_steps(
    make: Callable[[], nn.Module],
    shape: tuple[int, ...],
    batch: int,
    reg: PerLayerJacobianRegularizer | None,
    repeats: int,
) -> float:
    torch.manual_seed(0)
    model = make().train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, *shape)
    y = torch.randint(10, (batch,))
    times = []
    for k in range(repeats + 2):
        t0 = time.perf_counter()
        training_step(model, x, y, opt, regularizer=reg, lam=0.0 if reg is None else 0.1)
        if k >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = []
    for name, (make, shape, batch) in NETS.items():
        plain = time_steps(make, shape, batch, None, args.repeats)
        coupled = time_steps(
            make, shape, batch, PerLayerJacobianRegularizer(batch_norm="coupled"), args.repeats
        )
        fixed = time_steps(make, shape, batch, PerLayerJacobianRegularizer(), args.repeats)
        rows.append(
            {
                "net": name,
                "batch": batch,
                "threads": torch.get_num_threads(),
                "plain s/step": plain,
                "coupled s/step": coupled,
                "fixed s/step": fixed,
                "coupled / plain": coupled / plain,
                "fixed / plain": fixed / plain,
                "fixed / coupled": fixed / coupled,
            }
        )
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return df


if __name__ == "__main__":
    main()
