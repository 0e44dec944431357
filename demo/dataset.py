"""The demo's real-image datasets, built from files that installed packages ship (no download).

The images are scikit-learn's handwritten digits and capital letters drawn with the fonts
matplotlib ships, both as 8x8 grids of 0-16 ink counts (the digits' own format). Plain 8x8
digits are too easy for transfer learning to show, so each glyph is upsampled and drawn
on a 32x32 canvas with a random affine (±20°, ±10 % shift, 0.8-1.1 scale), a random dark
background, a contrasting foreground colour and pixel noise. Two disjoint tasks come out,
both in the iNaturalist layout (`train/<class>/*.png`, `val/<class>/*.png` where `val/` is
the test set):

- *source* (digits 0-4, several distorted copies of each image, and 26 letter classes):
  what the "pretrained" backbone is trained on, the way ImageNet weights are produced.
  Like ImageNet's 1000 classes, many source classes make the backbone learn features that
  transfer: with digits 0-4 alone, fine-tuning beat a scratch CNN by only 3-18 points,
  with the letters by ~25-30 (BENCHMARKS.md);
- *target* (digits 5-9, 20 labelled images per class, the rest as test): the task both
  Part A (from scratch) and Part B (fine-tuning the source backbone) are swept on. The
  demo specs hold half of the labelled images out for validation, so each run trains on
  10 per class and model selection compares runs on 50 images, not a noisy 10.

Building is seeded and deterministic, atomic (a temp folder renamed into place) and
skipped when a folder with the same version stamp is already there.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Bump when the rendering changes, so a stale dataset on disk is rebuilt.
DATASET_VERSION = 2
#: Written last into a finished dataset folder; its content says what was built.
STAMP_NAME = "stamp.json"
#: Folder names of the ten digit classes.
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Side of the upsampled glyph before the affine; the canvas is `image_size`.
_GLYPH_FRACTION = 0.72
_NOISE_STD = 14.0
#: matplotlib's fonts (mpl-data/fonts/ttf) whose capitals are ordinary letters: its
#: symbol, size-variant and fallback fonts are left out.
LETTER_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
    "cmmi10.ttf",
    "cmsy10.ttf",
)
#: Side of the binary bitmap a glyph is drawn on before its 4x4 blocks are counted into
#: 8x8 cells, as scikit-learn's digits were made from 32x32 scans.
_BITMAP = 32


class DemoDataSpec(BaseModel):
    """What to build. The defaults are the `make demo` datasets.

    >>> DemoDataSpec().target_digits
    (5, 6, 7, 8, 9)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(32, ge=16, le=256, description="Side of the square canvas in pixels.")
    source_digits: tuple[int, ...] = Field(
        (0, 1, 2, 3, 4), description="Digits of the source task."
    )
    target_digits: tuple[int, ...] = Field(
        (5, 6, 7, 8, 9), description="Digits of the target task."
    )
    source_copies: int = Field(
        3, ge=1, le=50, description="Distorted copies of each source training digit."
    )
    source_letters: str = Field(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        pattern="^[A-Z]*$",
        description="Capital letters added to the source task, one class each.",
    )
    letter_images: int = Field(
        200, ge=2, le=5000, description="Images per letter class, in random fonts and shapes."
    )
    source_test_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of source digits kept as its test set."
    )
    target_train_per_class: int = Field(
        20, ge=2, description="Labelled target images per class; the rest are its test set."
    )
    max_per_class: int | None = Field(
        None,
        ge=3,
        description="Use at most this many original digits per class (small test builds).",
    )
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _disjoint_digits(self) -> DemoDataSpec:
        for name, digits in (
            ("source_digits", self.source_digits),
            ("target_digits", self.target_digits),
        ):
            if (
                len(digits) < 2
                or len(set(digits)) != len(digits)
                or not set(digits) <= set(range(10))
            ):
                raise ValueError(f"{name} must be at least two distinct digits 0-9, got {digits}")
        if len(set(self.source_letters)) != len(self.source_letters):
            raise ValueError(f"source_letters must not repeat a letter, got {self.source_letters}")
        shared = set(self.source_digits) & set(self.target_digits)
        if shared:
            raise ValueError(
                f"source and target tasks must not share digits, both have {sorted(shared)}"
            )
        if self.max_per_class is not None and self.max_per_class <= self.target_train_per_class:
            raise ValueError("max_per_class must leave target images for the test set")
        return self

    def stamp(self) -> dict[str, Any]:
        """The content of the stamp file: the version and every setting."""
        return {"version": DATASET_VERSION, **self.model_dump(mode="json")}


class DemoData(BaseModel):
    """Where the built datasets are."""

    root: Path
    source: Path = Field(description="Source task: train/ and val/ (test) folders.")
    target: Path = Field(description="Target task: train/ and val/ (test) folders.")
    built: bool = Field(description="False when an up-to-date dataset was already there.")


def letter_class(letter: str) -> str:
    """The class folder of a capital letter (`"A"` -> `"letter_a"`)."""
    return f"letter_{letter.lower()}"


def letter_cells(letter: str, font_name: str, rng: np.random.Generator) -> np.ndarray:
    """Draw `letter` in one of matplotlib's fonts, at a random height, width and stroke
    weight, as an 8x8 grid of 0-16 ink counts: the format of scikit-learn's digits.

    >>> cells = letter_cells("A", "DejaVuSans.ttf", np.random.default_rng(0))
    >>> cells.shape, 0 <= cells.min(), cells.max() <= 16
    ((8, 8), True, True)
    """
    font = _font(font_name)
    left, top, right, bottom = (round(edge) for edge in font.getbbox(letter))
    glyph = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(glyph).text((-left, -top), letter, font=font, fill=255)
    height = rng.uniform(0.7, 0.95) * _BITMAP
    width = min(_BITMAP - 2.0, height * glyph.width / glyph.height * rng.uniform(0.75, 1.2))
    glyph = glyph.resize((max(1, round(width)), max(1, round(height))), Image.Resampling.BILINEAR)
    if rng.uniform() < 0.5:
        # Pen strokes are thicker than most fonts' at this size.
        glyph = glyph.filter(ImageFilter.MaxFilter(3))
    bitmap = Image.new("L", (_BITMAP, _BITMAP), 0)
    bitmap.paste(glyph, ((_BITMAP - glyph.width) // 2, (_BITMAP - glyph.height) // 2))
    ink = np.asarray(bitmap) >= 128
    block = _BITMAP // 8
    return ink.reshape(8, block, 8, block).sum(axis=(1, 3)).astype(np.float64)


@cache
def _font(name: str) -> ImageFont.FreeTypeFont:
    import matplotlib  # imported here: only letters need it, and it is slow to import

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), 64)


def render_digit(digit: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Draw one 8x8 digit (values 0-16) as a distorted colour image, uint8 of shape (size, size, 3).

    >>> render_digit(np.full((8, 8), 16.0), np.random.default_rng(0)).shape
    (32, 32, 3)
    """
    glyph_side = round(size * _GLYPH_FRACTION)
    glyph = Image.fromarray(np.clip(digit * (255.0 / 16.0), 0, 255).astype(np.uint8), mode="L")
    glyph = glyph.resize((glyph_side, glyph_side), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (size, size), 0)
    offset = (size - glyph_side) // 2
    canvas.paste(glyph, (offset, offset))

    angle = math.radians(rng.uniform(-20.0, 20.0))
    scale = rng.uniform(0.8, 1.1)
    shift_x, shift_y = rng.uniform(-0.1, 0.1, size=2) * size
    # PIL's affine maps output pixels back to input pixels, so give it the inverse:
    # rotate by -angle and divide by scale around the (shifted) centre.
    centre = size / 2.0
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    out_cx, out_cy = centre + shift_x, centre + shift_y
    inverse = (
        cos,
        sin,
        centre - cos * out_cx - sin * out_cy,
        -sin,
        cos,
        centre + sin * out_cx - cos * out_cy,
    )
    warped = canvas.transform(
        (size, size), Image.Transform.AFFINE, inverse, resample=Image.Resampling.BILINEAR
    )
    mask = np.asarray(warped, dtype=np.float32)[..., None] / 255.0

    background, foreground = _contrasting_colours(rng)
    pixels = background * (1.0 - mask) + foreground * mask
    pixels += rng.normal(0.0, _NOISE_STD, size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark background and a bright foreground of independent random hues."""
    dark = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.35))
    bright = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 1.0), rng.uniform(0.7, 1.0))
    return np.array(dark, dtype=np.float32) * 255.0, np.array(bright, dtype=np.float32) * 255.0


def is_built(root: Path, spec: DemoDataSpec) -> bool:
    """True when `root` holds a finished dataset with exactly this spec's stamp."""
    try:
        return json.loads((root / STAMP_NAME).read_text()) == spec.stamp()
    except (OSError, ValueError):
        return False


def build_demo_data(root: str | os.PathLike[str], spec: DemoDataSpec | None = None) -> DemoData:
    """Build the source and target datasets under `root` unless they are already there.

    The folder is built next to `root` under a temp name and renamed into place, so
    `root` is either absent, the previous build, or the new complete one.
    """
    spec = spec or DemoDataSpec()
    root = Path(root).resolve()
    data = DemoData(root=root, source=root / "source", target=root / "target", built=False)
    if is_built(root, spec):
        return data
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        _write_tasks(staging, spec)
        (staging / STAMP_NAME).write_text(json.dumps(spec.stamp(), indent=2) + "\n")
        _swap_into_place(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data.model_copy(update={"built": True})


def _swap_into_place(staging: Path, root: Path) -> None:
    """Rename `staging` to `root`, moving an outdated `root` aside first (a rename cannot replace a full folder)."""
    if not root.exists():
        os.replace(staging, root)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{root.name}-old-", dir=root.parent))
    os.replace(root, trash / root.name)
    os.replace(staging, root)
    shutil.rmtree(trash, ignore_errors=True)


def _write_tasks(folder: Path, spec: DemoDataSpec) -> None:
    """Write both tasks into `folder`: every image gets its own seeded generator."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    digits = load_digits()
    split_rng = np.random.default_rng([spec.seed, 0])
    for digit in (*spec.source_digits, *spec.target_digits):
        indices = np.flatnonzero(digits.target == digit)
        indices = split_rng.permutation(indices)[: spec.max_per_class]
        if digit in spec.source_digits:
            n_test = max(1, round(len(indices) * spec.source_test_fraction))
            test, train, copies, task = (
                indices[:n_test],
                indices[n_test:],
                spec.source_copies,
                "source",
            )
        else:
            n_train = spec.target_train_per_class
            train, test, copies, task = indices[:n_train], indices[n_train:], 1, "target"
        for split, chosen, n_copies in (("train", train, copies), ("val", test, 1)):
            out = folder / task / split / CLASS_NAMES[digit]
            out.mkdir(parents=True)
            for index in chosen:
                for copy in range(n_copies):
                    rng = np.random.default_rng([spec.seed, 1, int(index), copy])
                    image = render_digit(digits.images[index], rng, spec.image_size)
                    Image.fromarray(image).save(out / f"{int(index):04d}_{copy}.png")
    n_test = max(1, round(spec.letter_images * spec.source_test_fraction))
    for letter in spec.source_letters:
        outs = {
            split: folder / "source" / split / letter_class(letter) for split in ("train", "val")
        }
        for out in outs.values():
            out.mkdir(parents=True)
        for number in range(spec.letter_images):
            out = outs["val" if number < n_test else "train"]
            rng = np.random.default_rng([spec.seed, 2, ord(letter), number])
            font_name = LETTER_FONTS[rng.integers(len(LETTER_FONTS))]
            image = render_digit(letter_cells(letter, font_name, rng), rng, spec.image_size)
            Image.fromarray(image).save(out / f"{number:04d}_0.png")


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m demo.dataset [ROOT]`: build the datasets (default .sweeper/demo/data)."""
    parser = argparse.ArgumentParser(prog="python -m demo.dataset", description=main.__doc__)
    parser.add_argument(
        "root", nargs="?", default=".sweeper/demo/data", help="Where the datasets go."
    )
    defaults = DemoDataSpec()
    parser.add_argument(
        "--source-copies", type=int, default=defaults.source_copies, help="Copies per source digit."
    )
    parser.add_argument(
        "--max-per-class", type=int, default=None, help="Original digits per class (default: all)."
    )
    parser.add_argument(
        "--letter-images",
        type=int,
        default=defaults.letter_images,
        help="Images per source letter class.",
    )
    args = parser.parse_args(argv)
    spec = DemoDataSpec(
        source_copies=args.source_copies,
        letter_images=args.letter_images,
        max_per_class=args.max_per_class,
    )
    data = build_demo_data(args.root, spec)
    verb = "built" if data.built else "already built, skipped"
    print(f"demo datasets {verb}: source {data.source}, target {data.target}")


if __name__ == "__main__":
    main()
