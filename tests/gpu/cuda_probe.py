"""A trainer for the slot-pinning test: it records what CUDA its worker process sees.

Workers import it as `--trainer tests.gpu.cuda_probe:train` (the test puts the repository on PYTHONPATH).
Each run writes `<run id>.json` into $CUDA_PROBE_DIR: CUDA_VISIBLE_DEVICES, the number of
GPUs torch sees, the device a tensor landed on, and when the run started and ended (it
holds the GPU for PROBE_SECONDS, so runs of two slots on one GPU overlap).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainer.config import TrainConfig
from trainer.result import EpochMetrics, TrainResult

PROBE_SECONDS = 1.5


def train(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Put a tensor on the GPU, hold it for PROBE_SECONDS, record what was visible."""
    started = time.time()
    tensor = torch.ones(1024, device="cuda")
    time.sleep(PROBE_SECONDS)
    record = {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device_count": torch.cuda.device_count(),
        "device": str(tensor.device),
        "pid": os.getpid(),
        "started": started,
        "ended": time.time(),
    }
    run_id = Path(config.checkpoint_dir or "run").name
    (Path(os.environ["CUDA_PROBE_DIR"]) / f"{run_id}.json").write_text(json.dumps(record))
    return TrainResult(
        best_val_accuracy=0.5,
        best_epoch=1,
        test_accuracy=None,
        epochs_run=1,
        stopped_early=False,
        trainable_params=0,
        total_params=0,
        wall_seconds=time.time() - started,
        images_per_second=0.0,
    )
