"""Fixtures shared by the trainer tests: an isolated cache and a dataset full of bad files."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.imagefolder import write_image_folder

MESSY_CLASS = "Aves sp é"
GOOD_PER_CLASS = 3


@dataclass(frozen=True)
class MessyExpected:
    """What loading `messy_image_folder` must give for train/'Aves sp é'."""

    messy_class: str = MESSY_CLASS
    good_per_class: int = GOOD_PER_CLASS
    #: Files that load after conversion, besides the good ones.
    converted: tuple[str, ...] = (
        "cmyk.jpg",
        "gray.png",
        "palette.png",
        "rgba.png",
        "sixteen_bit.png",
    )
    #: Files that are skipped, with a word their reason contains.
    skipped: tuple[tuple[str, str], ...] = (
        ("bomb.png", "decompression bomb"),
        ("empty.jpg", "empty"),
        ("loop", "loop"),
        ("notes.jpg", "not an image"),
        ("readme.txt", "extension"),
        ("self.jpg", "symlink loop"),
        ("truncated.jpg", "truncated"),
    )


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default cache ($XDG_CACHE_HOME/sweeper) into the test's own tmp_path."""
    cache_home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return cache_home / "sweeper"


@pytest.fixture(scope="session")
def messy_image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Classes 'Aves sp é' and 'fungi', 3 good JPEGs each per split, 20 px.

    train/'Aves sp é' also holds files to convert (CMYK JPEG, grayscale, palette, RGBA with
    a transparent half, 16-bit PNG) and files to skip (a decompression-bomb PNG header, zero
    bytes, text named .jpg, a truncated JPEG, a self-referencing symlink, a symlink to its
    own folder, a .txt): see MessyExpected. Hidden files and a hidden folder are ignored.
    Session-scoped and read-only by convention: copy it to change it.
    """
    root = write_image_folder(
        tmp_path_factory.mktemp("data") / "messy",
        classes=(MESSY_CLASS, "fungi"),
        n_train=GOOD_PER_CLASS,
        n_test=GOOD_PER_CLASS,
        size=20,
    )
    folder = root / "train" / MESSY_CLASS
    Image.new("CMYK", (20, 30), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    Image.new("L", (20, 20), 100).save(folder / "gray.png")
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(folder / "palette.png")
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (0, 0, 255, 255)  # left half opaque blue, right half fully transparent
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(np.full((20, 20), 0x8000, dtype=np.uint16)).save(folder / "sixteen_bit.png")
    (folder / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture, just text\n")
    (folder / "readme.txt").write_text("notes about the birds\n")
    good = (folder / f"{MESSY_CLASS}_000.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) * 6 // 10])
    os.symlink("self.jpg", folder / "self.jpg")
    os.symlink(".", folder / "loop")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "val" / ".DS_Store").write_bytes(b"\x00")
    return root


@pytest.fixture(scope="session")
def messy_expected() -> MessyExpected:
    """The files of `messy_image_folder` that must load, convert or be skipped."""
    return MessyExpected()


def bomb_png(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header declares width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
