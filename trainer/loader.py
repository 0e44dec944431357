"""Loaders: batches of decoded images in an order fixed by (seed, epoch), augmented per batch.

A whole batch is one item of the dataset, so augmentation runs vectorised on the batch;
the sampler, not the DataLoader's RNG, fixes the order, so the same (seed, epoch) gives
the same batches whatever `num_workers` is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.dataloader import _BaseDataLoaderIter

from trainer.augment import AUGMENT_LEVELS, augment_batch, seeded_generator
from trainer.data import ImageTensors


class EpochBatchSampler(Sampler[tuple[int, int, list[int]]]):
    """Yields (epoch, batch number, indices): the order depends only on (seed, epoch).

    Iteration never changes the epoch (DataLoader may call `iter` more than once per
    pass): call `set_epoch` before each pass, as with DistributedSampler.
    """

    def __init__(
        self, indices: torch.Tensor, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.indices = indices.to(torch.int64).cpu()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle order (and the augmentation seeds) of the following passes are those of `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        count = len(self.indices)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, int, list[int]]]:
        order = self.indices
        if self.shuffle:
            # The trailing 0 / 1 tags keep the shuffle and augmentation streams apart.
            generator = seeded_generator(self.seed, self.epoch, 0)
            order = order[torch.randperm(len(order), generator=generator)]
        return self._batches(self.epoch, order.tolist())

    def _batches(self, epoch: int, order: list[int]) -> Iterator[tuple[int, int, list[int]]]:
        for number in range(len(self)):
            yield epoch, number, order[number * self.batch_size : (number + 1) * self.batch_size]


class _BatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Builds one whole batch per item, so augmentation runs vectorised per batch."""

    def __init__(self, data: ImageTensors, augment: str, seed: int) -> None:
        self.data = data
        self.augment = augment
        self.seed = seed

    def __getitem__(self, item: tuple[int, int, list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, number, indices = item
        images = self.data.images[indices]
        if self.augment != "none":
            images = augment_batch(
                images, self.augment, seeded_generator(self.seed, epoch, 1, number)
            )
        return images, self.data.labels[indices]


class EpochLoader(DataLoader):
    """A DataLoader of (uint8 images, int64 labels) batches, reproducible from (seed, epoch).

    Each pass over the loader is one epoch: 0, 1, 2... unless `set_epoch(e)` says which
    epoch the next pass is (the count goes on from there).
    """

    def __init__(
        self, dataset: _BatchDataset, sampler: EpochBatchSampler, num_workers: int
    ) -> None:
        super().__init__(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=num_workers > 0,
            # Its own generator: iterating must not consume the global RNG that dropout uses.
            generator=torch.Generator(),
        )
        self._epochs = sampler
        self._next_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle order and augmentation of the next pass are those of `epoch`."""
        self._next_epoch = epoch

    def __iter__(self) -> _BaseDataLoaderIter:
        # Fixed here, once per pass: the sampler itself is iterated more than once per pass.
        self._epochs.set_epoch(self._next_epoch)
        self._next_epoch += 1
        return super().__iter__()


def make_loader(
    data: ImageTensors,
    indices: torch.Tensor,
    batch_size: int,
    *,
    augment: str,
    shuffle: bool,
    seed: int,
    num_workers: int,
    drop_last: bool = False,
) -> EpochLoader:
    """Batches of `data[indices]`, augmented per batch with a generator seeded by (seed, epoch, batch).

    The same (seed, epoch) gives the same batches whatever `num_workers` is; memory is
    pinned when CUDA is available.
    """
    if augment not in AUGMENT_LEVELS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_LEVELS)}, got {augment!r}")
    sampler = EpochBatchSampler(
        indices, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    return EpochLoader(_BatchDataset(data, augment, seed), sampler, num_workers)
