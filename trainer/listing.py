"""Listing an ImageFolder split: its class folders and image files, and what is skipped and why.

Hidden entries are ignored; symlinks are followed, except back into a folder already
scanned. A file that cannot be an image (wrong extension, empty, unreadable) is skipped
with its reason, never an error; a wrong layout is a `DataError` that says how to fix it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import DataError

#: File suffixes treated as images (case-insensitive); anything else is skipped.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
)  # fmt: skip
SPLITS = ("train", "val")

_SYMLINK_ERRORS = {errno.ELOOP: "symlink loop", errno.ENOENT: "broken symlink"}


@dataclass(frozen=True)
class ImageFile:
    """One image file of a split: its path, its path relative to data_dir, size and mtime."""

    path: Path
    relative: str
    size: int
    mtime_ns: int


def list_classes(root: Path) -> list[str]:
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


def list_files(root: Path, split: str, class_names: list[str]) -> tuple[list[ImageFile], list[str]]:
    """Image files of every class folder (recursively, sorted) and the files skipped on the way.

    Hidden entries are ignored; symlinks are followed, except back into a folder already
    scanned (a loop, or another class's folder), which is skipped.
    """
    split_dir = root / split
    visited = {_folder_id(root), _folder_id(split_dir)}
    visited |= {_folder_id(split_dir / name) for name in class_names}
    files: list[ImageFile] = []
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
    files: list[ImageFile],
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
        files.append(ImageFile(path, relative, info.st_size, info.st_mtime_ns))


def _folder_id(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino
