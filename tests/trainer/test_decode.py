"""Tests for trainer.decode: one file to uint8 RGB (modes, resizing, EXIF, unreadable files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import trainer.decode as decode
from trainer.decode import UnreadableImage, decode_image


@pytest.mark.parametrize(
    ("name", "column", "expected"),
    [
        ("cmyk.jpg", 8, (255, 0, 0)),
        ("gray.png", 8, (100, 100, 100)),
        ("palette.png", 8, (10, 200, 30)),
        ("rgba.png", 1, (0, 0, 255)),
        ("rgba.png", 14, (255, 255, 255)),  # transparent pixels become white
        ("sixteen_bit.png", 8, (128, 128, 128)),  # 0x8000 of 0xFFFF
    ],
)
def test_awkward_modes_convert_to_the_right_rgb(
    messy_image_folder: Path,
    messy_expected: Any,
    name: str,
    column: int,
    expected: tuple[int, int, int],
) -> None:
    pixels = decode_image(messy_image_folder / "train" / messy_expected.messy_class / name, 16)
    assert pixels.shape == (16, 16, 3)
    assert np.abs(pixels[8, column].astype(int) - np.array(expected)).max() <= 3


@pytest.mark.parametrize(("width", "height"), [(40, 20), (20, 40)])
def test_decode_resizes_short_side_and_centre_crops(
    tmp_path: Path, width: int, height: int
) -> None:
    # Red outer quarters, green middle half along the long side: the centre crop is all green.
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    long_axis = 1 if width > height else 0
    middle = [slice(None), slice(None)]
    middle[long_axis] = slice(max(width, height) // 4, 3 * max(width, height) // 4)
    pixels[tuple(middle)] = (0, 255, 0)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    decoded = decode_image(tmp_path / "wide.png", 16)
    assert decoded.shape == (16, 16, 3)
    # Plain resizing would keep red edges; bicubic filtering lets only a trace bleed in.
    assert decoded[..., 1].min() >= 240 and decoded[..., 0].max() <= 15


def test_decode_applies_the_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    upright = decode_image(tmp_path / "sideways.jpg", 16)
    assert upright[2, 8, 0] > 200 and upright[2, 8, 2] < 50  # the left (red) half is now on top
    assert upright[13, 8, 2] > 200 and upright[13, 8, 0] < 50


def test_a_file_that_vanished_since_listing_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="cannot read the file"):
        decode_image(tmp_path / "gone.jpg", 16)


def test_images_over_the_pixel_limit_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "big.png")
    monkeypatch.setattr(decode, "MAX_PIXELS", 399)
    with pytest.raises(UnreadableImage, match="decompression bomb: 20x20"):
        decode_image(tmp_path / "big.png", 16)
