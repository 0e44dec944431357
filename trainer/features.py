"""Frozen-feature cache: run the frozen prefix of a model once, reuse its output in every run.

When the first units of a model are frozen (head mode: the whole backbone; partial:
the leading frozen blocks), their output depends only on the input images and the
starting weights. `FeatureCache` computes it once per

    (data fingerprint, split, model, weights identity, image size, frozen prefix,
     augment level, view index, precision)

and keeps it under `<cache_dir>/features/<sha256>.pt`. Files are written to a temp
name and renamed, under a `FileLock`, so concurrent runs of a sweep build each file
once and never read a half-written one. A file read or written is also kept in the
process's bounded memory cache (`trainer.memcache.features`, keyed by the file's path,
size and mtime), so the next run in the same worker process skips the disk. Pooled vectors are stored as float32 (they
are small and head runs then match the uncached path exactly); spatial maps from a
partial prefix as float16.

With augmentation, view k of the training images is `augment_batch` with a
generator seeded by k, so every run of a sweep shares the same views; epochs cycle
through `augment_views` of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import Tensor, nn

from trainer import memcache
from trainer.atomic import save_atomic
from trainer.augment import augment_batch, normalize
from trainer.errors import Interrupted, TrainerError

log = logging.getLogger("trainer")

#: Bump when the stored layout or the way features are computed changes.
CACHE_VERSION = 1
#: Images per forward pass while building; fixed so that augmented views do not depend on batch_size.
BUILD_CHUNK = 64
#: A cache larger than this (all views together) is not built; the run uses the plain path.
MAX_CACHE_BYTES = 8 << 30


class FeatureCache:
    """Features of a frozen prefix (`nn.Sequential` of leading model units) for one dataset.

    `identity` names everything the features depend on besides split, augment level
    and view (fingerprint, model, weights identity, image size, prefix length,
    precision); it is hashed into the file name and stored in the file.
    """

    def __init__(
        self,
        root: Path,
        prefix: nn.Module,
        identity: dict[str, Any],
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.root = Path(root) / "features"
        self.prefix = prefix
        self.identity = {"version": CACHE_VERSION, **identity}
        self.device = device
        self.autocast = autocast
        self.stop_event = stop_event
        self._memory: dict[str, Tensor] = {}

    def get(self, split: str, images: Tensor, augment: str = "none", view: int = 0) -> Tensor:
        """Features of every image of `images` (uint8 [N,3,S,S]) for one split/augment/view.

        Read from disk when present, else computed and written; kept in memory for the
        rest of this run either way.
        """
        key = {
            **self.identity,
            "split": split,
            "augment": augment,
            "view": view if augment != "none" else 0,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
        if digest not in self._memory:
            self._memory[digest] = self._load_or_build(digest, key, images)
        return self._memory[digest]

    def _load_or_build(self, digest: str, key: dict[str, Any], images: Tensor) -> Tensor:
        path = self.root / f"{digest}.pt"
        known = _file_key(path)
        remembered = memcache.features.get(known) if known is not None else None
        if remembered is not None and remembered.shape[0] == images.shape[0]:
            return remembered
        features = self._read_or_build(path, key, images)
        known = _file_key(path)
        if known is not None:
            memcache.features.put(known, features)
        return features

    def _read_or_build(self, path: Path, key: dict[str, Any], images: Tensor) -> Tensor:
        # Lock-free fast path: files only ever appear complete (written, then renamed).
        stored = _read(path, key, images.shape[0])
        if stored is not None:
            return stored
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with FileLock(str(path) + ".lock"):
                # Another process may have built it while this one waited for the lock.
                stored = _read(path, key, images.shape[0])
                if stored is not None:
                    return stored
                features = self._compute(images, key["augment"], key["view"])
                save_atomic(path, {"key": key, "features": features})
        except OSError as e:
            raise TrainerError(
                f"cannot write the feature cache in {self.root} ({e.strerror or e}): "
                "set cache_dir to a writable folder, or feature_cache: false"
            ) from e
        log.info(
            "feature cache: wrote %s (%s, augment %s view %d, %s)",
            path.name, key["split"], key["augment"], key["view"], tuple(features.shape),
        )  # fmt: skip
        return features

    def _compute(self, images: Tensor, augment: str, view: int) -> Tensor:
        generator = torch.Generator().manual_seed(view)
        chunks: list[Tensor] = []
        was_training = self.prefix.training
        self.prefix.eval()
        try:
            for start in range(0, images.shape[0], BUILD_CHUNK):
                if self.stop_event is not None and self.stop_event.is_set():
                    raise Interrupted("stopped while building the feature cache")
                batch = images[start : start + BUILD_CHUNK]
                if augment != "none":
                    batch = augment_batch(batch, augment, generator)
                # The cost of the cache: one pass of the frozen prefix per view.
                with torch.inference_mode(), self.autocast():
                    out = self.prefix(normalize(batch.to(self.device, non_blocking=True)))
                chunks.append(out.to("cpu", storage_dtype(out)))
        finally:
            self.prefix.train(was_training)
        return torch.cat(chunks) if chunks else torch.empty(0)


def storage_dtype(features: Tensor) -> torch.dtype:
    """float32 for pooled vectors ([N, C]), float16 for spatial maps ([N, C, H, W])."""
    return torch.float32 if features.dim() <= 2 else torch.float16


def feature_shape(prefix: nn.Module, image_size: int, device: torch.device) -> tuple[int, ...]:
    """Shape of one image's features, from a forward pass of a blank image."""
    was_training = prefix.training
    prefix.eval()
    try:
        with torch.inference_mode():
            out = prefix(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        prefix.train(was_training)
    return tuple(out.shape[1:])


def estimated_bytes(shape: tuple[int, ...], images: int) -> int:
    """Bytes the cache needs for `images` feature tensors of `shape`."""
    numel = 1
    for size in shape:
        numel *= size
    itemsize = 4 if len(shape) <= 1 else 2
    return numel * itemsize * images


def _file_key(path: Path) -> tuple[str, int, int] | None:
    """What the memory cache knows a file by: a file rewritten or removed is a miss."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _read(path: Path, key: dict[str, Any], count: int) -> Tensor | None:
    """The stored features, or None when absent, unreadable or written for other images."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a damaged or foreign file fails in many ways; each means "rebuild"
        log.warning("feature cache: rebuilding unreadable %s (%s)", path.name, e)
        return None
    valid = isinstance(stored, dict) and stored.get("key") == key
    features = stored.get("features") if valid else None
    if not isinstance(features, Tensor) or features.shape[0] != count:
        log.warning("feature cache: rebuilding %s, written for other images", path.name)
        return None
    return features
