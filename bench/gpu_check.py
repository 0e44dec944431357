"""The GPU check: sweeper's GPU claims measured in one run, printed as one table.

On synthetic iNaturalist-sized data (10 classes, 224 px, ~10k JPEGs in the ImageFolder
layout, written once and cached on disk) with a randomly initialised resnet50, no network:

(a) the seeds' 22-run head sweep (sweeps/head_bayes.yaml's space) through sweeper end to
    end, `sweeper create` + `sweeper agent --gpus all`, whole processes timed (goal < 2 min);
(b) full fine-tuning images/s of `trainer.train` (its last epoch) against the ceiling on
    the same device: the same model, batch, precision and memory format stepping on
    tensors already on the device (goal >= 80 %);
(c) `sweeper agent --per-gpu 2` against `--per-gpu 1` on small runs (resnet18, full
    fine-tuning, one epoch, 64 px, a 2k-image subset): runs per minute;
(d) the tests that need CUDA (tests/gpu/): AMP, channels_last, the OOM message, slot pinning.

    bash bench/gpu_check.sh                                        # one GPU, <= 8 min
    bash bench/gpu_check.sh --device cpu --images 200 --size 32    # the CPU, tiny (tests do this)

The data goes under `--data-dir` (default .sweeper/gpu-check/, reused by the next run);
the sweeps' homes go under a temp folder. Goals are for a GPU: on the CPU the table shows
that every part runs, not how fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import REPO, SEED, Setup, head_space, sweeper_way
from sweeper.paths import Home
from trainer import TrainConfig, train
from trainer.loop import Precision, resolve_device
from trainer.models import build_model

#: Written last into a finished data folder.
DATA_STAMP = "stamp.json"
#: Share of each class's images in train/ (the rest are val/, the test set).
TRAIN_SHARE = 0.8


def _write_class(folder: Path, label: int, classes: int, train: int, test: int, size: int) -> None:
    """One class's JPEGs: its own colour and stripe angle, uint8 noise, its own seed."""
    rng = np.random.default_rng(label)
    yy, xx = np.mgrid[0:size, 0:size]
    angle = np.pi * label / classes
    stripes = 40 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.15)
    pattern = np.clip(rng.uniform(40, 175, 3) + stripes[..., None], 0, 205).astype(np.uint8)
    for split, count in (("train", train), ("val", test)):
        out = folder / split / f"class{label:02d}"
        out.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise = rng.integers(0, 50, pattern.shape, dtype=np.uint8)
            Image.fromarray(pattern + noise).save(out / f"{i:05d}.jpg", quality=90)


def synthetic_data(root: Path, images: int, size: int, classes: int = 10) -> Path:
    """An ImageFolder of `images` JPEGs at `size` px under `root`, reused when already there.

    Not bench/feature_cache.py's `write_dataset`: its float64 noise, one image after the
    other, takes minutes for 10k images at 224 px; here each class is written by its own
    process with uint8 noise. Written into a temp folder and renamed into place.
    """
    stamp = {"images": images, "size": size, "classes": classes, "version": 1}
    folder = root / f"synthetic-{classes}c-{images}-{size}px"
    if (folder / DATA_STAMP).is_file() and json.loads((folder / DATA_STAMP).read_text()) == stamp:
        return folder
    per_class = max(2, images // classes)
    train_count = max(2, round(per_class * TRAIN_SHARE))
    test_count = max(1, per_class - train_count)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root))
    try:
        with ProcessPoolExecutor(max_workers=min(classes, os.cpu_count() or 1)) as pool:
            jobs = [
                pool.submit(_write_class, staging, c, classes, train_count, test_count, size)
                for c in range(classes)
            ]
            for job in jobs:
                job.result()
        (staging / DATA_STAMP).write_text(json.dumps(stamp))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def random_backbone(path: Path, model: str) -> Path:
    """A randomly initialised `model` checkpoint: head and partial modes need weights, and
    with no network there are no ImageNet ones (the cost per image is the same)."""
    if not path.is_file():
        torch.manual_seed(SEED)
        scratch = TrainConfig(data_dir="-", model=model, weights="none", mode="scratch")
        torch.save(build_model(scratch, 1000).state_dict(), path)
    return path


def throughput(config: TrainConfig, steps: int) -> tuple[float, float]:
    """(trainer images/s of its last epoch, ceiling images/s) for full fine-tuning `config`.

    The ceiling is the trainer's own step (model, Adam, autocast, grad scaler, memory
    format) on one batch of random tensors made on the device: no data loading at all.
    """
    result = train(config)
    trainer_rate = result.history[-1].images_per_second

    device = resolve_device(config.device)
    model = build_model(config, 10).to(device)
    memory_format = torch.channels_last if device.type == "cuda" and config.channels_last else None
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    model.train()
    precision = Precision.choose(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.dtype == torch.float16)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(config.batch_size, 3, config.image_size, config.image_size, device=device)
    if memory_format is not None:
        images = images.contiguous(memory_format=memory_format)
    labels = torch.randint(0, 10, (config.batch_size,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = criterion(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(3):  # warm-up: cuDNN picks its kernels on the first steps
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return trainer_rate, steps * config.batch_size / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cuda_tests(out: Path) -> tuple[int, int, int]:
    """Run tests/gpu/ with pytest; return (passed, failed, skipped)."""
    report = out / "cuda-tests.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "tests" / "gpu"), f"--junitxml={report}"],
        cwd=REPO, check=False, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    if not report.is_file():
        return 0, 1, 0
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return total - failed - skipped, failed, skipped


def render(rows: Sequence[tuple[str, str, str]]) -> str:
    """The Markdown table: check, measured, goal.

    >>> print(render([("(x) a check", "1.0 s", "< 2 s")]))
    | check | measured | goal |
    |---|---|---|
    | (x) a check | 1.0 s | < 2 s |
    """
    lines = ["| check | measured | goal |", "|---|---|---|"]
    lines += [f"| {check} | {measured} | {goal} |" for check, measured, goal in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu.")
    parser.add_argument("--images", type=int, default=10_000, help="Synthetic images, all classes.")
    parser.add_argument("--size", type=int, default=224, help="Image side in pixels.")
    parser.add_argument("--model", default="resnet50", help="(a) and (b)'s model.")
    parser.add_argument("--batch", type=int, default=128, help="(b)'s batch size.")
    parser.add_argument("--epochs", type=int, default=2, help="(b)'s epochs; the last is timed.")
    parser.add_argument("--steps", type=int, default=30, help="(b)'s ceiling: timed steps.")
    parser.add_argument("--runs", type=int, default=22, help="(a)'s runs.")
    parser.add_argument("--small-runs", type=int, default=8, help="(c)'s runs per setting.")
    parser.add_argument("--small-images", type=int, default=2000, help="(c)'s data set size.")
    parser.add_argument("--small-size", type=int, default=64, help="(c)'s image side.")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers.")
    parser.add_argument("--data-dir", type=Path, default=Path(".sweeper/gpu-check"))
    parser.add_argument("--wandb", default="offline", help="sweeper's WANDB_MODE.")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    gpus = "all" if device.type == "cuda" else "none"
    workers = args.num_workers if args.num_workers is not None else min(8, os.cpu_count() or 1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"gpu check on {name} ({os.cpu_count()} CPUs), torch {torch.__version__}", flush=True)

    began = time.perf_counter()
    data = synthetic_data(args.data_dir, args.images, args.size)
    small = synthetic_data(args.data_dir, args.small_images, args.small_size)
    print(f"data: {data} and {small}, {time.perf_counter() - began:.0f} s", flush=True)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sweeper-gpu-check-") as temp:
        root = Path(temp)
        weights = random_backbone(args.data_dir / f"{args.model}-random.pt", args.model)
        common = {"num_workers": workers, "augment": "none", "device": args.device}

        print("(a) the seeds' head sweep through sweeper", flush=True)
        head = Setup(
            fixed={"data_dir": str(data), "model": args.model, "weights": str(weights),
                   "image_size": args.size, "mode": "head", **common},
            space=head_space(),
            runs=args.runs,
        )  # fmt: skip
        (root / "a").mkdir()
        sweep = sweeper_way(head, root / "a", gpus=gpus, wandb=args.wandb)
        rows.append(
            (
                f"(a) {args.runs}-run head sweep, {args.model}, sweeper create + agent --gpus {gpus}",
                f"{sweep.wall_seconds:.1f} s, {len(sweep.trials)} runs, {sweep.distinct} distinct",
                "< 120 s",
            )
        )

        print("(b) full fine-tuning against the ceiling", flush=True)
        full = TrainConfig(
            data_dir=str(data), model=args.model, weights=str(weights), mode="full",
            image_size=args.size, batch_size=args.batch, epochs=args.epochs, patience=0,
            cache_dir=str(Home(root / "a" / "sweeper").cache_dir), **common,
        )  # fmt: skip
        trainer_rate, ceiling = throughput(full, args.steps)
        rows.append(
            (
                f"(b) full fine-tuning images/s, {args.model}, batch {args.batch}",
                f"{trainer_rate:.1f} of {ceiling:.1f} ({100 * trainer_rate / ceiling:.0f} %)",
                ">= 80 %",
            )
        )

        print("(c) --per-gpu 2 against --per-gpu 1", flush=True)
        # One epoch each: the seeds' space but epochs, 12 configs.
        small_space = {n: v for n, v in head_space().items() if n != "epochs"}
        backbone = random_backbone(args.data_dir / "resnet18-random.pt", "resnet18")
        small_setup = Setup(
            fixed={"data_dir": str(small), "model": "resnet18", "weights": str(backbone),
                   "image_size": args.small_size, "mode": "full", "epochs": 1, **common},
            space=small_space,
            runs=args.small_runs,
        )  # fmt: skip
        per_minute: dict[int, float] = {}
        for per_gpu in (1, 2):
            home = root / f"c{per_gpu}"
            home.mkdir()
            result = sweeper_way(small_setup, home, gpus=gpus, per_gpu=per_gpu, wandb=args.wandb)
            per_minute[per_gpu] = 60 * len(result.trials) / result.wall_seconds
            rows.append(
                (
                    f"(c) small runs, --per-gpu {per_gpu}",
                    f"{per_minute[per_gpu]:.1f} runs/min ({len(result.trials)} runs)",
                    "" if per_gpu == 1 else f"> --per-gpu 1 ({per_minute[2] / per_minute[1]:.2f}x)",
                )
            )

        print("(d) the tests that need CUDA", flush=True)
        passed, failed, skipped = cuda_tests(root)
        rows.append(
            (
                "(d) CUDA tests (tests/gpu/)",
                f"{passed} passed, {failed} failed, {skipped} skipped",
                "all pass",
            )
        )
    print(f"\ngpu check took {time.perf_counter() - began:.0f} s\n")
    print(render(rows))


if __name__ == "__main__":
    main()
