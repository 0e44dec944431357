"""How long a slot sits idle between runs: with and without the warm spare worker.

    python bench/agent_gap.py [--runs 3] [--run-seconds 8]

For each setting, one agent with one CPU slot trains a grid of `--runs` configs with a
bench trainer (this module, imported by the workers as `agent_gap:fake` / `agent_gap:model`)
that stamps the wall clock when it is called, when its first training step is done and
when it returns. Two gaps per pair of consecutive runs, medians printed:

- overhead: previous run returned -> next run's trainer called (worker exit, claim, hand
  the run id over, config, wandb.init; plus interpreter start and imports without a spare);
- to first step: previous run returned -> next run's first optimizer step done (the
  overhead plus building the model: nothing for `fake`, a ResNet50 for `model`).

The spare has the previous run's duration (`--run-seconds`) to warm up, as it would
have a whole training run in a real sweep. `cold / warm` is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The workers import this module as their trainer: like `trainer.loop`, it imports torch
# and the model code up front, so a warm spare has paid for them before its run.
import torch

from trainer.models import build_model
from trainer.result import TrainResult

STAMP_DIR_ENV = "AGENT_GAP_STAMPS"
RUN_SECONDS_ENV = "AGENT_GAP_RUN_SECONDS"


def _stamp(config: Any, **times: float) -> None:
    folder = Path(os.environ[STAMP_DIR_ENV])
    run_id = Path(config.checkpoint_dir).name
    (folder / f"{run_id}.json").write_text(json.dumps(times))


def _result(config: Any, began: float) -> TrainResult:
    return TrainResult(
        best_val_accuracy=0.5,
        best_epoch=1,
        test_accuracy=None,
        epochs_run=1,
        stopped_early=False,
        trainable_params=0,
        total_params=0,
        wall_seconds=time.time() - began,
        images_per_second=0.0,
    )


def fake(
    config: Any,
    on_epoch: Callable[..., bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """A run with nothing to build: its first step is the call itself."""
    called = time.time()
    time.sleep(float(os.environ.get(RUN_SECONDS_ENV, "3")))
    ended = time.time()
    _stamp(config, called=called, first_step=called, ended=ended)
    return _result(config, called)


def model(
    config: Any,
    on_epoch: Callable[..., bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Build the trainer's ResNet50 (no pretrained weights: no download) and take one step."""
    called = time.time()
    torch.set_num_threads(1)
    net = build_model(
        config.model_copy(update={"model": "resnet50", "weights": "none", "mode": "scratch"}), 10
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    images, labels = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(net(images), labels)
    loss.backward()
    optimizer.step()
    first_step = time.time()
    time.sleep(float(os.environ.get(RUN_SECONDS_ENV, "3")))
    ended = time.time()
    _stamp(config, called=called, first_step=first_step, ended=ended)
    return _result(config, called)


def _measure(
    home: Path, trainer: str, spare: bool, wandb: str, runs: int
) -> tuple[list[float], list[float]]:
    """Run one agent on a fresh grid of `runs` configs; return (overheads, gaps to first step)."""
    import yaml
    from rich.console import Console

    from agent import run_agent
    from sweeper.locate import open_backend
    from sweeper.paths import Home
    from sweeper.spec import parse_spec

    stamps = Path(tempfile.mkdtemp(dir=home))
    os.environ[STAMP_DIR_ENV] = str(stamps)
    os.environ["WANDB_MODE"] = wandb
    raw = {
        "method": "grid",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"data_dir": {"value": "unused"}, "seed": {"values": list(range(runs))}},
    }
    spec = parse_spec(yaml.safe_dump(raw), "<bench>")
    backend = open_backend("local", Home(home))
    sweep_id = backend.create_sweep(spec).id
    backend.close()
    # A long heartbeat: the bench measures hand-over, not heartbeats.
    summary = run_agent(
        sweep_id,
        home=Home(home),
        trainer=f"agent_gap:{trainer}",
        spare=spare,
        heartbeat_s=60.0,
        console=Console(file=io.StringIO()),
    )
    if summary.finished != runs:
        sys.exit(f"bench run failed: {summary.line()}; see {Home(home).agent_log_path(sweep_id)}")
    times = sorted(
        (json.loads(p.read_text()) for p in stamps.glob("*.json")), key=lambda t: t["called"]
    )
    pairs = list(itertools.pairwise(times))
    overheads = [b["called"] - a["ended"] for a, b in pairs]
    gaps = [b["first_step"] - a["ended"] for a, b in pairs]
    return overheads, gaps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per setting (gaps = runs - 1)")
    parser.add_argument(
        "--run-seconds", type=float, default=8.0, help="how long each bench run trains"
    )
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    os.environ[RUN_SECONDS_ENV] = str(args.run_seconds)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = [
        ("fake", "disabled"),
        ("fake", "offline"),
        ("model", "disabled"),
    ]
    print(
        f"agent gap: {args.runs} runs of {args.run_seconds:g} s per setting, 1 CPU slot, median seconds"
    )
    print(f"device: CPU, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'trainer':<8} {'wandb':<9} {'spare':<6} {'overhead':>9} {'to first step':>14}")
    with tempfile.TemporaryDirectory(prefix="agent-gap-") as root:
        for trainer, wandb in settings:
            medians: dict[bool, tuple[float, float]] = {}
            for spare in (False, True):
                overheads, gaps = _measure(Path(root), trainer, spare, wandb, args.runs)
                medians[spare] = (statistics.median(overheads), statistics.median(gaps))
                label = "warm" if spare else "cold"
                print(
                    f"{trainer:<8} {wandb:<9} {label:<6} {medians[spare][0]:>9.2f} {medians[spare][1]:>14.2f}"
                )
            cold, warm = medians[False], medians[True]
            print(
                f"{'':<8} {'':<9} {'cold/warm':<6} {cold[0] / warm[0]:>8.1f}x {cold[1] / warm[1]:>13.1f}x"
            )


if __name__ == "__main__":
    main()
