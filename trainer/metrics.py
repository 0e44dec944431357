"""The metrics a sweep can optimise: those the trainer reports after every epoch.

Derived from `EpochMetrics`, so a metric the trainer starts reporting is a sweep metric
without a second list to update: each split's loss and accuracy, validation first.

>>> SWEEP_METRICS
('val_accuracy', 'val_loss', 'train_accuracy', 'train_loss')
"""

from __future__ import annotations

from trainer.result import EpochMetrics

#: The per-split loss and accuracy fields of `EpochMetrics` (best_val_accuracy, lr and
#: timings are bookkeeping, not objectives), validation before training, accuracy first.
SWEEP_METRICS: tuple[str, ...] = tuple(
    sorted(
        (name for name in EpochMetrics.model_fields if name.startswith(("val_", "train_"))),
        key=lambda name: (not name.startswith("val_"), not name.endswith("_accuracy")),
    )
)
