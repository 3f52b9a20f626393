"""One prepared check for a machine with a GPU (``make gpu-check``), in under 10 minutes:

1. Table VI on the GPU (Sokolić et al. Sec. VI-D): seconds per SGD step of the MNIST conv net,
   the 784-wide fully connected net and the pre-activation ResNet-18 with every regularizer,
   and each one's ratio to the plain step of the same run
   (:func:`jacnb.chapters.timing.table6_rows`);
2. the dry run of the ``paper`` profile on the GPU (:mod:`jacnb.lab.dryrun`): every chapter's
   configs at the paper's shapes, a few steps each, projected hours and peak memory;

and writes both into one JSON (default ``book/_static/gpu_check.json``), which the timing page
and the page "What the ``paper`` profile costs" show as "measured on <device>" when its device
is a GPU (:mod:`jacnb.lab.gpu_check`).

Without CUDA it runs the same code at a small size (``--small``, automatic there): Table VI at
the ``smoke`` sizes and the dry run of the ``smoke`` profile, so that the script itself is
tested on every machine (tests/test_gpu_check.py)::

    python scripts/gpu_check.py                      # CUDA: paper sizes; else --small
    python scripts/gpu_check.py --small --out /tmp/check.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jacnb.lab import dryrun, gpu_check  # noqa: E402

DEFAULT_OUT = gpu_check.DEFAULT_JSON

#: Table VI at each size: (net, batch, input side, timed steps, warmup).
TABLE6 = {
    "full": [
        ("mnist_convnet", 128, 28, 20, 5),
        ("mnist_fc", 128, 28, 20, 5),
        ("resnet18", 256, 128, 10, 3),
    ],
    "small": [
        ("mnist_convnet", 16, 28, 2, 1),
        ("mnist_fc", 16, 28, 2, 1),
        ("resnet18", 2, 16, 1, 1),
    ],
}


def table6(device: torch.device, size: str) -> list[dict[str, Any]]:
    """Table VI's rows on ``device`` at ``size`` (``"full"`` or ``"small"``): per net and
    regularizer the median seconds per step and the ratio to the plain step of the same run."""
    from jacnb.chapters.timing import table6_rows

    rows = []
    for net, batch, side, repeats, warmup in TABLE6[size]:
        rows += table6_rows(
            net, device, batch=batch, size=side, repeats=repeats, warmup=warmup, rounds=2
        )
    return rows


def dry_run(
    device: torch.device, profile: str, steps: int, chapters: Sequence[str] | None = None
) -> dict[str, Any]:
    """The dry run of ``chapters`` (default: every chapter with a hook) at ``profile``."""
    from jacnb.run import dry_run_chapters

    names = chapters or dry_run_chapters()
    modules = {name: importlib.import_module(f"jacnb.chapters.{name}") for name in names}
    return dryrun.dry_run_all(modules, profile, device, steps=steps)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="small sizes (automatic without CUDA)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON to write ({DEFAULT_OUT})")
    p.add_argument("--chapters", nargs="*", default=None, help="dry run: these chapters only")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    small = args.small or not cuda
    t0 = time.perf_counter()
    print(f"[gpu-check] {dryrun.device_name(device)}; size {'small' if small else 'full'}")
    rows = table6(device, "small" if small else "full")
    for r in rows:
        print(
            f"  Table VI {r['net']:>14} {r['regularizer']:>14}: "
            f"{r['sec_per_batch'] * 1e3:9.2f} ms/step, x{r['ratio']:.2f} the plain step"
        )
    check = dry_run(device, "smoke" if small else "paper", 1 if small else 2, args.chapters)
    result = {
        "device": dryrun.device_name(device),
        "device_type": device.type,
        "small": small,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": dryrun.git_commit(),
        "torch": torch.__version__,
        "table6": rows,
        "dry_run": check,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, out)
    print(dryrun.format_table(dryrun.table(check)))
    print(f"[gpu-check] wrote {out} in {result['wall_seconds']:.0f} s")
    failures = sum(c["failures"] for c in check["chapters"])
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
