"""A process-wide, size-bounded memory cache of tensors, for runs trained back to back.

A worker that trains many runs in one process keeps the frozen features of the current
dataset and backbone in memory, so its next run skips reading the disk cache (decoded
images stay warm in the page cache instead; see trainer.imagecache). Entries are evicted least recently used first once the
bytes held pass the bound; an entry larger than the bound is never kept. The disk
caches stay the source of truth: an evicted entry is read from disk again.

`functools.lru_cache` bounds by count, not bytes, and one dataset's features can be
gigabytes; hence this small class.

>>> import torch
>>> cache = MemoryCache(max_bytes=64)
>>> cache.put("a", torch.zeros(8))  # 32 bytes
>>> cache.put("b", torch.zeros(8))
>>> cache.get("a") is not None       # touch "a": "b" is now the oldest
True
>>> cache.put("c", torch.zeros(8))   # over 64 bytes: "b" goes
>>> sorted(cache.keys()), cache.held_bytes
(['a', 'c'], 64)
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable

import torch

#: Default bound per cache, overridable with SWEEPER_MEMORY_CACHE_MB (0 turns it off).
DEFAULT_MAX_BYTES = 2 << 30


def max_bytes_from_env() -> int:
    """The bound from SWEEPER_MEMORY_CACHE_MB, else `DEFAULT_MAX_BYTES`."""
    text = os.environ.get("SWEEPER_MEMORY_CACHE_MB", "").strip()
    return int(float(text) * (1 << 20)) if text else DEFAULT_MAX_BYTES


def nbytes(tensor: torch.Tensor) -> int:
    """Bytes held by `tensor`'s elements."""
    return tensor.numel() * tensor.element_size()


class MemoryCache:
    """Least recently used entries, bounded by their total bytes; safe across threads."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes_from_env() if max_bytes is None else max_bytes
        self._entries: OrderedDict[Hashable, tuple[torch.Tensor, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.held_bytes = 0

    def get(self, key: Hashable) -> torch.Tensor | None:
        """The entry, now the most recently used; None when absent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: torch.Tensor) -> None:
        """Keep `value`, evicting the oldest entries to stay within the bound."""
        size = nbytes(value)
        with self._lock:
            self._drop(key)
            if size > self.max_bytes:
                return
            while self._entries and self.held_bytes + size > self.max_bytes:
                self._drop(next(iter(self._entries)))
            self._entries[key] = (value, size)
            self.held_bytes += size

    def keys(self) -> list[Hashable]:
        """The keys, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self.held_bytes = 0

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.held_bytes -= entry[1]


#: The frozen features this process holds (trainer.features).
features = MemoryCache()
