"""What a training run reports: per-epoch metrics and the final result."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EpochMetrics(BaseModel):
    """Metrics of one finished epoch, handed to `on_epoch` and kept in `TrainResult.history`.

    The field names are the metric names a sweep spec can optimise (`val_accuracy`, ...).
    """

    epoch: int = Field(description="1-based epoch number.")
    epochs: int = Field(description="Epochs planned for the run.")
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    best_val_accuracy: float = Field(description="Best val_accuracy so far, this epoch included.")
    lr: float = Field(
        description="Learning rate of the head's parameter group at the end of the epoch."
    )
    seconds: float = Field(description="Wall time of the epoch, evaluation included.")
    images_per_second: float = Field(description="Training images per second this epoch.")


class TrainResult(BaseModel):
    """The outcome of `trainer.train`. Accuracies are fractions in [0, 1]."""

    best_val_accuracy: float
    best_epoch: int
    test_accuracy: float | None = Field(
        description="Accuracy of the best epoch's weights on the test set."
    )
    test_loss: float | None = None
    per_class_accuracy: dict[str, float] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] = Field(
        default_factory=list, description="rows = true class, columns = predicted."
    )
    class_names: list[str] = Field(default_factory=list)
    epochs_run: int
    stopped_early: bool
    stop_reason: str | None = Field(
        None, description="Why training ended before `epochs`, if it did."
    )
    trainable_params: int
    total_params: int
    wall_seconds: float
    images_per_second: float
    checkpoint_path: str | None = None
    checkpoint_base: str | None = Field(
        None,
        description="The weights file the checkpoint completes itself from (a head run's "
        "backbone), if it stores only what the run trained.",
    )
    skipped_files: list[str] = Field(
        default_factory=list, description="Files that could not be read, with the reason."
    )
    history: list[EpochMetrics] = Field(default_factory=list)
