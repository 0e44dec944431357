"""Data: the dataset of one run, listed, decoded (through the disk cache) and split.

Layout: `data_dir/train/<class>/*` is split into train and val (seeded, stratified);
`data_dir/val/<class>/*` is the test set. Images are held as uint8 [N, 3, S, S]
(trainer.decode); normalisation and augmentation run per batch (trainer.augment,
trainer.loader). Files that cannot be used are skipped and listed in
`DataSplits.skipped_files` with the reason (trainer.listing); they never stop a run.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from trainer.config import TrainConfig
from trainer.decode import DECODE_VERSION, MAX_PIXELS, decode_files
from trainer.errors import DataError
from trainer.imagecache import ImageCache, resolve_cache_dir
from trainer.listing import SPLITS, ImageFile, list_classes, list_files


@dataclass(frozen=True)
class ImageTensors:
    """Decoded images of one folder: uint8 [N, 3, S, S] RGB, int64 labels, paths relative to data_dir."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class DataSplits:
    """The dataset of one run: the train/ pool with its train/val split, and val/ as the test set.

    `fingerprint` is a hex digest of both file lists (path, size, mtime_ns) and image_size;
    caches of anything computed from the images key on it.
    """

    class_names: list[str]
    pool: ImageTensors
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    test: ImageTensors
    skipped_files: list[str]
    fingerprint: str

    @property
    def num_classes(self) -> int:
        """How many classes the model must tell apart."""
        return len(self.class_names)


def load_splits(config: TrainConfig) -> DataSplits:
    """List, decode (through the disk cache unless `config.feature_cache` is off) and split the data.

    Raises DataError, naming the folder or classes, when the layout is wrong or a class has
    too few readable images.
    """
    root = Path(config.data_dir).expanduser()
    class_names = list_classes(root)
    cache = ImageCache(resolve_cache_dir(config.cache_dir)) if config.feature_cache else None
    workers = max(1, config.num_workers)
    loaded = {
        split: _load_split(root, split, class_names, config.image_size, cache, workers)
        for split in SPLITS
    }
    (pool, pool_skipped, pool_key), (test, test_skipped, test_key) = loaded["train"], loaded["val"]
    skipped = pool_skipped + test_skipped
    _check_counts(pool, "train", class_names, skipped, minimum=2)
    _check_counts(test, "val", class_names, skipped, minimum=1)
    train_idx, val_idx = stratified_split(pool.labels, config.val_fraction, config.seed)
    return DataSplits(
        class_names=class_names,
        pool=pool,
        train_idx=train_idx,
        val_idx=val_idx,
        test=test,
        skipped_files=skipped,
        fingerprint=hashlib.sha256(f"{pool_key}:{test_key}".encode()).hexdigest(),
    )


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into sorted int64 (train, val) tensors, class by class.

    A class of n samples puts round(n * val_fraction), clamped to [1, n - 1], in val, so
    every class keeps a training image and is validated. Each class's draw is seeded by
    (seed, label), so it does not depend on the other classes.

    >>> train, val = stratified_split(torch.tensor([0] * 5 + [1] * 5), 0.2, seed=0)
    >>> len(train), len(val), sorted(torch.tensor([0] * 5 + [1] * 5)[val].tolist())
    (8, 2, [0, 1])
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    values = labels.cpu().numpy()
    train_parts: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    val_parts: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    for label in np.unique(values):
        members = np.flatnonzero(values == label)
        if members.size < 2:
            raise DataError(
                f"class {int(label)} has {members.size} image(s): a train/val split needs at least 2"
            )
        n_val = min(max(math.floor(members.size * val_fraction + 0.5), 1), members.size - 1)
        order = np.random.default_rng([seed, int(label)]).permutation(members.size)
        val_parts.append(members[order[:n_val]])
        train_parts.append(members[order[n_val:]])
    return (
        torch.from_numpy(np.sort(np.concatenate(train_parts))).long(),
        torch.from_numpy(np.sort(np.concatenate(val_parts))).long(),
    )


def _load_split(
    root: Path,
    split: str,
    class_names: list[str],
    image_size: int,
    cache: ImageCache | None,
    workers: int,
) -> tuple[ImageTensors, list[str], str]:
    """(images, skipped files, cache key) of one split folder."""
    files, skipped = list_files(root, split, class_names)
    key = _files_key(files, image_size)
    build = partial(decode_files, files, image_size, workers)
    decoded = cache.get_or_build(key, image_size, build) if cache is not None else build()
    index = {name: i for i, name in enumerate(class_names)}
    labels = torch.tensor([index[path.split("/")[1]] for path in decoded.paths], dtype=torch.int64)
    tensors = ImageTensors(images=decoded.images, labels=labels, paths=decoded.paths)
    return tensors, sorted(skipped + decoded.skipped), key


def _files_key(files: list[ImageFile], image_size: int) -> str:
    """Cache key: what was decoded (path, size, mtime_ns), at which size, by which decoder."""
    listing = [[entry.relative, entry.size, entry.mtime_ns] for entry in files]
    payload = {
        "decode": DECODE_VERSION,
        "max_pixels": MAX_PIXELS,
        "size": image_size,
        "files": listing,
    }
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _check_counts(
    data: ImageTensors, split: str, class_names: list[str], skipped: list[str], minimum: int
) -> None:
    """DataError naming every class of `split` with fewer than `minimum` readable images."""
    counts = torch.bincount(data.labels, minlength=len(class_names)).tolist()
    short = [
        (name, count) for name, count in zip(class_names, counts, strict=True) if count < minimum
    ]
    if not short:
        return
    details = []
    for name, count in short:
        reasons = [line for line in skipped if line.startswith(f"{split}/{name}/")]
        note = f" ({len(reasons)} skipped, e.g. {reasons[0]})" if reasons else ""
        details.append(f"{name!r}: {count}{note}")
    need = (
        "at least 2 readable images per class (one to train on, one to validate)"
        if minimum > 1
        else "at least 1 readable image per class"
    )
    raise DataError(f"{split}/ needs {need}; readable images: " + "; ".join(details))
