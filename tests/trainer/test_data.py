"""Tests for trainer.data: loading a run's dataset (listing and decoding seen through
`load_splits`), layout errors, the split, and the decoded-image cache in use."""

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

import trainer.decode as decode
import trainer.listing as listing
from tests.imagefolder import write_image_folder
from trainer.config import TrainConfig
from trainer.data import (
    load_splits,
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
    real = decode.decode_image

    def counting(path: str | os.PathLike[str], image_size: int) -> np.ndarray:
        calls.append(str(path))
        return real(path, image_size)

    monkeypatch.setattr(decode, "decode_image", counting)
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

    monkeypatch.setattr(listing.os, "scandir", ReversedScan)
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
