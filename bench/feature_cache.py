"""Benchmark: a 22-config head-tuning sweep, the seed way vs with sweeper's caches.

The seed way trains every run from the JPEG files: each run decodes every image and
every epoch runs the frozen backbone (`feature_cache: false`, which also turns off the
decoded-image cache). The cached way runs the same configs with `feature_cache: true`
and an empty cache folder: the first run decodes the images and computes the backbone
features once, every later run reads them and trains only the head. Both halves run
here, in one process, on the same data and machine; the ratio is of their wall times.

The configs are the seeds' grid, epochs {5, 10} x dropout {0, 0.2, 0.3} x batch_size
{32, 64} x lr {1e-3, 1e-4}: the first 22 of its 24 combinations. When the seed way is
too slow to run whole, `--seed-configs K` runs K of the 22 spread over the grid and
scales its time by the ratio of epochs (printed as an estimate).

    .venv/bin/python bench/feature_cache.py                      # CPU: resnet18 at 64 px
    .venv/bin/python bench/feature_cache.py --model resnet50 --image-size 224 \\
        --per-class 100 --device cuda --seed-configs 22          # a GPU

Without network there are no ImageNet weights: the backbone is a randomly initialised
checkpoint written to the temp folder (the cost per image is the same), unless
`--weights imagenet` finds torchvision's file in torch hub's cache.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer import TrainConfig, TrainResult, train
from trainer.models import build_model

GRID = {"epochs": (5, 10), "dropout": (0.0, 0.2, 0.3), "batch_size": (32, 64), "lr": (1e-3, 1e-4)}
SWEEP_RUNS = 22


def sweep_configs() -> list[dict[str, float]]:
    """The first 22 combinations of the seeds' grid, in grid order."""
    names = list(GRID)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*GRID.values())][
        :SWEEP_RUNS
    ]


def spread(configs: list[dict[str, float]], count: int) -> list[dict[str, float]]:
    """`count` configs taken round-robin from each (epochs, batch_size) group, so a subset
    measures both epoch counts and both batch sizes."""
    groups: dict[tuple[float, float], list[dict[str, float]]] = {}
    for config in configs:
        groups.setdefault((config["epochs"], config["batch_size"]), []).append(config)
    ordered = [group[i] for i in range(len(configs)) for group in groups.values() if i < len(group)]
    return ordered[: max(1, count)]


def write_dataset(root: Path, classes: int, per_class: int, test_per_class: int, size: int) -> None:
    """JPEGs in the iNaturalist layout: a colour and stripe pattern per class, plus noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, count in (("train", per_class), ("val", test_per_class)):
        for label in range(classes):
            folder = root / split / f"class{label:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            base = rng.uniform(40, 215, 3)
            angle = np.pi * label / classes
            stripes = 40 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.15)
            for i in range(count):
                pixels = base + stripes[..., None] + rng.normal(0, 50, (size, size, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                    folder / f"{i:04d}.jpg", quality=90
                )


def run_sweep(
    base: TrainConfig, configs: list[dict[str, float]], label: str
) -> tuple[float, list[TrainResult]]:
    """Train every config; return total wall seconds and the results."""
    results: list[TrainResult] = []
    started = time.perf_counter()
    for number, overrides in enumerate(configs, 1):
        run_start = time.perf_counter()
        result = train(base.model_copy(update=overrides))
        results.append(result)
        print(
            f"  {label} {number:2d}/{len(configs)} {overrides} val {result.best_val_accuracy:.3f} "
            f"({time.perf_counter() - run_start:.2f}s)",
            flush=True,
        )
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--source-size", type=int, default=0, help="JPEG side in pixels (default 2.5 x image size)"
    )
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument(
        "--per-class", type=int, default=40, help="train/ images per class (train + val)"
    )
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--weights", default="random", help="'random' (a temp checkpoint) or 'imagenet'"
    )
    parser.add_argument(
        "--seed-configs", type=int, default=6, help="seed-way configs to run (22 = all)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 on a shared CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    configs = sweep_configs()
    seed_configs = spread(configs, args.seed_configs)
    with tempfile.TemporaryDirectory(prefix="sweeper-bench-") as temp:
        root = Path(temp)
        source_size = args.source_size or int(args.image_size * 2.5)
        write_dataset(root / "data", args.classes, args.per_class, args.test_per_class, source_size)
        weights = "imagenet"
        if args.weights == "random":
            weights = str(root / "backbone.pt")
            torch.manual_seed(0)
            scratch = TrainConfig(data_dir="-", model=args.model, weights="none", mode="scratch")
            torch.save(build_model(scratch, 1000).state_dict(), weights)
        base = TrainConfig(
            data_dir=str(root / "data"), model=args.model, weights=weights, mode="head",
            image_size=args.image_size, num_workers=0, patience=0, device=args.device,
            cache_dir=str(root / "cache"),
        )  # fmt: skip
        images = args.classes * (args.per_class + args.test_per_class)
        print(
            f"{args.model} at {args.image_size} px from {source_size} px JPEGs, {args.classes} classes, "
            f"{images} images; device {args.device}, {torch.get_num_threads()} CPU threads"
        )

        print(f"seed way (feature_cache false): {len(seed_configs)} of {len(configs)} configs")
        seed_time, seed_results = run_sweep(
            base.model_copy(update={"feature_cache": False}), seed_configs, "seed"
        )
        print(f"cached way (decoded-image + feature cache, cold at start): {len(configs)} configs")
        cached_time, cached_results = run_sweep(base, configs, "cached")

    all_epochs = sum(int(c["epochs"]) for c in configs)
    seed_epochs = sum(int(c["epochs"]) for c in seed_configs)
    seed_total = seed_time * all_epochs / seed_epochs
    same = [
        cached_results[configs.index(c)].best_val_accuracy == r.best_val_accuracy
        for c, r in zip(seed_configs, seed_results, strict=True)
    ]
    print()
    print(
        f"seed way:   {seed_time:8.1f} s for {len(seed_configs)} runs ({seed_epochs} epochs)",
        end="",
    )
    if len(seed_configs) < len(configs):
        print(
            f" -> estimated {seed_total:.1f} s for all {len(configs)} runs ({all_epochs} epochs, scaled by epochs)"
        )
    else:
        print()
    print(
        f"cached way: {cached_time:8.1f} s for {len(configs)} runs "
        f"(first run {cached_results[0].wall_seconds:.2f} s, later runs median "
        f"{statistics.median(r.wall_seconds for r in cached_results[1:]):.2f} s)"
    )
    print(f"speed-up:   {seed_total / cached_time:.1f}x (goal >= 50x on CPU)")
    print(
        f"same best val accuracy in both ways for the configs run both ways: {sum(same)}/{len(same)}"
    )


if __name__ == "__main__":
    main()
