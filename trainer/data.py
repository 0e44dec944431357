"""Data: ImageFolder listing, cached decoding, the stratified split, augmentation and loaders.

Layout: `data_dir/train/<class>/*` is split into train and val (seeded, stratified);
`data_dir/val/<class>/*` is the test set. Every image is decoded once to RGB, its short
side resized to `image_size` and centre-cropped to a square (aspect ratio kept, nothing
stretched), and held as uint8 [N, 3, S, S]. Normalisation and augmentation run per batch
on whatever device the batch is on. Files that cannot be used are skipped and listed in
`DataSplits.skipped_files` with the reason; they never stop a run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.dataloader import _BaseDataLoaderIter

from trainer.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
from trainer.errors import DataError
from trainer.imagecache import DecodedImages, ImageCache, resolve_cache_dir

#: File suffixes treated as images (case-insensitive); anything else is skipped.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
)  # fmt: skip
#: Images with more pixels are skipped as possible decompression bombs (Pillow's warning level).
MAX_PIXELS = 89_478_485
#: Bumped whenever decoding changes (resize method, colour conversion), so caches rebuild.
DECODE_VERSION = 1
AUGMENT_LEVELS = ("none", "flip", "standard")
#: Random-resized-crop: share of the image area kept, and aspect-ratio range (torchvision's).
CROP_SCALE = (0.6, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
#: Colour jitter: brightness, contrast and saturation factors are drawn from 1 ± this.
JITTER = 0.4
SPLITS = ("train", "val")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_LUMA = (0.299, 0.587, 0.114)
_SYMLINK_ERRORS = {errno.ELOOP: "symlink loop", errno.ENOENT: "broken symlink"}


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


class UnreadableImage(Exception):
    """A file that cannot be used as an image; the message is the reason shown to the user."""


@dataclass(frozen=True)
class _FileEntry:
    path: Path
    relative: str
    size: int
    mtime_ns: int


def load_splits(config: TrainConfig) -> DataSplits:
    """List, decode (through the disk cache unless `config.feature_cache` is off) and split the data.

    Raises DataError, naming the folder or classes, when the layout is wrong or a class has
    too few readable images.
    """
    root = Path(config.data_dir).expanduser()
    class_names = _class_names(root)
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


def augment_batch(images: torch.Tensor, level: str, generator: torch.Generator) -> torch.Tensor:
    """Augment uint8 [B, 3, S, S] images on their device; every random draw comes from `generator`.

    none: unchanged. flip: each image mirrored left-right with probability 1/2. standard:
    random-resized-crop (area share in CROP_SCALE, aspect in CROP_RATIO, back to S x S),
    the flip, then brightness, contrast and saturation jitter (1 ± JITTER), in that order.

    >>> batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    >>> torch.equal(augment_batch(batch, "none", torch.Generator()), batch)
    True
    """
    if level not in AUGMENT_LEVELS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_LEVELS)}, got {level!r}")
    if level == "none" or images.shape[0] == 0:
        return images
    # One row of draws per image, made on the generator's device and then moved, so a
    # generator state gives the same augmentation on the CPU or a GPU. Columns: flip,
    # crop (area, aspect, x, y), jitter (brightness, contrast, saturation).
    draws = torch.rand((images.shape[0], 8), generator=generator, device=generator.device)
    draws = draws.to(images.device)
    flip = draws[:, 0] < 0.5
    if level == "flip":
        return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    cropped = _resized_crop(images.float(), draws[:, 1:5], flip)
    jittered = _colour_jitter(cropped, 1.0 + JITTER * (2.0 * draws[:, 5:8] - 1.0))
    return jittered.round_().to(torch.uint8)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, S, S] (any device) -> float32 (x / 255 - ImageNet mean) / ImageNet std.

    >>> white = normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8))
    >>> [round(value, 3) for value in white.flatten().tolist()]
    [2.249, 2.429, 2.64]
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of non-negative ints, e.g. (seed, epoch, batch).

    >>> a, b = seeded_generator(42, 0), seeded_generator(42, 0)
    >>> torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    True
    """
    state = np.random.SeedSequence(list(keys)).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


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


def decode_image(path: str | os.PathLike[str], image_size: int) -> np.ndarray:
    """Decode one file to uint8 [S, S, 3] RGB: EXIF-rotated, short side resized to S, centre-cropped.

    Grayscale, palette, CMYK and 16-bit images are converted; transparent pixels become
    white. Raises UnreadableImage with the reason for anything else.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UnreadableImage(
                    f"decompression bomb: {width}x{height} pixels is over the {MAX_PIXELS:,} limit"
                )
            # JPEG only: libjpeg scales by 1/2..1/8 while decoding, the big saving on photos.
            image.draft("RGB", (image_size, image_size))
            rgb = _to_rgb(ImageOps.exif_transpose(image))
            fitted = ImageOps.fit(rgb, (image_size, image_size), Image.Resampling.BICUBIC)
            # np.array, not asarray: a writable copy (torch warns on read-only arrays).
            return np.array(fitted, dtype=np.uint8)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as error:
        raise UnreadableImage(f"decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image (unknown or broken format)") from None
    except (FileNotFoundError, PermissionError) as error:
        raise UnreadableImage(f"cannot read the file ({error.strerror})") from None
    except OSError as error:
        raise UnreadableImage(f"truncated or corrupt image data ({error})") from None
    # Pillow's decoders raise many other types (SyntaxError, ValueError, struct.error...)
    # on malformed files; each one means "skip this file", never "stop the run".
    except Exception as error:
        raise UnreadableImage(f"cannot decode ({type(error).__name__}: {error})") from None


def _decode_files(files: list[_FileEntry], image_size: int, workers: int) -> DecodedImages:
    """Decode `files` on a pool of `workers` threads (Pillow releases the GIL while decoding)."""
    images = torch.empty((len(files), 3, image_size, image_size), dtype=torch.uint8)
    paths: list[str] = []
    skipped: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        results = pool.map(partial(_decode_or_reason, image_size=image_size), files)
        for entry, result in zip(files, results, strict=True):
            if isinstance(result, str):
                skipped.append(f"{entry.relative}: {result}")
                continue
            images[len(paths)] = torch.from_numpy(result).permute(2, 0, 1)
            paths.append(entry.relative)
    # A prefix view would still save the whole storage: copy it when files were skipped.
    kept = images if len(paths) == len(files) else images[: len(paths)].clone()
    return DecodedImages(images=kept, paths=paths, skipped=skipped)


def _decode_or_reason(entry: _FileEntry, image_size: int) -> np.ndarray | str:
    try:
        return decode_image(entry.path, image_size)
    except UnreadableImage as error:
        return str(error)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's I;16 -> L conversion clips at 255 instead of scaling: keep the top 8 bits.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # The colour under transparent pixels is arbitrary (often black): show white instead.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _resized_crop(images: torch.Tensor, draws: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Random-resized-crop (+ flip) of float images as one batched affine resample."""
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * draws[:, 0]
    log_low, log_high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(log_low + (log_high - log_low) * draws[:, 1])
    # Width and height as fractions of the image; clamped rather than re-drawn when too wide.
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    # affine_grid works in [-1, 1]: the crop centre can move by (1 - size) either way.
    centre_x = (1.0 - width) * (2.0 * draws[:, 2] - 1.0)
    centre_y = (1.0 - height) * (2.0 * draws[:, 3] - 1.0)
    theta = torch.zeros((images.shape[0], 2, 3), dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = torch.where(flip, -width, width)
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _colour_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation (torchvision's formulas) with per-image factors [B, 3]."""
    brightness, contrast, saturation = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    out = (images * brightness).clamp_(0.0, 255.0)
    mean = (out * luma).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean).clamp_(0.0, 255.0)
    gray = (out * luma).sum(dim=1, keepdim=True)
    return ((out - gray) * saturation + gray).clamp_(0.0, 255.0)


def _class_names(root: Path) -> list[str]:
    """Sorted class folder names, checked to be the same in train/ and val/."""
    if not root.is_dir():
        raise DataError(
            f"data_dir {str(root)!r} does not exist or is not a folder: it must hold "
            "train/<class>/ and val/<class>/ image folders"
        )
    missing = [f"{split}/" for split in SPLITS if not (root / split).is_dir()]
    if missing:
        found = sorted(entry.name for entry in os.scandir(root) if not entry.name.startswith("."))
        raise DataError(
            f"{str(root)!r} has no {' and no '.join(missing)} folder (found: {', '.join(found) or 'nothing'}): "
            "expected train/<class>/* and val/<class>/* (val/ is the test set)"
        )
    train, test = (_class_folders(root / split) for split in SPLITS)
    for split, names in zip(SPLITS, (train, test), strict=True):
        if not names:
            raise DataError(
                f"{str(root / split)!r} has no class folders: put each class's images in {split}/<class>/"
            )
    if train != test:
        only_train = ", ".join(repr(name) for name in train if name not in test) or "none"
        only_test = ", ".join(repr(name) for name in test if name not in train) or "none"
        raise DataError(
            f"train/ and val/ of {str(root)!r} must have the same class folders: "
            f"only in train/: {only_train}; only in val/: {only_test}"
        )
    return train


def _class_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and _is_dir(e))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop or a folder we may not read: not a class folder
        return False


def _load_split(
    root: Path,
    split: str,
    class_names: list[str],
    image_size: int,
    cache: ImageCache | None,
    workers: int,
) -> tuple[ImageTensors, list[str], str]:
    """(images, skipped files, cache key) of one split folder."""
    files, skipped = _list_files(root, split, class_names)
    key = _files_key(files, image_size)
    build = partial(_decode_files, files, image_size, workers)
    decoded = cache.get_or_build(key, image_size, build) if cache is not None else build()
    index = {name: i for i, name in enumerate(class_names)}
    labels = torch.tensor([index[path.split("/")[1]] for path in decoded.paths], dtype=torch.int64)
    tensors = ImageTensors(images=decoded.images, labels=labels, paths=decoded.paths)
    return tensors, sorted(skipped + decoded.skipped), key


def _list_files(
    root: Path, split: str, class_names: list[str]
) -> tuple[list[_FileEntry], list[str]]:
    """Image files of every class folder (recursively, sorted) and the files skipped on the way.

    Hidden entries are ignored; symlinks are followed, except back into a folder already
    scanned (a loop, or another class's folder), which is skipped.
    """
    split_dir = root / split
    visited = {_folder_id(root), _folder_id(split_dir)}
    visited |= {_folder_id(split_dir / name) for name in class_names}
    files: list[_FileEntry] = []
    skipped: list[str] = []
    for name in class_names:
        stack = [split_dir / name]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as scan:
                    entries = sorted(scan, key=lambda entry: entry.name)
            except OSError as error:
                skipped.append(
                    f"{folder.relative_to(root).as_posix()}: cannot list folder ({error.strerror})"
                )
                continue
            for entry in entries:
                if not entry.name.startswith("."):
                    _visit(entry, root, visited, stack, files, skipped)
    files.sort(key=lambda entry: entry.relative)
    return files, skipped


def _visit(
    entry: os.DirEntry[str],
    root: Path,
    visited: set[tuple[int, int]],
    stack: list[Path],
    files: list[_FileEntry],
    skipped: list[str],
) -> None:
    path = Path(entry.path)
    relative = path.relative_to(root).as_posix()
    try:
        info = entry.stat()  # follows symlinks
    except OSError as error:
        if entry.is_symlink() and error.errno in _SYMLINK_ERRORS:
            skipped.append(f"{relative}: {_SYMLINK_ERRORS[error.errno]}")
        else:
            skipped.append(f"{relative}: cannot read ({error.strerror})")
        return
    if stat.S_ISDIR(info.st_mode):
        if (info.st_dev, info.st_ino) in visited:
            skipped.append(f"{relative}: links to a folder already scanned (a loop), not followed")
        else:
            visited.add((info.st_dev, info.st_ino))
            stack.append(path)
    elif not stat.S_ISREG(info.st_mode):
        skipped.append(f"{relative}: not a regular file")
    elif path.suffix.lower() not in IMAGE_EXTENSIONS:
        skipped.append(f"{relative}: not an image file extension")
    elif info.st_size == 0:
        skipped.append(f"{relative}: empty file (0 bytes)")
    else:
        files.append(_FileEntry(path, relative, info.st_size, info.st_mtime_ns))


def _folder_id(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


def _files_key(files: list[_FileEntry], image_size: int) -> str:
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
