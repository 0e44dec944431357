"""The device a run trains on and the precision its forward passes use."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from trainer.errors import TrainerError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; a CUDA device that is not there is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise TrainerError(
            f"device {name!r} is not a device name: use auto, cpu, cuda or cuda:N"
        ) from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainerError(
                f"device {name!r} asked for, but CUDA is not available here: use device 'cpu' or 'auto'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainerError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA devices visible"
            )
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast settings: `dtype` None means float32."""

    device_type: str
    dtype: torch.dtype | None

    @staticmethod
    def choose(amp: str, device: torch.device) -> Precision:
        """AMP only on CUDA; `auto` picks bf16 where the GPU supports it, else fp16."""
        if device.type != "cuda" or amp == "off":
            return Precision(device.type, None)
        if amp == "auto":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Precision(device.type, torch.bfloat16 if amp == "bf16" else torch.float16)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context for forward passes (a no-op in float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
