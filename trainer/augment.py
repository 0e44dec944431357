"""Augmentation and normalisation of uint8 image batches, on whatever device they are on.

Every random draw comes from a generator seeded by (seed, epoch, batch), so a run is
reproducible whatever the number of loader workers and whether it runs on a CPU or a GPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from trainer.config import IMAGENET_MEAN, IMAGENET_STD

AUGMENT_LEVELS = ("none", "flip", "standard")
#: Random-resized-crop: share of the image area kept, and aspect-ratio range (torchvision's).
CROP_SCALE = (0.6, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
#: Colour jitter: brightness, contrast and saturation factors are drawn from 1 ± this.
JITTER = 0.4

_LUMA = (0.299, 0.587, 0.114)


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
