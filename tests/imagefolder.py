"""Small real-image datasets in the iNaturalist layout, written as JPEG/PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: One hue per class: classes are learnable from colour and stripe direction.
_PALETTE = [
    (220, 40, 40),
    (40, 200, 60),
    (50, 80, 230),
    (230, 200, 40),
    (200, 60, 210),
    (40, 210, 210),
]


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("amphibia", "aves", "fungi"),
    n_train: int = 12,
    n_test: int = 4,
    size: int = 24,
    seed: int = 0,
) -> Path:
    """Write `root/train/<class>/*.jpg` and `root/val/<class>/*.png` and return `root`.

    Each class has its own base colour and stripe orientation plus noise, so a tiny
    model learns it in a few epochs but not perfectly.
    """
    rng = np.random.default_rng(seed)
    for split, count, suffix in (("train", n_train, ".jpg"), ("val", n_test, ".png")):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array(_PALETTE[index % len(_PALETTE)], dtype=np.float32)
            for i in range(count):
                yy, xx = np.mgrid[0:size, 0:size]
                stripes = np.sin((xx if index % 2 else yy) * (0.5 + 0.2 * index)) * 40
                pixels = base + stripes[..., None] + rng.normal(0, 35, (size, size, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                image.save(folder / f"{name}_{i:03d}{suffix}")
    return root
