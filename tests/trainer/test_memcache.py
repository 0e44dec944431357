"""Tests for trainer.memcache: the byte-bounded memory cache."""

from __future__ import annotations

import pytest
import torch

from trainer.memcache import DEFAULT_MAX_BYTES, MemoryCache, max_bytes_from_env


def test_least_recently_used_goes_first() -> None:
    cache = MemoryCache(max_bytes=3 * 40)
    for key in "abc":
        cache.put(key, torch.zeros(10))
    cache.get("a")
    cache.put("d", torch.zeros(10))
    assert cache.keys() == ["c", "a", "d"]
    assert cache.get("b") is None and cache.held_bytes == 120


def test_an_entry_larger_than_the_bound_is_not_kept_and_replacing_counts_once() -> None:
    cache = MemoryCache(max_bytes=100)
    cache.put("big", torch.zeros(26))
    assert cache.keys() == [] and cache.held_bytes == 0
    cache.put("a", torch.zeros(10))
    cache.put("a", torch.zeros(20))
    assert cache.held_bytes == 80


@pytest.mark.parametrize(
    ("value", "expected"), [("", DEFAULT_MAX_BYTES), ("0", 0), ("1.5", 3 << 19)]
)
def test_the_bound_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("SWEEPER_MEMORY_CACHE_MB", value)
    assert max_bytes_from_env() == expected
