"""A test trainer entry point, `--trainer tests.reliability.probe_trainer:train`: the agent
tests' fake trainer, plus a `best.pt` written atomically into `config.checkpoint_dir` as
`trainer.train` does, so a test can see where each run's checkpoint went without paying for
torch."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from tests.agent.fake_trainer import train as fake_train
from trainer.config import TrainConfig
from trainer.result import EpochMetrics, TrainResult


def train(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """The fake trainer's result, with a checkpoint naming the config that wrote it."""
    result = fake_train(config, on_epoch=on_epoch, stop_event=stop_event)
    if config.checkpoint_dir is None:
        return result
    path = Path(config.checkpoint_dir) / "best.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps({"seed": config.seed, "lr": config.lr}))
    os.replace(temp, path)
    return result.model_copy(update={"checkpoint_path": str(path)})
