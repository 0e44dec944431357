"""Experiment: how much a demo source task transfers to the demo target task.

Builds the demo datasets with the given settings, pretrains the demo backbone on the
source task (demo/pretrain.py, as `make demo` does), then trains a fixed set of target
configs, one run each: a scratch CNN (Part A) and the resnet18 fine-tuned from the
backbone in head, partial and full mode (Part B). It prints each run's test accuracy on
the target's held-out images and the gap to the CNN. Single runs: expect ±3-5 points.

    .venv/bin/python bench/demo_transfer.py                         # the shipped demo
    .venv/bin/python bench/demo_transfer.py --letter-images 150 --pretrain-epochs 4 \\
        --target-per-class 10 --val-fraction 0.2

Everything goes under --workdir (a temp folder by default); a backbone already trained
there with the same settings is reused.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.dataset import DemoDataSpec, build_demo_data
from demo.pretrain import PretrainSpec, pretrain_backbone
from trainer import TrainConfig, train

#: The target configs: one Part A CNN and Part B's modes at the lr each did best with.
TARGET_RUNS: dict[str, dict[str, Any]] = {
    "Part A cnn": {
        "model": "cnn",
        "mode": "scratch",
        "filters": 32,
        "filter_growth": 2.0,
        "dense_units": 128,
        "lr": 1e-3,
        "epochs": 30,
        "patience": 10,
    },
    "head lr 1e-2": {"mode": "head", "lr": 1e-2},
    "partial layer3 lr 1e-3": {"mode": "partial", "unfreeze_from": "layer3", "lr": 1e-3},
    "full lr 3e-4": {"mode": "full", "lr": 3e-4},
    "full lr 1e-3": {"mode": "full", "lr": 1e-3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data, pretrain = DemoDataSpec(), PretrainSpec()
    parser.add_argument("--workdir", type=Path, default=None, help="Default: a temp folder.")
    parser.add_argument("--source-copies", type=int, default=data.source_copies)
    parser.add_argument("--letters", default=data.source_letters, help="Source letter classes.")
    parser.add_argument("--letter-images", type=int, default=data.letter_images)
    parser.add_argument("--target-per-class", type=int, default=data.target_train_per_class)
    parser.add_argument("--val-fraction", type=float, default=0.5, help="Of the labelled images.")
    parser.add_argument("--pretrain-epochs", type=int, default=pretrain.epochs)
    parser.add_argument("--pretrain-lr", type=float, default=pretrain.lr)
    parser.add_argument("--pretrain-batch", type=int, default=pretrain.batch_size)
    parser.add_argument("--scheduler", default=pretrain.scheduler, help="none, step or cosine.")
    parser.add_argument("--target-batch", type=int, default=16, help="Part B's batch size.")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="demo-transfer-"))
    started = time.perf_counter()
    built = build_demo_data(
        workdir / "data",
        DemoDataSpec(
            source_copies=args.source_copies,
            source_letters=args.letters,
            letter_images=args.letter_images,
            target_train_per_class=args.target_per_class,
        ),
    )
    n_source = sum(1 for _ in (built.source / "train").rglob("*.png"))
    print(f"data: {n_source} source training images, {time.perf_counter() - started:.0f} s")
    backbone = pretrain_backbone(
        built.root,
        workdir / "backbone.pt",
        PretrainSpec(
            epochs=args.pretrain_epochs,
            lr=args.pretrain_lr,
            batch_size=args.pretrain_batch,
            scheduler=args.scheduler,
        ),
    )
    print(
        f"pretrain: source test accuracy {backbone.source_test_accuracy:.3f}, "
        f"{backbone.wall_seconds:.0f} s{'' if backbone.trained else ' (reused)'}"
    )

    common: dict[str, Any] = {
        "data_dir": str(built.target),
        "val_fraction": args.val_fraction,
        "image_size": 32,
        "augment": "none",
        "num_workers": 0,
        "cache_dir": str(workdir / "cache"),
    }
    part_b: dict[str, Any] = {
        "model": "resnet18",
        "weights": str(backbone.path),
        "batch_size": args.target_batch,
        "epochs": 20,
        "patience": 5,
    }
    print(f"\n{'target run':<24}{'test acc':>10}{'vs Part A':>11}{'wall':>8}")
    baseline: float | None = None
    for name, config in TARGET_RUNS.items():
        extra = {"weights": "none", "batch_size": 16} if config["mode"] == "scratch" else part_b
        result = train(TrainConfig(**common, **extra, **config))
        accuracy = result.test_accuracy or 0.0
        baseline = accuracy if baseline is None else baseline
        gap = f"{100 * (accuracy - baseline):+.1f} pp" if name != "Part A cnn" else ""
        print(f"{name:<24}{100 * accuracy:>9.1f}%{gap:>11}{result.wall_seconds:>7.1f}s")


if __name__ == "__main__":
    main()
