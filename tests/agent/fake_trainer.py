"""A fast stand-in for `trainer.train` with the same signature, for the agent's process tests.

Workers import it as `--trainer tests.agent.fake_trainer:train` (the `agent_env` fixture puts
the project root on PYTHONPATH).
The environment steers it, so a test can make runs slow, fail, or announce themselves:

- FAKE_EPOCH_S: seconds per epoch (default 0.02), spent in 10 "batches" that each check
  `stop_event` (as the real trainer does at batch boundaries).
- FAKE_FAIL_BATCH: runs with this batch_size raise TrainerError.
- FAKE_MARK_DIR: on start, write `<run id>.<pid>` there, so a test can find and kill it.
- FAKE_FAIL_ODD: the 1st, 3rd, 5th... run started (counted in FAKE_MARK_DIR) raises TrainerError.
- FAKE_IGNORE_STOP: ignore `stop_event` (a run that cannot stop at a batch boundary).
- FAKE_HANG_NTH: the n-th run started (counted in FAKE_MARK_DIR) stops its process (SIGSTOP).
- FAKE_RENDEZVOUS: a run waits (up to RENDEZVOUS_S) until that many worker processes have
  started runs (counted in FAKE_MARK_DIR), so a test of several slots sees every slot train
  however late the machine's load starts one of them.

`single_use` is the same trainer marked `reusable = False`; `growing_memory` is a memory
probe (`--memory-probe fake_trainer:growing_memory`) whose RSS reading grows by
FAKE_GROWTH_MB (default 300) after every run, so recycling on memory growth is tested
without leaking real memory.

val_accuracy is a deterministic function of lr, dropout and the epoch, so hyperband and
bayes see real differences between configs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.memory import MIB, MemoryReading
from trainer.config import TrainConfig
from trainer.errors import Interrupted, TrainerError
from trainer.result import EpochMetrics, TrainResult

BATCHES = 10
IMAGES_PER_BATCH = 8
RENDEZVOUS_S = 120.0


def accuracy(config: TrainConfig, epoch: int) -> float:
    """Higher for lr 1e-4 and more dropout; grows with epochs, never reaches 1.

    >>> accuracy(TrainConfig(data_dir="d", lr=1e-4, dropout=0.3), 1) > accuracy(TrainConfig(data_dir="d", lr=1e-3), 1)
    True
    """
    base = 0.3 + (0.3 if config.lr <= 1e-4 else 0.0) + config.dropout / 2
    return min(base + 0.02 * epoch, 0.99)


def _mark_start(config: TrainConfig) -> None:
    mark_dir = os.environ.get("FAKE_MARK_DIR")
    if mark_dir and config.checkpoint_dir:
        run_id = Path(config.checkpoint_dir).name
        Path(mark_dir).mkdir(parents=True, exist_ok=True)
        (Path(mark_dir) / f"{run_id}.{os.getpid()}").write_text(str(time.time()))


def _rendezvous() -> None:
    """Wait for FAKE_RENDEZVOUS worker processes to have started a run (polled: they are
    other processes, with no event to wait on)."""
    wanted = int(os.environ.get("FAKE_RENDEZVOUS", "0"))
    deadline = time.monotonic() + RENDEZVOUS_S
    while time.monotonic() < deadline:
        pids = {mark.suffix for mark in Path(os.environ["FAKE_MARK_DIR"]).iterdir()}
        if len(pids) >= wanted:
            return
        time.sleep(0.05)
    raise TrainerError(
        f"only {len(pids)} of {wanted} workers started a run in {RENDEZVOUS_S:.0f} s"
    )


def train(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Pretend to train `config.epochs` epochs; honour on_epoch and stop_event like the trainer."""
    began = time.perf_counter()
    _mark_start(config)
    if os.environ.get("FAKE_RENDEZVOUS"):
        _rendezvous()
    if os.environ.get("FAKE_HANG_NTH") == str(len(os.listdir(os.environ["FAKE_MARK_DIR"]))):
        os.kill(os.getpid(), signal.SIGSTOP)
    if os.environ.get("FAKE_FAIL_BATCH") == str(config.batch_size):
        raise TrainerError(f"fake failure for batch_size {config.batch_size}\nsecond line")
    if os.environ.get("FAKE_FAIL_ODD") and len(os.listdir(os.environ["FAKE_MARK_DIR"])) % 2 == 1:
        raise TrainerError("fake failure of an odd-numbered run")
    epoch_s = float(os.environ.get("FAKE_EPOCH_S", "0.02"))
    if os.environ.get("FAKE_IGNORE_STOP"):
        stop_event = None
    history: list[EpochMetrics] = []
    best, stop_reason = 0.0, None
    for epoch in range(1, config.epochs + 1):
        for _ in range(BATCHES):
            if stop_event is not None and stop_event.is_set():
                raise Interrupted(f"stopped at a batch boundary of epoch {epoch}")
            time.sleep(epoch_s / BATCHES)
        val = accuracy(config, epoch)
        best = max(best, val)
        metrics = EpochMetrics(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=1.0 / epoch,
            train_accuracy=val,
            val_loss=1.0 - val,
            val_accuracy=val,
            best_val_accuracy=best,
            lr=config.lr,
            seconds=epoch_s,
            images_per_second=BATCHES * IMAGES_PER_BATCH / max(epoch_s, 1e-6),
        )
        history.append(metrics)
        if on_epoch is not None and on_epoch(metrics):
            stop_reason = "stopped by on_epoch"
            break
    return TrainResult(
        best_val_accuracy=best,
        best_epoch=max(range(len(history)), key=lambda i: history[i].val_accuracy) + 1,
        test_accuracy=best - 0.05,
        epochs_run=len(history),
        stopped_early=stop_reason is not None,
        stop_reason=stop_reason,
        trainable_params=10,
        total_params=100,
        wall_seconds=time.perf_counter() - began,
        images_per_second=BATCHES * IMAGES_PER_BATCH / max(epoch_s, 1e-6),
        history=history,
    )


_readings = 0


def growing_memory() -> MemoryReading:
    """A memory reading that grows by FAKE_GROWTH_MB on every call (once per run)."""
    global _readings
    _readings += 1
    grown = float(os.environ.get("FAKE_GROWTH_MB", "300")) * _readings
    return MemoryReading(rss=int((100 + grown) * MIB))


def single_use(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """The fake trainer, marked as leaving state behind: each run needs a fresh process."""
    return train(config, on_epoch, stop_event)


single_use.reusable = False  # type: ignore[attr-defined]


def buggy(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """A trainer with a bug (not a TrainerError): the run must fail, the worker must not crash."""
    return TrainResult.model_validate({"oops": 1 / 0})
