"""The sweep metrics are the epoch metrics the trainer reports."""

from __future__ import annotations

from trainer.metrics import SWEEP_METRICS
from trainer.result import EpochMetrics


def test_sweep_metrics_are_epoch_metrics() -> None:
    assert set(SWEEP_METRICS) <= set(EpochMetrics.model_fields)
    assert SWEEP_METRICS[0] == "val_accuracy"
