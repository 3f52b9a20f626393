"""Train the ResNets of Sokolic et al. 2017, Sec. VI-C (Table IV or Table V) at any profile, on
one device or many, writing the same result-store records the notebook reads.

Single device::

    python scripts/train_resnet.py --table 5 --profile paper

Many GPUs / nodes (DistributedDataParallel; the batch size is the global one)::

    torchrun --nproc_per_node=8 scripts/train_resnet.py --table 5 --profile paper
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \
        scripts/train_resnet.py --table 4 --profile paper

Each run writes a checkpoint after every epoch beside its record (``<key>.train.pt`` under
``$JACNB_RESULTS``, which must be a shared folder for multi-node runs); rerunning the same command
after a crash resumes every unfinished run at its next epoch and skips finished ones. ``--bf16``
runs the forward passes under bf16 autocast (recorded in the config: the notebook then needs
``bf16=True`` as a parameter to show those runs).
"""

from __future__ import annotations

import argparse
import sys

import torch.distributed as dist

from jacnb.chapters import resnet as rx
from jacnb.core.distributed import init_from_env, rank_and_world
from jacnb.lab.settings import get_profile
from jacnb.lab.store import ResultStore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=int, choices=[4, 5], required=True)
    p.add_argument("--profile", default="paper", help="smoke | cpu | paper | auto")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward passes")
    p.add_argument("--only", type=int, nargs="*", default=None, help="indices of configs to run")
    p.add_argument("--results", default=None, help="result store root (default $JACNB_RESULTS)")
    args = p.parse_args(argv)
    device = init_from_env()
    rank, world = rank_and_world()
    settings = get_profile("resnet", args.profile)
    settings["bf16"] = args.bf16
    key = f"table{args.table}"
    name = rx.pick_dataset(settings[key]["candidates"])
    if name is None:
        print(f"{key}: {rx.NOT_RUN} (tried {settings[key]['candidates']})", file=sys.stderr)
        return 2
    make = rx.table4_configs if args.table == 4 else rx.table5_configs
    configs = make(settings, name)
    store = ResultStore(args.results)
    for i, config in enumerate(configs):
        if args.only is not None and i not in args.only:
            continue
        if store.has(config):
            continue
        if rank == 0:
            print(
                f"[{i + 1}/{len(configs)}] {config['regularizer']} {config['augment']} "
                f"n_train={config['n_train']} on {name}, {world} process(es)",
                flush=True,
            )
        result = rx.run_config(config, store, device=device)
        if rank == 0:
            store.put(config, result)
            print(f"    test acc {result['test_acc']:.4f}, {result['seconds']:.0f} s", flush=True)
        if dist.is_initialized():
            dist.barrier()
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
