"""Decoding: one image file to uint8 RGB at the run's size, and many files on a thread pool.

Every image is decoded once to RGB, EXIF-rotated, its short side resized to `image_size`
and centre-cropped to a square (aspect ratio kept, nothing stretched). A file that cannot
be decoded raises `UnreadableImage` with the reason the user sees.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from trainer.imagecache import DecodedImages
from trainer.listing import ImageFile

#: Images with more pixels are skipped as possible decompression bombs (Pillow's warning level).
MAX_PIXELS = 89_478_485
#: Bumped whenever decoding changes (resize method, colour conversion), so caches rebuild.
DECODE_VERSION = 1

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class UnreadableImage(Exception):
    """A file that cannot be used as an image; the message is the reason shown to the user."""


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


def decode_files(files: list[ImageFile], image_size: int, workers: int) -> DecodedImages:
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


def _decode_or_reason(entry: ImageFile, image_size: int) -> np.ndarray | str:
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
