"""Disk cache of decoded, resized images, so JPEG decoding is paid once per sweep, not per run.

One file per (split file list, image size) key: `<cache_dir>/images/<key>.pt`, a plain
`torch.save` dict loaded with `weights_only=True` and memory-mapped, so every run process
on a machine shares one copy in the page cache. Files are written to a temp name in the
same folder and `os.replace()`d; a `FileLock` makes concurrent builders of the same key
take turns, so the second one reads what the first one wrote instead of decoding again.
A file that does not load or does not have the expected structure is rebuilt, not trusted.
A worker that trains runs back to back keeps these images warm through the mapping: the
pages stay in the page cache, shared by every process, and a re-read costs only the
file's header. They are deliberately not kept as one tensor shared between the runs of a
process, where a run writing into its images would change the next run's data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import torch
from filelock import FileLock

from trainer.atomic import save_atomic
from trainer.errors import DataError

#: Bumped whenever the file layout changes, so old files are rebuilt rather than misread.
FORMAT_VERSION = 1


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: `cache_dir` if given, else `$XDG_CACHE_HOME/sweeper`, else `~/.cache/sweeper`.

    >>> resolve_cache_dir("/tmp/c").as_posix()
    '/tmp/c'
    """
    if cache_dir:
        return Path(cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sweeper"


@dataclass(frozen=True)
class DecodedImages:
    """The decoded files of one split, in file-list order.

    images: uint8 [N, 3, S, S]; paths: the N decoded files; skipped: "path: reason" for
    each file of the list that could not be decoded.
    """

    images: torch.Tensor
    paths: list[str]
    skipped: list[str]


class ImageCache:
    """Decoded images on disk, one file per key, safe for concurrent processes.

    >>> cache = ImageCache(resolve_cache_dir("/tmp/sweeper-doc-cache"))
    >>> cache.path_for("ab12").name
    'ab12.pt'
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.folder = Path(root) / "images"

    def path_for(self, key: str) -> Path:
        """Where the images of `key` live (the file may not exist yet)."""
        return self.folder / f"{key}.pt"

    def get_or_build(
        self, key: str, image_size: int, build: Callable[[], DecodedImages]
    ) -> DecodedImages:
        """Return the cached images of `key`, calling `build` and storing its result on a miss.

        Raises DataError when the cache folder cannot be created or written.
        """
        path = self.path_for(key)
        # Lock-free fast path: files only ever appear complete (written then renamed).
        cached = self.read(key, image_size)
        if cached is not None:
            return cached
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with FileLock(f"{path}.lock"):
                # Another process may have finished building while we waited for the lock.
                cached = self.read(key, image_size)
                if cached is not None:
                    return cached
                decoded = build()
                self._write(path, key, decoded)
                return decoded
        except OSError as error:
            raise DataError(
                f"cannot write the image cache in {self.folder} ({error.strerror or error}): "
                "set cache_dir to a writable folder, or feature_cache: false to decode every run"
            ) from error

    def read(self, key: str, image_size: int) -> DecodedImages | None:
        """The cached images of `key`, or None when absent, unreadable or malformed."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        # A damaged file can fail inside zip, pickle or storage code with many exception
        # types; any failure means "rebuild", never "crash".
        except Exception:
            return None
        return _validated(payload, key, image_size)

    def _write(self, path: Path, key: str, decoded: DecodedImages) -> None:
        payload = {
            "format": FORMAT_VERSION,
            "key": key,
            "images": decoded.images.contiguous(),
            "paths": list(decoded.paths),
            "skipped": list(decoded.skipped),
        }
        save_atomic(path, payload)


def _validated(payload: object, key: str, image_size: int) -> DecodedImages | None:
    """`payload` as DecodedImages if it has exactly the structure `_write` produces."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        return None
    images, paths, skipped = payload.get("images"), payload.get("paths"), payload.get("skipped")
    if payload.get("key") != key or not isinstance(images, torch.Tensor):
        return None
    if not _is_str_list(paths) or not _is_str_list(skipped):
        return None
    if images.dtype != torch.uint8 or tuple(images.shape) != (
        len(paths),
        3,
        image_size,
        image_size,
    ):
        return None
    return DecodedImages(images=images, paths=paths, skipped=skipped)


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
