"""Tests for trainer.loader: each index once, order fixed by (seed, epoch), reproducible
augmentation whatever the number of workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.config import TrainConfig
from trainer.data import ImageTensors, load_splits
from trainer.loader import EpochLoader, make_loader

torch.set_num_threads(1)


@pytest.fixture
def tensors() -> ImageTensors:
    """Ten 8 px images, each filled with its own index, labels index % 3."""
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 8, 8).contiguous()
    return ImageTensors(
        images=images, labels=torch.arange(10) % 3, paths=[f"train/c/{i}.png" for i in range(10)]
    )


def _epoch(loader: object) -> list[list[int]]:
    return [images[:, 0, 0, 0].tolist() for images, _ in loader]  # type: ignore[attr-defined]


def test_loader_yields_each_index_once_with_its_label(tensors: ImageTensors) -> None:
    indices = torch.tensor([9, 2, 5, 7, 0, 3, 8])
    loader = make_loader(tensors, indices, 3, augment="none", shuffle=True, seed=1, num_workers=0)
    batches = list(loader)
    assert [len(labels) for _, labels in batches] == [3, 3, 1] and len(loader) == 3
    seen = torch.cat([images[:, 0, 0, 0] for images, _ in batches]).long()
    assert sorted(seen.tolist()) == sorted(indices.tolist())
    assert torch.equal(torch.cat([labels for _, labels in batches]), seen % 3)
    assert all(
        images.dtype == torch.uint8 and labels.dtype == torch.int64 for images, labels in batches
    )


def test_loader_without_shuffle_keeps_the_index_order(tensors: ImageTensors) -> None:
    indices = torch.tensor([4, 1, 8])
    loader = make_loader(tensors, indices, 2, augment="none", shuffle=False, seed=0, num_workers=0)
    assert _epoch(loader) == [[4, 1], [8]]


def test_loader_drop_last_drops_the_partial_batch(tensors: ImageTensors) -> None:
    loader = make_loader(
        tensors,
        torch.arange(10),
        4,
        augment="none",
        shuffle=True,
        seed=0,
        num_workers=0,
        drop_last=True,
    )
    assert len(loader) == 2 and [len(batch) for batch in _epoch(loader)] == [4, 4]


def test_loader_order_is_fixed_by_seed_and_epoch(tensors: ImageTensors) -> None:
    def loader() -> EpochLoader:
        return make_loader(
            tensors, torch.arange(10), 4, augment="none", shuffle=True, seed=3, num_workers=0
        )

    first = loader()
    epoch0, epoch1 = _epoch(first), _epoch(first)  # plain iteration counts epochs up from 0
    assert epoch0 != epoch1
    again = loader()
    again.set_epoch(1)
    assert _epoch(again) == epoch1
    again.set_epoch(0)
    assert _epoch(again) == epoch0


@pytest.mark.parametrize("augment", ["flip", "standard"])
def test_loader_augmentation_is_reproducible_and_worker_independent(
    image_folder: Path, augment: str
) -> None:
    splits = load_splits(TrainConfig(data_dir=str(image_folder), image_size=16, num_workers=1))

    def epoch_images(num_workers: int) -> torch.Tensor:
        loader = make_loader(
            splits.pool,
            splits.train_idx,
            8,
            augment=augment,
            shuffle=True,
            seed=2,
            num_workers=num_workers,
        )
        loader.set_epoch(1)
        return torch.cat([images for images, _ in loader])

    in_process, with_workers = epoch_images(0), epoch_images(2)
    assert torch.equal(in_process, with_workers)
    plain = splits.pool.images[splits.train_idx]
    assert not torch.equal(in_process.sort(dim=0).values, plain.sort(dim=0).values)


def test_make_loader_rejects_unknown_augment(tensors: ImageTensors) -> None:
    with pytest.raises(ValueError, match="augment must be one of"):
        make_loader(
            tensors, torch.arange(3), 2, augment="heavy", shuffle=False, seed=0, num_workers=0
        )
