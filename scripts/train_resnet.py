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
after a crash resumes every unfinished run at its next epoch and skips finished ones (a damaged
checkpoint is set aside with a warning and the run resumes from the one before). Once a run's
record is stored its checkpoint is removed; ``--keep-weights`` keeps it (the trained weights).
Before training, the store must be writable and have room for the records and checkpoints.
Several jobs may share one store: each run is claimed before it trains (trained once), and a job
waits at the end for runs claimed by the others. ``--bf16``
runs the forward passes under bf16 autocast (recorded in the config: the notebook then needs
``bf16=True`` as a parameter to show those runs).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch.distributed as dist

from jacnb.chapters import resnet as rx
from jacnb.core.distributed import checkpoint_peak_bytes, init_from_env, rank_and_world
from jacnb.lab.store import ResultStore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=int, choices=[4, 5], required=True)
    p.add_argument("--profile", default="paper", help="smoke | cpu | paper | auto")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward passes")
    p.add_argument("--only", type=int, nargs="*", default=None, help="indices of configs to run")
    p.add_argument("--results", default=None, help="result store root (default $JACNB_RESULTS)")
    p.add_argument("--keep-weights", action="store_true", help="keep finished runs' checkpoints")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between looks at busy runs")
    args = p.parse_args(argv)
    device = init_from_env()
    rank, world = rank_and_world()
    settings = rx.settings(args.profile)
    settings["bf16"] = args.bf16
    key = f"table{args.table}"
    name = rx.pick_dataset(settings[key]["candidates"])
    if name is None:
        print(f"{key}: {rx.NOT_RUN} (tried {settings[key]['candidates']})", file=sys.stderr)
        return 2
    make = rx.table4_configs if args.table == 4 else rx.table5_configs
    configs = make(settings, name)
    store = ResultStore(args.results, keep_weights=args.keep_weights)
    todo = [
        (i, c)
        for i, c in enumerate(configs)
        if (args.only is None or i in args.only) and not store.has(c)
    ]
    if rank == 0 and todo:  # fail before training, not after the first epoch
        store.clean_tmp()
        store.check_writable({str(c["experiment"]) for _, c in todo})
        peak = checkpoint_peak_bytes(rx.build_and_data(todo[0][1])[0])
        store.check_room(len(todo), checkpoint_bytes=peak)
    while todo:
        busy = []
        for i, config in todo:
            claim = None
            state = "cached"
            if rank == 0 and not store.has(config):
                claim = store.claim(config)
                state = "busy" if claim is None else "go"
            state = _agree(state)
            if state == "busy":
                busy.append((i, config))
            if state != "go":
                continue
            if rank == 0:
                print(
                    f"[{i + 1}/{len(configs)}] {config['regularizer']} {config['augment']} "
                    f"n_train={config['n_train']} on {name}, {world} process(es)",
                    flush=True,
                )
                claim.__enter__()  # heartbeat while the run trains
            try:
                try:
                    result = rx.run_config(config, store, device=device)
                except Exception as err:  # a divergence is a result; anything else stops
                    if getattr(err, "status", None) != "diverged":
                        raise
                    details = getattr(err, "details", {})
                    result = {**details, "status": "diverged", "reason": str(err)}
                if rank == 0:
                    store.put(config, result)  # before the claim goes: trained once
            finally:
                if rank == 0:
                    claim.release()
            if rank == 0 and result.get("status") == "diverged":
                print(f"    diverged: {result['reason']}", flush=True)
            elif rank == 0:
                print(
                    f"    test acc {result['test_acc']:.4f}, {result['seconds']:.0f} s", flush=True
                )
            if dist.is_initialized():
                dist.barrier()
        todo = busy
        if todo:
            if rank == 0:
                print(f"waiting for {len(todo)} runs claimed by other jobs", flush=True)
            time.sleep(args.poll)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _agree(value: str) -> str:
    """Rank 0's ``value`` on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


if __name__ == "__main__":
    raise SystemExit(main())
