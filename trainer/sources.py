"""Batch sources: where one epoch's batches come from.

Decoded images go through the whole model (`ImageSource`); when the first units of the
model are frozen and `feature_cache` is on, the cached outputs of that frozen prefix go
through the trainable rest only (`FeatureSource`, see trainer.features). `Inputs` picks one
per frozen-prefix length and keeps it for the run.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from trainer.augment import normalize
from trainer.config import TrainConfig
from trainer.data import DataSplits, ImageTensors
from trainer.device import Precision
from trainer.features import (
    MAX_CACHE_BYTES,
    FeatureCache,
    estimated_bytes,
    feature_shape,
)
from trainer.imagecache import resolve_cache_dir
from trainer.loader import EpochBatchSampler, EpochLoader, make_loader
from trainer.models import weights_identity
from trainer.strategies import Strategy

log = logging.getLogger("trainer")

Batches = Iterable[tuple[Tensor, Tensor]]

#: Cached features up to this size are kept on the GPU for the whole run.
RESIDENT_BYTES = 2 << 30


class Source(ABC):
    """Where one epoch's batches come from and which module they go through.

    `forward` is the part of the model the batches go through: the whole model for decoded
    images, the trainable suffix for cached features. Batches are on the run's device.
    """

    forward: nn.Module

    def prepare(self, epoch: int) -> None:  # noqa: B027 (a hook: most sources need nothing)
        """Get what `epoch` needs ready before it is timed."""

    @abstractmethod
    def train_batches(self, epoch: int) -> Batches:
        """The training batches of 1-based `epoch`, shuffled and augmented for that epoch."""

    @abstractmethod
    def val_batches(self) -> Batches:
        """The validation split's batches, in order, without augmentation."""

    @abstractmethod
    def test_batches(self) -> Batches:
        """The test split's batches, in order, without augmentation."""


class Inputs:
    """Chooses, per frozen-prefix length, between decoded images and cached features."""

    def __init__(
        self,
        config: TrainConfig,
        splits: DataSplits,
        strategy: Strategy,
        device: torch.device,
        precision: Precision,
        stop_event: threading.Event | None,
    ) -> None:
        self.config, self.splits, self.strategy = config, splits, strategy
        self.device, self.precision, self.stop_event = device, precision, stop_event
        self._sources: dict[int, Source] = {}

    def source(self, frozen_units: int) -> Source:
        """The source for a model whose first `frozen_units` units are frozen."""
        if frozen_units not in self._sources:
            cached = self.config.feature_cache and frozen_units > 0 and self._fits(frozen_units)
            self._sources[frozen_units] = (
                FeatureSource(self, frozen_units) if cached else self._image_source()
            )
        return self._sources[frozen_units]

    def _image_source(self) -> Source:
        if 0 not in self._sources:
            self._sources[0] = ImageSource(self)
        return self._sources[0]

    def module(self, units: list[nn.Module]) -> nn.Module:
        """`units` as one module, compiled when the config asks."""
        module: nn.Module = nn.Sequential(*units)
        return torch.compile(module) if self.config.compile else module  # type: ignore[return-value]

    def _fits(self, frozen_units: int) -> bool:
        prefix = nn.Sequential(*self.strategy.units[:frozen_units])
        shape = feature_shape(prefix, self.config.image_size, self.device)
        views = 1 + (self.config.augment_views if self.config.augment != "none" else 0)
        images = len(self.splits.pool.labels) * views + len(self.splits.test.labels)
        needed = estimated_bytes(shape, images)
        if needed > MAX_CACHE_BYTES:
            log.info(
                "feature cache skipped: %.1f GiB for a %d-unit prefix", needed / 2**30, frozen_units
            )
            return False
        return True


class ImageSource(Source):
    """Decoded images through the whole model: the plain path."""

    def __init__(self, inputs: Inputs) -> None:
        config, splits = inputs.config, inputs.splits
        self.inputs = inputs
        self.forward = inputs.module(inputs.strategy.units)
        test_idx = torch.arange(len(splits.test.labels))
        # Built once: with num_workers > 0 the workers persist across epochs.
        self._train = self._loader(splits.pool, splits.train_idx, config.augment, shuffle=True)
        self._val = self._loader(splits.pool, splits.val_idx, "none", shuffle=False)
        self._test = self._loader(splits.test, test_idx, "none", shuffle=False)

    def train_batches(self, epoch: int) -> Batches:
        self._train.set_epoch(epoch)
        return self._on_device(self._train)

    def val_batches(self) -> Batches:
        return self._on_device(self._val)

    def test_batches(self) -> Batches:
        return self._on_device(self._test)

    def _loader(
        self, data: ImageTensors, indices: Tensor, augment: str, *, shuffle: bool
    ) -> EpochLoader:
        config = self.inputs.config
        return make_loader(
            data, indices, config.batch_size, augment=augment, shuffle=shuffle,
            seed=config.seed, num_workers=config.num_workers,
            drop_last=shuffle and lone_last_batch(len(indices), config.batch_size),
        )  # fmt: skip

    def _on_device(self, loader: EpochLoader) -> Iterator[tuple[Tensor, Tensor]]:
        device = self.inputs.device
        channels_last = device.type == "cuda" and self.inputs.config.channels_last
        for images, labels in loader:
            x = normalize(images.to(device, non_blocking=True))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels.to(device, non_blocking=True)


class FeatureSource(Source):
    """Cached outputs of the frozen prefix through the trainable suffix only."""

    def __init__(self, inputs: Inputs, frozen_units: int) -> None:
        config, splits, units = inputs.config, inputs.splits, inputs.strategy.units
        self.inputs = inputs
        self.forward = inputs.module(units[frozen_units:])
        identity = {
            "fingerprint": splits.fingerprint,
            "model": config.model,
            "weights": weights_identity(config),
            "image_size": config.image_size,
            "frozen_units": frozen_units,
            "precision": inputs.precision.name,
        }
        root = resolve_cache_dir(config.cache_dir)
        self.cache = FeatureCache(
            root, nn.Sequential(*units[:frozen_units]), identity, inputs.device,
            inputs.precision.autocast, inputs.stop_event,
        )  # fmt: skip
        self._resident: dict[tuple[str, str, int], Tensor] = {}

    def prepare(self, epoch: int) -> None:
        self._train_features(epoch)
        self._features("pool", self.inputs.splits.pool.images)

    def train_batches(self, epoch: int) -> Batches:
        splits = self.inputs.splits
        return self._batches(
            self._train_features(epoch), splits.pool.labels, splits.train_idx, epoch
        )

    def _train_features(self, epoch: int) -> Tensor:
        config, splits = self.inputs.config, self.inputs.splits
        view = (epoch - 1) % config.augment_views
        return self._features("pool", splits.pool.images, config.augment, view)

    def val_batches(self) -> Batches:
        features = self._features("pool", self.inputs.splits.pool.images)
        return self._batches(features, self.inputs.splits.pool.labels, self.inputs.splits.val_idx)

    def test_batches(self) -> Batches:
        test = self.inputs.splits.test
        return self._batches(
            self._features("test", test.images), test.labels, torch.arange(len(test.labels))
        )

    def _features(self, split: str, images: Tensor, augment: str = "none", view: int = 0) -> Tensor:
        """Cached features; on a GPU, small ones are copied there once instead of per batch."""
        features = self.cache.get(split, images, augment, view)
        device = self.inputs.device
        if device.type == "cpu" or features.numel() * features.element_size() > RESIDENT_BYTES:
            return features
        key = (split, augment, view)
        if key not in self._resident:
            self._resident[key] = features.to(device)
        return self._resident[key]

    def _batches(
        self, features: Tensor, labels: Tensor, indices: Tensor, epoch: int | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        config, device = self.inputs.config, self.inputs.device
        # The image loader's own sampler: cached and uncached runs see the same batches.
        training = epoch is not None
        sampler = EpochBatchSampler(
            indices, config.batch_size, shuffle=training, seed=config.seed,
            drop_last=training and lone_last_batch(len(indices), config.batch_size),
        )  # fmt: skip
        sampler.set_epoch(epoch or 0)
        for _, _, idx in sampler:
            # fp16 spatial maps go back to float32; autocast picks the compute precision.
            yield features[idx].to(device, torch.float32, non_blocking=True), labels[idx].to(device)


def lone_last_batch(count: int, batch_size: int) -> bool:
    """True when an epoch would end on a batch of one image, which training drops:
    BatchNorm cannot train on one value per channel (small images reach 1x1 maps).

    >>> lone_last_batch(33, 32), lone_last_batch(34, 32), lone_last_batch(1, 32)
    (True, False, False)
    """
    return count > 1 and count % batch_size == 1
