"""Profiles: ``smoke`` (seconds, CI), ``cpu`` (scaled down, 2 cores), ``paper`` (GPU).

One code path: a notebook reads its settings with ``get_profile(experiment, profile)`` and runs
the same code at every size. ``profile="auto"`` means ``paper`` when CUDA is available, else
``cpu``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

PROFILES = ("smoke", "cpu", "paper")

#: Each chapter's settings as a ``"base"`` shared by every profile plus per-profile overrides
#: (``smoke``, ``cpu``, ``paper``); a profile's settings are ``base | overrides[profile]``
#: (:func:`settings`). Sizes stated here are the ones the book's pages print.
CHAPTER_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "theory": {
        "base": {"depth": 3, "seeds": [0]},
        "smoke": {"dataset": "digits",
                 "n_train": 300,
                 "n_eval": 40,
                 "width": 64,
                 "epochs": 15,
                 "batch_size": 64,
                 "lr": 0.05,
                 "lr_drop_every": 10,
                 "n_pairs": 8,
                 "ball_samples": 4},
        "cpu": {"dataset": "mnist-10k",
                 "n_train": 2000,
                 "n_eval": 200,
                 "width": 256,
                 "epochs": 30,
                 "batch_size": 128,
                 "lr": 0.05,
                 "lr_drop_every": 20,
                 "n_pairs": 64,
                 "ball_samples": 16},
        "paper": {"dataset": "mnist",
                 "n_train": 5000,
                 "n_eval": 1000,
                 "width": 784,
                 "epochs": 120,
                 "batch_size": 128,
                 "lr": 0.1,
                 "lr_drop_every": 40,
                 "n_pairs": 256,
                 "ball_samples": 32},
    },
    # Sec. VI-A1, Fig. 3 (notebooks/02_fully_connected.ipynb, jacnb.chapters.fully_connected).
    # Selection seeds: "n_select_seeds" seeds from jacnb.lab.gates.selection_seeds(seeds),
    # disjoint from the final seeds. "projection_cell": the (depth, n_train) cell where the
    # projection R_F is trained beside the exact R_F at the same factor (absent: not run).
    # Validation (fig3-select): a selection run fits on the seed's balanced draw of n_train (what a
    # final run of that seed draws) and validates on "n_val" further samples of the same balanced
    # draw from the training pool; "val_fraction" (hold out a fraction of the n_train drawn) only
    # where the pool has no n_train + n_val balanced draw (paper: CIFAR-10 / MNIST at 50000).
    # Measured at cpu with a 25 % split of 400 (100 samples): 1-point steps, ties, weight decay at
    # the grid's lower edge 1e-4, so the cpu grid then started at 1e-5. With 2,000 validation
    # samples, decays 1e-5 and 1e-4 still changed no validation prediction (tied), so the weight
    # decay grids now start at 0 (no decay), a lower edge with nothing below it (gates.edge_reason),
    # and ties are broken by validation cross-entropy (jacnb.lab.selection, issue 13).
    # cpu (issue 13): 30 epochs, lr /10 at 12 and 24, batch 20 so that every run, selection runs
    # included, has >= 400 SGD steps (400 fitted samples: 20 x 30 = 600). lr 0.02: measured at
    # 0.05, 12 of 18 final JR runs (chosen lambda = 1) and 2 selection runs diverged; none at 0.02.
    "fully_connected": {
        "base": {"width_factor": 1, "momentum": 0.9, "n_proj": 1},
        "smoke": {"datasets": ["digits", "cifar10"],
                 "panels": [{"paper": "MNIST", "dataset": "digits", "fallback": None},
                            {"paper": "CIFAR-10", "dataset": "cifar10", "fallback": None}],
                 "n_train": [300, 600],
                 "depths": [2, 3],
                 "seeds": [0, 1],
                 "epochs": 3,
                 "lr": 0.05,
                 "lr_drop_every": 2,
                 "batch_size": 128,
                 "lambdas": {"weight_decay": [0.0001, 0.01], "jacobian": [0.01, 1.0]},
                 "select_n_train": [300],
                 "n_select_seeds": 1,
                 "n_val": 200,
                 "val_fraction": 0.2,
                 "jr_method": "projection",
                 "projection_cell": {"depth": 2, "n_train": 300},
                 "stack_seeds": False},
        "cpu": {"datasets": ["mnist-10k", "cifar10"],
                 "panels": [{"paper": "MNIST", "dataset": "mnist-10k", "fallback": None},
                            {"paper": "CIFAR-10", "dataset": "cifar10", "fallback": None}],
                 "n_train": [400, 1000],
                 "depths": [2, 3, 4],
                 "seeds": [0, 1, 2],
                 "epochs": 30,
                 "lr": 0.02,
                 "lr_drop_every": 12,
                 "batch_size": 20,
                 "lambdas": {"weight_decay": [0.0, 0.0001, 0.001, 0.01, 0.1],
                             "jacobian": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]},
                 "select_n_train": [400],
                 "n_select_seeds": 2,
                 "n_val": 2000,
                 "val_fraction": 0.25,
                 "jr_method": "projection",
                 "projection_cell": {"depth": 2, "n_train": 400},
                 "stack_seeds": False},
        "paper": {"datasets": ["mnist", "cifar10"],
                 "panels": [{"paper": "MNIST", "dataset": "mnist", "fallback": None},
                            {"paper": "CIFAR-10", "dataset": "cifar10", "fallback": None}],
                 "n_train": [5000, 20000, 50000],
                 "depths": [2, 3, 4],
                 "seeds": [0, 1, 2, 3, 4],
                 "epochs": 120,
                 "lr": 0.01,
                 "lr_drop_every": 40,
                 "batch_size": 128,
                 "lambdas": {"weight_decay": [0.0, 1e-05, 0.0001, 0.001, 0.01],
                             "jacobian": [0.01, 0.1, 1.0, 10.0]},
                 "select_n_train": None,
                 "n_select_seeds": 1,
                 "n_val": 5000,
                 "val_fraction": 0.2,
                 "jr_method": "exact",
                 "stack_seeds": "auto"},
    },
    # Sec. VI-A2, Fig. 4 (notebooks/03_weight_norm.ipynb, jacnb.chapters.weight_norm).
    # cpu (issue 13): batch 64, 3 seeds, 1200 samples. Measured: 24 epochs (lr /10 every 8, 456
    # steps) left one L = 5 net at 98.25 % training accuracy (fit gate), so 30 epochs with lr /10
    # every 10 (19 x 30 = 570 steps).
    "weight_norm": {
        "base": {"lr": 0.1, "momentum": 0.9},
        "smoke": {"dataset": "digits",
                 "datasets": ["digits"],
                 "n_train": 300,
                 "batch_size": 128,
                 "depths": [2, 3],
                 "width_factors": [1, 2],
                 "seeds": [0],
                 "epochs": 3,
                 "lr_drop_every": 2,
                 "n_margin": 16,
                 "stack_seeds": False},
        "cpu": {"dataset": "mnist-10k",
                 "datasets": ["mnist-10k"],
                 "n_train": 1200,
                 "depths": [2, 3, 4, 5],
                 "width_factors": [1, 2],
                 "seeds": [0, 1, 2],
                 "epochs": 30,
                 "batch_size": 64,
                 "lr_drop_every": 10,
                 "n_margin": 32,
                 "stack_seeds": False},
        "paper": {"dataset": "mnist",
                 "datasets": ["mnist"],
                 "n_train": 5000,
                 "batch_size": 128,
                 "depths": [2, 3, 4, 5],
                 "width_factors": [1, 2, 3, 4, 5, 6],
                 "seeds": [0, 1, 2, 3, 4],
                 "epochs": 120,
                 "lr_drop_every": 40,
                 "n_margin": 256,
                 "stack_seeds": "auto"},
    },
    # Sec. VI-B, Tables II, III (notebooks/04_convolutional.ipynb, jacnb.chapters.convolutional).
    # One block per table. A panel runs "dataset" if it is on disk, else the first of
    # "fallbacks" that is (labelled "X (stand-in for Y)"), else it says "not run: dataset
    # absent". "image_size": inputs resized to this square side (None: native size).
    # "n_test": class-balanced test subset (None: the whole test set). Factors are chosen on
    # validation data with n_select_seeds seeds from jacnb.lab.gates.selection_seeds (disjoint
    # from "seeds"), at the sizes "select_n_train" (None: every size).
    # "n_val": validation samples drawn from the rest of the training split (else "val_fraction"
    # of the drawn set is held out).
    # cpu optimizer (issue 13): the paper's (SGD, momentum 0.9, lr 0.01 for Table II and 0.1 for
    # Table III, /10 drops), compressed: Table II /10 every 5 of 10 epochs (the paper's second
    # drop falls at the end of the run; a first try with drops after epochs 4 and 8 left 2 of 12
    # nets at 98.9 % training accuracy), Table III every 2 of 6; batch 16 (paper 128) so that
    # Table II's runs, selection runs included, take >= 400 SGD steps. Chosen on training
    # accuracy and step counts, never on test accuracy.
    "convolutional": {
        "base": {},
        "smoke": {"datasets": ["digits", "lared", "cifar10"],
                 "table2": {"panels": [{"paper": "MNIST",
                                        "dataset": "digits",
                                        "fallbacks": [],
                                        "n_train": [200, 400]},
                                       {"paper": "LaRED",
                                        "dataset": "lared",
                                        "fallbacks": [],
                                        "n_train": [200, 400]}],
                            "image_size": None,
                            "n_test": None,
                            "seeds": [0, 1],
                            "epochs": 4,
                            "lr": 0.05,
                            "lr_drop_every": 2,
                            "batch_size": 64,
                            "momentum": 0.9,
                            "lambdas": {"weight_decay": [0.0001, 0.001, 0.01],
                                        "jacobian": [0.01, 0.1, 1.0]},
                            "select_n_train": [200],
                            "n_select_seeds": 1,
                            "val_fraction": 0.2,
                            "jr_method": "projection",
                            "n_proj": 1},
                 "table3": {"panels": [{"paper": "CIFAR-10",
                                        "dataset": "cifar10",
                                        "fallbacks": ["fashion-mnist", "digits"],
                                        "n_train": [50, 100]}],
                            "image_size": 16,
                            "n_test": 100,
                            "seeds": [0, 1],
                            "epochs": 1,
                            "lr": 0.1,
                            "lr_drop_every": 1,
                            "batch_size": 64,
                            "momentum": 0.9,
                            "lambdas": {"jacobian": [0.01, 0.1, 1.0]},
                            "select_n_train": [50],
                            "n_select_seeds": 1,
                            "val_fraction": 0.2,
                            "jr_method": "projection",
                            "n_proj": 1}},
        "cpu": {"datasets": ["mnist-10k", "lared", "cifar10", "fashion-mnist", "digits"],
                 "table2": {"panels": [{"paper": "MNIST",
                                        "dataset": "mnist-10k",
                                        "fallbacks": [],
                                        "n_train": [1000, 2500]},
                                       {"paper": "LaRED",
                                        "dataset": "lared",
                                        "fallbacks": [],
                                        "n_train": [2000, 5000]}],
                            "image_size": None,
                            "n_test": None,
                            "seeds": [0, 1, 2],
                            "epochs": 10,
                            "lr": 0.01,
                            "lr_drop_every": 5,
                            "batch_size": 16,
                            "momentum": 0.9,
                            "lambdas": {"weight_decay": [0.0, 0.0001, 0.001, 0.01],
                                        "jacobian": [0.001, 0.01, 0.1, 1.0]},
                            "select_n_train": [1000],
                            "n_select_seeds": 1,
                            "n_val": 2000,
                            "jr_method": "projection",
                            "n_proj": 1},
                 "table3": {"panels": [{"paper": "CIFAR-10",
                                        "dataset": "cifar10",
                                        "fallbacks": ["fashion-mnist", "digits"],
                                        "n_train": [100, 200]}],
                            "image_size": 16,
                            "n_test": 500,
                            "seeds": [0, 1],
                            "epochs": 6,
                            "lr": 0.1,
                            "lr_drop_every": 2,
                            "batch_size": 32,
                            "momentum": 0.9,
                            "lambdas": {"jacobian": [0.001, 0.01, 0.1]},
                            "select_n_train": [100],
                            "n_select_seeds": 1,
                            "val_fraction": 0.3,
                            "jr_method": "projection",
                            "n_proj": 1}},
        "paper": {"datasets": ["mnist", "lared", "cifar10"],
                 "table2": {"panels": [{"paper": "MNIST",
                                        "dataset": "mnist",
                                        "fallbacks": [],
                                        "n_train": [1000, 5000, 20000, 50000]},
                                       {"paper": "LaRED",
                                        "dataset": "lared",
                                        "fallbacks": [],
                                        "n_train": [2000, 5000, 10000, 50000]}],
                            "image_size": None,
                            "n_test": None,
                            "seeds": [0, 1, 2, 3, 4],
                            "epochs": 120,
                            "lr": 0.01,
                            "lr_drop_every": 40,
                            "batch_size": 128,
                            "momentum": 0.9,
                            "lambdas": {"weight_decay": [0.0, 1e-05, 0.0001, 0.001, 0.01, 0.1],
                                        "jacobian": [0.0001, 0.001, 0.01, 0.1, 1.0]},
                            "select_n_train": None,
                            "n_select_seeds": 1,
                            "val_fraction": 0.2,
                            "jr_method": "exact",
                            "n_proj": 1},
                 "table3": {"panels": [{"paper": "CIFAR-10",
                                        "dataset": "cifar10",
                                        "fallbacks": [],
                                        "n_train": [2500, 10000, 50000]}],
                            "image_size": None,
                            "n_test": None,
                            "seeds": [0, 1, 2],
                            "epochs": 75,
                            "lr": 0.1,
                            "lr_drop_every": 25,
                            "batch_size": 64,
                            "momentum": 0.9,
                            "lambdas": {"jacobian": [0.0001, 0.001, 0.01, 0.1, 1.0]},
                            "select_n_train": None,
                            "n_select_seeds": 1,
                            "val_fraction": 0.2,
                            "jr_method": "exact",
                            "n_proj": 1}},
    },
    # Sec. VI-C, Tables IV, V, Fig. 5 (notebooks/05_resnet.ipynb, jacnb.chapters.resnet).
    # "candidates": the first dataset on disk is used; stand-ins are labelled as such.
    # smoke lists the paper's datasets first too, so that the page's data paths run in CI on
    # small fixtures in their on-disk layouts (tests/core/test_data_layouts.py).
    "resnet": {
        "base": {"seeds": [0]},
        "smoke": {"datasets": ["cifar10", "fashion-mnist", "digits", "imagenet", "mnist-10k"],
                 "table4": {"candidates": ["cifar10", "fashion-mnist", "digits"],
                            "depth": 10,
                            "widen_factor": 1,
                            "image_size": 16,
                            "rows": [{"n_train": 60, "augment": "none", "lam": 1.0},
                                     {"n_train": 120, "augment": "cifar", "lam": 0.1}],
                            "n_test": 100,
                            "schedule": [[0.05, 1]],
                            "batch_size": 60,
                            "weight_decay": 0.0005,
                            "nesterov": True},
                 "table5": {"candidates": ["imagenet", "mnist-10k"],
                            "image_size": 16,
                            "crop": 14,
                            "n_train": 20,
                            "n_test": 20,
                            "schedule": [[0.1, 1], [0.01, 1]],
                            "batch_size": 10,
                            "lam": 1.0,
                            "weight_decay": 0.0001}},
        "cpu": {"datasets": ["cifar10", "fashion-mnist", "imagenet", "mnist-10k"],
                 "table4": {"candidates": ["cifar10", "fashion-mnist"],
                            "depth": 10,
                            "widen_factor": 2,
                            "image_size": 32,
                            "rows": [{"n_train": 500, "augment": "none", "lam": 1.0},
                                     {"n_train": 1000, "augment": "none", "lam": 1.0},
                                     {"n_train": 2000, "augment": "cifar", "lam": 0.1}],
                            "n_test": 2000,
                            "schedule": [[0.01, 1], [0.05, 3], [0.005, 3], [0.0005, 1]],
                            "batch_size": 128,
                            "weight_decay": 0.0005,
                            "nesterov": True},
                 "table5": {"candidates": ["imagenet", "mnist-10k"],
                            "image_size": 32,
                            "crop": 28,
                            "n_train": 1000,
                            "n_test": 1000,
                            "schedule": [[0.1, 3], [0.01, 2], [0.001, 1]],
                            "batch_size": 64,
                            "lam": 1.0,
                            "weight_decay": 0.0001}},
        # paper: 3 seeds, the minimum every Table IV-V claim needs (jacnb.lab.claims,
        # GateSpec.min_seeds); with one seed no claim of the page could be decided. Cost of the
        # two extra seeds, Table V: 4 runs x 90 epochs x 5,005 steps (ImageNet, batch 256) at
        # the paper's own Table VI step times on a Titan X (0.120 s plain, 0.190 s per-layer
        # JR) = 77.6 GPU-hours per seed, so +155 Titan X-hours; Table IV (WRN-22-5): 2 arms x
        # 125 epochs x (20 + 79 + 391) steps = 122,500 steps per seed, no measured GPU step time.
        "paper": {"seeds": [0, 1, 2],
                 "datasets": ["cifar10", "imagenet"],
                 "table4": {"candidates": ["cifar10"],
                            "depth": 22,
                            "widen_factor": 5,
                            "image_size": 32,
                            "rows": [{"n_train": 2500, "augment": "none", "lam": 1.0},
                                     {"n_train": 10000, "augment": "none", "lam": 1.0},
                                     {"n_train": 50000, "augment": "cifar", "lam": 0.1}],
                            "n_test": None,
                            "schedule": [[0.01, 5],
                                         [0.05, 20],
                                         [0.005, 40],
                                         [0.0005, 40],
                                         [5e-05, 20]],
                            "batch_size": 128,
                            "weight_decay": 0.0005,
                            "nesterov": True},
                 "table5": {"candidates": ["imagenet"],
                            "image_size": 128,
                            "crop": 112,
                            "n_train": None,
                            "n_test": None,
                            "schedule": [[0.1, 30], [0.01, 30], [0.001, 30]],
                            "batch_size": 256,
                            "lam": 1.0,
                            "weight_decay": 0.0001,
                            "train_eval_n": 50000}},
    },
    # Sec. VI-D, Table VI (notebooks/06_timing.ipynb, jacnb.chapters.timing). The top-level values
    # apply to every device; a "cpu"/"cuda" block overrides them for the rows timed on that
    # device. "mnist_batch"/"resnet_batch": training batch of the MNIST nets (conv net of
    # Table II, fully connected net of Fig. 3) / ResNet-18 (input 3 x resnet_size^2); "repeats"
    # timed steps per regularizer and repetition after "warmup" untimed ones, in "rounds"
    # interleaved blocks (rounds = repeats: one step per regularizer in turn); "repetitions":
    # how often that is done -- each repetition is one "seed" of the cost claims (>= 3
    # repetitions of >= 20 timed steps decide them); "resnet_repeats"/"resnet_repetitions": the
    # same for ResNet-18 (Table VI's per-layer row; its claim needs >= 3 repetitions of >= 5
    # timed steps). cpu: ResNet-18 at batch 8 on 32x32 inputs (0.7 s per plain step, 2.1 s
    # per per-layer step, one thread on a loaded 2-core machine, 2026-12-07) so that 3
    # repetitions fit the page's time.
    # "threads": torch CPU threads (None: torch's default). One thread at smoke/cpu: on a shared
    # 2-core machine a 2-thread step stalls whenever another process takes a core. cpu: MNIST
    # batch 32 and ResNet-18 at 32x32 keep the page within its share of the 45-minute cpu book
    # (the ratios, not the seconds, are compared with the paper). Fig. 4's cost: max ||J(x)||_2
    # over "fig4_n" images, the naive per-sample loop timed on "naive_n" of them and
    # extrapolated.
    "timing": {
        "base": {"datasets": ["mnist-10k"], "seeds": [0]},
        "smoke": {"mnist_batch": 16,
                 "resnet_batch": 2,
                 "resnet_size": 16,
                 "repeats": 2,
                 "repetitions": 2,
                 "resnet_repeats": 1,
                 "resnet_repetitions": 1,
                 "warmup": 1,
                 "rounds": 2,
                 "threads": 1,
                 "fig4_n": 300,
                 "naive_n": 10},
        "cpu": {"mnist_batch": 32,
                 "resnet_batch": 8,
                 "resnet_size": 32,
                 "repeats": 20,
                 "repetitions": 3,
                 "resnet_repeats": 5,
                 "resnet_repetitions": 3,
                 "warmup": 2,
                 "rounds": 20,
                 "threads": 1,
                 "fig4_n": 10000,
                 "naive_n": 200},
        "paper": {"mnist_batch": 128,
                 "resnet_batch": 256,
                 "resnet_size": 128,
                 "repeats": 30,
                 "repetitions": 5,
                 "resnet_repeats": 30,
                 "resnet_repetitions": 3,
                 "warmup": 5,
                 "rounds": 30,
                 "threads": None,
                 "fig4_n": 10000,
                 "naive_n": 10000,
                 "cpu": {"resnet_batch": 16,
                         "repeats": 20,
                         "repetitions": 3,
                         "resnet_repeats": 10,
                         "resnet_repetitions": 3,
                         "warmup": 2,
                         "rounds": 20,
                         "naive_n": 1000}},
    },
    # Oymak et al. 2019 (notebooks/07_low_rank_jacobian.ipynb, jacnb.chapters.low_rank_jacobian).
    # "seeds": training seeds of the corruption sweep (the bridge runs use the first);
    # "fig3_seeds": mixture draws of Fig. 3; "lr_drop_noisy": epoch at which corrupted-label runs
    # divide the learning rate by 10 (their 800-epoch runs: 760; None: no drop); "n_spectrum":
    # singular values kept for the histogram (their Fig. 4: the top 1000). cpu: the corrupted
    # runs train until they fit their noisy labels (>= 99 % train accuracy, >= 1000 SGD steps:
    # 300 samples, batch 32, 160 epochs = 1600 steps), three seeds, corruption 0 / 50 / 100 %.
    "low_rank": {
        "base": {"lr": 0.1,
                 "momentum": 0.0,
                 "bridge_lam": 0.1,
                 "lr_drop_noisy": None,
                 "fig3_classes": 4,
                 "fig3_clusters": 3,
                 "fig3_sigma": 0.1,
                 "fig3_per_class": [30, 60]},
        "smoke": {"dataset": "digits",
                 "datasets": ["digits"],
                 "seeds": [0],
                 "fig3_seeds": [0, 1, 2],
                 "n_train": 100,
                 "n_test": 100,
                 "arch": "mlp",
                 "width": 32,
                 "out_scale": 0.5,
                 "batch_size": 50,
                 "epochs_clean": 10,
                 "epochs_noisy": 20,
                 "n_checkpoints": 6,
                 "rank": 10,
                 "n_spectrum": 20,
                 "svd_iters": 3,
                 "corruptions": [0.0, 0.5],
                 "bridge_corruptions": [0.5],
                 "bench_n": 30,
                 "fig3_dim": 10,
                 "fig3_hidden": 100},
        "cpu": {"dataset": "mnist-10k",
                 "datasets": ["mnist-10k"],
                 "seeds": [0, 1, 2],
                 "fig3_seeds": [0, 1, 2, 3, 4],
                 "n_train": 300,
                 "n_test": 300,
                 "arch": "mlp",
                 "width": 128,
                 "out_scale": 0.5,
                 "batch_size": 32,
                 "epochs_clean": 100,
                 "epochs_noisy": 160,
                 "n_checkpoints": 12,
                 "rank": 50,
                 "n_spectrum": 50,
                 "svd_iters": 4,
                 "corruptions": [0.0, 0.5, 1.0],
                 "bridge_corruptions": [0.5],
                 "bench_n": 100,
                 "fig3_dim": 20,
                 "fig3_hidden": 200},
        "paper": {"dataset": "cifar10",
                 "datasets": ["cifar10"],
                 "seeds": [0, 1, 2],
                 "fig3_seeds": [0, 1, 2, 3, 4],
                 "n_train": 50000,
                 "n_test": 10000,
                 "arch": "resnet20",
                 "width": 0,
                 "out_scale": 0.1,
                 "batch_size": 128,
                 "epochs_clean": 400,
                 "epochs_noisy": 800,
                 "lr_drop_noisy": 760,
                 "n_checkpoints": 24,
                 "rank": 50,
                 "n_spectrum": 1000,
                 "svd_iters": 4,
                 "corruptions": [0.0, 0.25, 0.5, 0.75, 1.0],
                 "bridge_corruptions": [0.0, 0.5],
                 "bench_n": 500,
                 "fig3_dim": 20,
                 "fig3_hidden": 200},
    },
}


def resolve(spec: dict[str, dict[str, Any]], profile: str) -> dict[str, Any]:
    """``spec["base"] | spec[profile]`` (a deep copy): one chapter's settings at a profile."""
    return copy.deepcopy({**spec["base"], **spec[profile]})


#: Resolved settings per chapter and profile (what :func:`get_profile` copies).
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    name: {p: resolve(spec, p) for p in PROFILES} for name, spec in CHAPTER_SETTINGS.items()
}


def resolve_profile(profile: str) -> str:
    """Validate a profile name; ``"auto"`` becomes ``paper`` on CUDA, else ``cpu``."""
    if profile == "auto":
        return "paper" if torch.cuda.is_available() else "cpu"
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)} (or 'auto')"
        )
    return profile


def get_profile(experiment: str, profile: str) -> dict[str, Any]:
    """The settings of ``experiment`` at ``profile`` (a copy; ``profile`` key included)."""
    if experiment not in SETTINGS:
        raise ValueError(f"unknown experiment {experiment!r}; valid: {sorted(SETTINGS)}")
    name = resolve_profile(profile)
    settings = copy.deepcopy(SETTINGS[experiment][name])
    settings["profile"] = name
    return settings


def settings(chapter: str, profile: str) -> dict[str, Any]:
    """``base | overrides[profile]`` of ``chapter`` (``profile`` may be ``auto``), with its
    ``profile`` key; the same as :func:`get_profile`."""
    return get_profile(chapter, profile)


def provenance(settings: dict[str, Any], dataset: str, **extra: Any) -> str:
    """One line naming profile, dataset, sizes and seeds, printed under every figure and table."""
    keys = [k for k in ("n_train", "n_eval", "epochs", "seeds") if k in settings]
    parts = [f"profile={settings['profile']}", f"dataset={dataset}"]
    parts += [f"{k}={settings[k]}" for k in keys]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return "; ".join(parts)
