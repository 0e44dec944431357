"""Tests for trainer.features: the on-disk cache of frozen-prefix features."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from trainer import memcache
from trainer.errors import Interrupted, TrainerError
from trainer.features import (
    BUILD_CHUNK,
    FeatureCache,
    estimated_bytes,
    feature_shape,
    storage_dtype,
)

torch.set_num_threads(1)

IDENTITY = {
    "fingerprint": "abc",
    "model": "toy",
    "weights": "none",
    "image_size": 8,
    "frozen_units": 1,
    "precision": "fp32",
}


class CountingPrefix(nn.Module):
    """A frozen 'backbone' that counts the images it sees: pooled (or spatial) channel means."""

    def __init__(self, spatial: bool = False) -> None:
        super().__init__()
        self.spatial = spatial
        self.images = 0
        self.lock = threading.Lock()

    def forward(self, x: Tensor) -> Tensor:
        with self.lock:
            self.images += x.shape[0]
        return x[:, :, :2, :2] * 1.0 if self.spatial else x.mean(dim=(2, 3))


def _images(count: int = 10, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 8, 8), dtype=torch.uint8, generator=generator)


def _cache(root: Path, prefix: nn.Module, **identity: object) -> FeatureCache:
    return FeatureCache(root, prefix, {**IDENTITY, **identity}, torch.device("cpu"))


def test_features_are_computed_once_and_shared_through_disk(tmp_path: Path) -> None:
    images = _images()
    first_prefix, second_prefix = CountingPrefix(), CountingPrefix()
    first = _cache(tmp_path, first_prefix).get("pool", images)
    second = _cache(tmp_path, second_prefix).get("pool", images)
    torch.testing.assert_close(first, second)
    assert (first_prefix.images, second_prefix.images) == (10, 0)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1


def test_a_run_reads_each_file_once(tmp_path: Path) -> None:
    prefix, images = CountingPrefix(), _images()
    cache = _cache(tmp_path, prefix)
    assert cache.get("pool", images) is cache.get("pool", images)
    assert prefix.images == 10


@pytest.mark.parametrize(
    ("change", "value"),
    [("fingerprint", "other"), ("weights", "sha256:1"), ("frozen_units", 2), ("precision", "bf16")],
)
def test_each_identity_field_gets_its_own_file(tmp_path: Path, change: str, value: object) -> None:
    images = _images()
    _cache(tmp_path, CountingPrefix()).get("pool", images)
    prefix = CountingPrefix()
    _cache(tmp_path, prefix, **{change: value}).get("pool", images)
    assert prefix.images == 10
    assert len(list((tmp_path / "features").glob("*.pt"))) == 2


def test_augmented_views_are_reproducible_and_distinct(tmp_path: Path) -> None:
    images = _images(20)
    cache_a, cache_b = (
        _cache(tmp_path / "a", CountingPrefix()),
        _cache(tmp_path / "b", CountingPrefix()),
    )
    view0, view1 = (
        cache_a.get("pool", images, "standard", 0),
        cache_a.get("pool", images, "standard", 1),
    )
    torch.testing.assert_close(cache_b.get("pool", images, "standard", 1), view1)
    assert not torch.allclose(view0, view1)
    assert not torch.allclose(view0, cache_a.get("pool", images))


def test_views_do_not_matter_without_augmentation(tmp_path: Path) -> None:
    prefix, images = CountingPrefix(), _images()
    cache = _cache(tmp_path, prefix)
    assert cache.get("pool", images, "none", 3) is cache.get("pool", images, "none", 0)
    assert prefix.images == 10


@pytest.mark.parametrize(("spatial", "dtype"), [(False, torch.float32), (True, torch.float16)])
def test_pooled_vectors_stay_float32_and_maps_become_float16(
    tmp_path: Path, spatial: bool, dtype: torch.dtype
) -> None:
    features = _cache(tmp_path, CountingPrefix(spatial)).get("pool", _images())
    assert features.dtype == dtype == storage_dtype(features)
    assert features.shape == ((10, 3, 2, 2) if spatial else (10, 3))


@pytest.mark.parametrize("damage", [b"garbage", b""])
def test_damaged_file_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    images = _images()
    expected = _cache(tmp_path, CountingPrefix()).get("pool", images)
    (path,) = (tmp_path / "features").glob("*.pt")
    path.write_bytes(damage)
    prefix = CountingPrefix()
    with caplog.at_level(logging.WARNING, logger="trainer"):
        rebuilt = _cache(tmp_path, prefix).get("pool", images)
    torch.testing.assert_close(rebuilt, expected)
    assert prefix.images == 10 and "rebuilding" in caplog.text


def test_file_for_another_image_count_is_rebuilt(tmp_path: Path) -> None:
    _cache(tmp_path, CountingPrefix()).get("pool", _images(10))
    assert _cache(tmp_path, CountingPrefix()).get("pool", _images(12)).shape[0] == 12


def test_concurrent_builders_compute_once(tmp_path: Path) -> None:
    prefix, images = CountingPrefix(), _images(3 * BUILD_CHUNK)
    results: list[Tensor] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(_cache(tmp_path, prefix).get("pool", images))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and prefix.images == 3 * BUILD_CHUNK
    for result in results[1:]:
        torch.testing.assert_close(result, results[0])


def test_stop_event_interrupts_a_build_and_leaves_no_file(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    cache = FeatureCache(tmp_path, CountingPrefix(), IDENTITY, torch.device("cpu"), stop_event=stop)
    with pytest.raises(Interrupted):
        cache.get("pool", _images())
    assert list((tmp_path / "features").glob("*.pt")) == []


def test_unwritable_cache_dir_is_a_trainer_error(tmp_path: Path) -> None:
    (tmp_path / "features").write_text("a file where the folder should be")
    with pytest.raises(TrainerError, match="feature_cache: false"):
        _cache(tmp_path, CountingPrefix()).get("pool", _images())


def test_feature_shape_and_size_estimate() -> None:
    prefix = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1))
    assert feature_shape(prefix, 16, torch.device("cpu")) == (4, 8, 8)
    assert prefix.training
    assert estimated_bytes((4, 8, 8), 10) == 4 * 8 * 8 * 2 * 10
    assert estimated_bytes((512,), 10) == 512 * 4 * 10


def test_the_next_run_in_this_process_reads_features_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _images()
    expected = _cache(tmp_path, CountingPrefix()).get("pool", images)

    def no_disk(*args: object) -> None:
        raise AssertionError("read from disk")

    monkeypatch.setattr("trainer.features._read", no_disk)
    prefix = CountingPrefix()
    assert _cache(tmp_path, prefix).get("pool", images) is expected
    assert prefix.images == 0


def test_a_rewritten_file_is_not_served_from_memory(tmp_path: Path) -> None:
    images = _images()
    _cache(tmp_path, CountingPrefix()).get("pool", images)
    (path,) = (tmp_path / "features").glob("*.pt")
    path.write_bytes(b"garbage")
    prefix = CountingPrefix()
    _cache(tmp_path, prefix).get("pool", images)
    assert prefix.images == 10


def test_memory_is_bounded_and_evicts_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounded = memcache.MemoryCache(max_bytes=10 * 3 * 4)  # one split's pooled features
    monkeypatch.setattr(memcache, "features", bounded)
    _cache(tmp_path, CountingPrefix()).get("pool", _images())
    pool_key = bounded.keys()
    _cache(tmp_path, CountingPrefix()).get("test", _images())
    assert len(bounded.keys()) == 1 and bounded.keys() != pool_key
    assert bounded.held_bytes == 120
    prefix = CountingPrefix()
    _cache(tmp_path, prefix).get("pool", _images())  # evicted from memory, read from disk
    assert prefix.images == 0
