"""The pure training library: `train(config) -> TrainResult`. Imports nothing from sweeper or wandb.

`train` is imported on first use, so `import trainer.config` (the sweep spec validator
does) stays light and does not pull in torch.

>>> from trainer import TrainConfig, train
>>> result = train(TrainConfig(data_dir="data/inaturalist_12K", mode="head"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.config import TrainConfig
from trainer.errors import DataError, Interrupted, OutOfMemoryError, TrainerError, WeightsError
from trainer.result import EpochMetrics, TrainResult

if TYPE_CHECKING:
    from trainer.loop import train

__all__ = [
    "DataError",
    "EpochMetrics",
    "Interrupted",
    "OutOfMemoryError",
    "TrainConfig",
    "TrainResult",
    "TrainerError",
    "WeightsError",
    "train",
]


def __getattr__(name: str) -> Any:
    if name == "train":
        from trainer.loop import train

        return train
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
