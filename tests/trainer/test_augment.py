"""Tests for trainer.augment: augmentation levels, their determinism, normalisation."""

from __future__ import annotations

import pytest
import torch

import trainer.augment as augment
from trainer.augment import augment_batch, normalize
from trainer.config import IMAGENET_MEAN, IMAGENET_STD

torch.set_num_threads(1)


def _batch(size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (size, 3, 16, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def test_augment_none_returns_the_batch() -> None:
    images = _batch()
    assert torch.equal(augment_batch(images, "none", torch.Generator()), images)


@pytest.mark.parametrize("level", ["flip", "standard"])
def test_augment_is_deterministic_for_a_generator_seed(level: str) -> None:
    images = _batch()
    first = augment_batch(images, level, torch.Generator().manual_seed(11))
    again = augment_batch(images, level, torch.Generator().manual_seed(11))
    other = augment_batch(images, level, torch.Generator().manual_seed(12))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == images.shape and first.dtype == torch.uint8


def test_flip_mirrors_some_images_and_keeps_the_rest() -> None:
    images = _batch(32)
    flipped = augment_batch(images, "flip", torch.Generator().manual_seed(0))
    mirrored = [
        torch.equal(out, image.flip(-1)) for out, image in zip(flipped, images, strict=True)
    ]
    kept = [torch.equal(out, image) for out, image in zip(flipped, images, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert any(mirrored) and any(kept)


def test_standard_changes_every_image() -> None:
    images = _batch(16)
    out = augment_batch(images, "standard", torch.Generator().manual_seed(0))
    assert all(not torch.equal(a, b) for a, b in zip(out, images, strict=True))


def test_standard_without_crop_or_jitter_is_the_flip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(augment, "CROP_SCALE", (1.0, 1.0))
    monkeypatch.setattr(augment, "CROP_RATIO", (1.0, 1.0))
    monkeypatch.setattr(augment, "JITTER", 0.0)
    images = _batch(16)
    standard = augment_batch(images, "standard", torch.Generator().manual_seed(4))
    flip = augment_batch(images, "flip", torch.Generator().manual_seed(4))
    assert torch.equal(standard, flip)


def test_augment_rejects_unknown_levels() -> None:
    with pytest.raises(ValueError, match="augment must be one of"):
        augment_batch(_batch(), "extreme", torch.Generator())


def test_normalize_matches_the_imagenet_formula() -> None:
    images = _batch(4)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (images.double() / 255.0 - mean.double()) / std.double()
    out = normalize(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
