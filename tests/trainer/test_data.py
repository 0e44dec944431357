"""Tests for trainer.data: listing, decoding, the split, the cache in use, augmentation, loaders."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import trainer.data as data
from tests.imagefolder import write_image_folder
from trainer.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
from trainer.data import (
    ImageTensors,
    UnreadableImage,
    augment_batch,
    decode_image,
    load_splits,
    make_loader,
    normalize,
    stratified_split,
)
from trainer.errors import DataError

torch.set_num_threads(1)


def config_for(root: Path, **overrides: object) -> TrainConfig:
    """A config for tiny data: 16 px, decoding on one thread."""
    values: dict[str, object] = {"data_dir": str(root), "image_size": 16, "num_workers": 1}
    values.update(overrides)
    return TrainConfig.model_validate(values)


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path decode_image is called with, recorded as it happens."""
    calls: list[str] = []
    real = data.decode_image

    def counting(path: str | os.PathLike[str], image_size: int) -> np.ndarray:
        calls.append(str(path))
        return real(path, image_size)

    monkeypatch.setattr(data, "decode_image", counting)
    return calls


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    """A writable 2-class folder: 3 train and 1 test image per class, 16 px."""
    return write_image_folder(
        tmp_path / "small", classes=("amphibia", "fungi"), n_train=3, n_test=1, size=16
    )


# --- listing and decoding ------------------------------------------------------------------


def test_messy_folder_loads_good_and_converted_images(
    messy_image_folder: Path, messy_expected: Any
) -> None:
    splits = load_splits(config_for(messy_image_folder))
    messy = messy_expected.messy_class
    good = [f"train/{messy}/{messy}_{i:03d}.jpg" for i in range(messy_expected.good_per_class)]
    converted = [f"train/{messy}/{name}" for name in messy_expected.converted]
    fungi = [f"train/fungi/fungi_{i:03d}.jpg" for i in range(messy_expected.good_per_class)]
    assert splits.class_names == [messy, "fungi"]
    assert splits.pool.paths == sorted(good + converted) + fungi
    assert splits.pool.labels.tolist() == [0] * (len(good) + len(converted)) + [1] * len(fungi)
    assert splits.pool.images.shape == (len(splits.pool.paths), 3, 16, 16)
    assert splits.pool.images.dtype == torch.uint8
    assert len(splits.test.paths) == 2 * messy_expected.good_per_class


def test_messy_folder_reports_each_skipped_file_with_its_reason(
    messy_image_folder: Path, messy_expected: Any
) -> None:
    skipped = load_splits(config_for(messy_image_folder)).skipped_files
    prefix = f"train/{messy_expected.messy_class}/"
    reasons = dict(line.removeprefix(prefix).split(": ", 1) for line in skipped)
    assert all(line.startswith(prefix) for line in skipped)
    assert sorted(reasons) == sorted(name for name, _ in messy_expected.skipped)
    for name, word in messy_expected.skipped:
        assert word in reasons[name], (name, reasons[name])


def test_hidden_files_and_folders_are_ignored(messy_image_folder: Path) -> None:
    splits = load_splits(config_for(messy_image_folder))
    everything = splits.pool.paths + splits.test.paths + splits.skipped_files + splits.class_names
    assert not [item for item in everything if "/." in item or item.startswith(".")]


@pytest.mark.parametrize(
    ("name", "column", "expected"),
    [
        ("cmyk.jpg", 8, (255, 0, 0)),
        ("gray.png", 8, (100, 100, 100)),
        ("palette.png", 8, (10, 200, 30)),
        ("rgba.png", 1, (0, 0, 255)),
        ("rgba.png", 14, (255, 255, 255)),  # transparent pixels become white
        ("sixteen_bit.png", 8, (128, 128, 128)),  # 0x8000 of 0xFFFF
    ],
)
def test_awkward_modes_convert_to_the_right_rgb(
    messy_image_folder: Path,
    messy_expected: Any,
    name: str,
    column: int,
    expected: tuple[int, int, int],
) -> None:
    pixels = decode_image(messy_image_folder / "train" / messy_expected.messy_class / name, 16)
    assert pixels.shape == (16, 16, 3)
    assert np.abs(pixels[8, column].astype(int) - np.array(expected)).max() <= 3


@pytest.mark.parametrize(("width", "height"), [(40, 20), (20, 40)])
def test_decode_resizes_short_side_and_centre_crops(
    tmp_path: Path, width: int, height: int
) -> None:
    # Red outer quarters, green middle half along the long side: the centre crop is all green.
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    long_axis = 1 if width > height else 0
    middle = [slice(None), slice(None)]
    middle[long_axis] = slice(max(width, height) // 4, 3 * max(width, height) // 4)
    pixels[tuple(middle)] = (0, 255, 0)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    decoded = decode_image(tmp_path / "wide.png", 16)
    assert decoded.shape == (16, 16, 3)
    # Plain resizing would keep red edges; bicubic filtering lets only a trace bleed in.
    assert decoded[..., 1].min() >= 240 and decoded[..., 0].max() <= 15


def test_decode_applies_the_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    upright = decode_image(tmp_path / "sideways.jpg", 16)
    assert upright[2, 8, 0] > 200 and upright[2, 8, 2] < 50  # the left (red) half is now on top
    assert upright[13, 8, 2] > 200 and upright[13, 8, 0] < 50


def test_a_file_that_vanished_since_listing_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="cannot read the file"):
        decode_image(tmp_path / "gone.jpg", 16)


def test_images_over_the_pixel_limit_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "big.png")
    monkeypatch.setattr(data, "MAX_PIXELS", 399)
    with pytest.raises(UnreadableImage, match="decompression bomb: 20x20"):
        decode_image(tmp_path / "big.png", 16)


def test_listing_is_independent_of_directory_order(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = load_splits(config_for(image_folder, feature_cache=False))
    real_scandir = os.scandir

    class ReversedScan:
        def __init__(self, path: str | os.PathLike[str]) -> None:
            with real_scandir(path) as entries:
                self.entries = list(entries)[::-1]

        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self.entries)

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(data.os, "scandir", ReversedScan)
    reversed_order = load_splits(config_for(image_folder, feature_cache=False))
    assert reversed_order.pool.paths == expected.pool.paths
    assert torch.equal(reversed_order.val_idx, expected.val_idx)


# --- layout errors ----------------------------------------------------------------------------


def _remove(*parts: str) -> Callable[[Path], None]:
    return lambda root: shutil.rmtree(root.joinpath(*parts))


def _empty_train(root: Path) -> None:
    for folder in (root / "train").iterdir():
        shutil.rmtree(folder)


def _rename_test_class(root: Path) -> None:
    (root / "val" / "fungi").rename(root / "val" / "mushrooms")


def _unreadable_class(root: Path, split: str = "train") -> None:
    for image in (root / split / "fungi").iterdir():
        image.write_text("text, not pixels")


def _single_image_class(root: Path) -> None:
    for image in sorted((root / "train" / "fungi").iterdir())[1:]:
        image.unlink()


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (_remove(), "does not exist"),
        (_remove("train"), "has no train/ folder"),
        (_remove("val"), "has no val/ folder"),
        (_empty_train, "has no class folders"),
        (_rename_test_class, "only in train/: 'fungi'; only in val/: 'mushrooms'"),
        (_unreadable_class, "'fungi': 0 (3 skipped, e.g. train/fungi/fungi_000.jpg: not an image"),
        (lambda root: _unreadable_class(root, "val"), "val/ needs at least 1 readable image"),
        (_single_image_class, "at least 2 readable images per class"),
    ],
    ids=[
        "no-data-dir",
        "no-train",
        "no-val",
        "no-classes",
        "classes-differ",
        "unreadable-class",
        "unreadable-test-class",
        "too-few",
    ],
)
def test_bad_layouts_raise_a_clear_data_error(
    small_folder: Path, breaks: Callable[[Path], None], message: str
) -> None:
    breaks(small_folder)
    with pytest.raises(DataError, match=re.escape(message)):
        load_splits(config_for(small_folder))


# --- the split -------------------------------------------------------------------------------


LABELS = torch.tensor([0] * 10 + [1] * 5 + [2] * 2 + [3] * 7)


def test_split_is_stratified_disjoint_and_complete() -> None:
    train, val = stratified_split(LABELS, 0.2, seed=3)
    assert torch.bincount(LABELS[val]).tolist() == [2, 1, 1, 1]
    assert sorted(train.tolist() + val.tolist()) == list(range(len(LABELS)))
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())
    assert train.dtype == val.dtype == torch.int64


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_every_class_keeps_a_training_and_a_validation_image(fraction: float) -> None:
    train, val = stratified_split(LABELS, fraction, seed=0)
    assert torch.bincount(LABELS[train]).min() >= 1
    assert torch.bincount(LABELS[val]).min() >= 1


def test_split_is_seeded() -> None:
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            stratified_split(LABELS, 0.3, 7), stratified_split(LABELS, 0.3, 7), strict=True
        )
    )
    assert not torch.equal(stratified_split(LABELS, 0.3, 7)[1], stratified_split(LABELS, 0.3, 8)[1])


def test_a_class_split_does_not_depend_on_other_classes() -> None:
    alone = stratified_split(torch.zeros(10, dtype=torch.int64), 0.3, seed=1)[1]
    with_others = stratified_split(torch.tensor([0] * 10 + [1] * 9), 0.3, seed=1)[1]
    assert with_others[with_others < 10].tolist() == alone.tolist()


def test_a_class_with_one_sample_cannot_be_split() -> None:
    with pytest.raises(DataError, match="at least 2"):
        stratified_split(torch.tensor([0, 0, 1]), 0.2, seed=0)


def test_load_splits_uses_the_seeded_split(image_folder: Path) -> None:
    splits = load_splits(config_for(image_folder, seed=5, val_fraction=0.25))
    train, val = stratified_split(splits.pool.labels, 0.25, 5)
    assert torch.equal(splits.train_idx, train) and torch.equal(splits.val_idx, val)
    assert len(splits.val_idx) == 3 * 3  # 12 per class, a quarter held out


# --- the decoded-image cache in load_splits --------------------------------------------------


def test_cache_hit_skips_decoding(
    image_folder: Path, decode_calls: list[str], tmp_path: Path
) -> None:
    config = config_for(image_folder, cache_dir=str(tmp_path / "cache"))
    first = load_splits(config)
    assert len(decode_calls) == len(first.pool.paths) + len(first.test.paths)
    decode_calls.clear()
    second = load_splits(config)
    assert decode_calls == []
    assert torch.equal(first.pool.images, second.pool.images)
    assert torch.equal(first.test.images, second.test.images)
    assert (first.fingerprint, first.pool.paths) == (second.fingerprint, second.pool.paths)


def test_cache_keeps_skipped_files(messy_image_folder: Path, decode_calls: list[str]) -> None:
    first = load_splits(config_for(messy_image_folder))
    decode_calls.clear()
    second = load_splits(config_for(messy_image_folder))
    assert decode_calls == []
    assert second.skipped_files == first.skipped_files
    assert second.pool.paths == first.pool.paths


def test_default_cache_lives_under_xdg_cache_home(image_folder: Path, isolated_cache: Path) -> None:
    load_splits(config_for(image_folder))
    assert len(list((isolated_cache / "images").glob("*.pt"))) == 2  # train/ and val/


def test_cache_key_changes_with_image_size(image_folder: Path, decode_calls: list[str]) -> None:
    small = load_splits(config_for(image_folder, image_size=16))
    decode_calls.clear()
    large = load_splits(config_for(image_folder, image_size=20))
    assert len(decode_calls) == len(large.pool.paths) + len(large.test.paths)
    assert large.pool.images.shape[-1] == 20
    assert large.fingerprint != small.fingerprint


def test_cache_key_changes_with_a_changed_file(small_folder: Path, decode_calls: list[str]) -> None:
    before = load_splits(config_for(small_folder))
    changed = small_folder / "train" / "fungi" / "fungi_001.jpg"
    Image.new("RGB", (16, 16), (9, 9, 9)).save(changed)
    os.utime(changed, ns=(1, 1))
    decode_calls.clear()
    after = load_splits(config_for(small_folder))
    assert str(changed) in decode_calls
    assert after.fingerprint != before.fingerprint
    index = after.pool.paths.index("train/fungi/fungi_001.jpg")
    assert after.pool.images[index].max() <= 12


def test_corrupt_cache_file_is_rebuilt(
    image_folder: Path, isolated_cache: Path, decode_calls: list[str]
) -> None:
    expected = load_splits(config_for(image_folder))
    for cached in (isolated_cache / "images").glob("*.pt"):
        cached.write_bytes(b"PK\x03\x04 definitely not a torch file")
    decode_calls.clear()
    rebuilt = load_splits(config_for(image_folder))
    assert len(decode_calls) == len(expected.pool.paths) + len(expected.test.paths)
    assert torch.equal(rebuilt.pool.images, expected.pool.images)
    decode_calls.clear()
    load_splits(config_for(image_folder))
    assert decode_calls == []


def test_feature_cache_off_decodes_every_time(
    image_folder: Path, isolated_cache: Path, decode_calls: list[str]
) -> None:
    config = config_for(image_folder, feature_cache=False, num_workers=2)
    first = load_splits(config)
    second = load_splits(config)
    assert len(decode_calls) == 2 * (len(first.pool.paths) + len(first.test.paths))
    assert torch.equal(first.pool.images, second.pool.images)
    assert not isolated_cache.exists()


# --- augmentation and normalisation -----------------------------------------------------------


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
    monkeypatch.setattr(data, "CROP_SCALE", (1.0, 1.0))
    monkeypatch.setattr(data, "CROP_RATIO", (1.0, 1.0))
    monkeypatch.setattr(data, "JITTER", 0.0)
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


# --- loaders ---------------------------------------------------------------------------------


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
    def loader() -> data.EpochLoader:
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
    splits = load_splits(config_for(image_folder))

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
