"""GPU slots: which worker trains on which device.

`--gpus 0,1 --per-gpu 2` gives four slots, two per GPU; `--gpus none` gives CPU slots.
Counting GPUs must not create a CUDA context in the supervisor: it would hold GPU
memory for the whole sweep and make forked state unsafe, so only the device count
is read (`torch.cuda.device_count()` asks NVML, not the driver's context API).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from sweeper.errors import AgentError


class Slot(BaseModel):
    """One place a worker trains: a GPU index (as the supervisor sees it) or the CPU.

    >>> Slot(index=0, gpu=None).label
    'cpu'
    """

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="0-based slot number, shown in the live table.")
    gpu: int | None = Field(
        description="GPU index among the supervisor's visible GPUs; None = CPU."
    )
    cuda_visible_devices: str = Field(
        default="", description="CUDA_VISIBLE_DEVICES for this slot's workers."
    )

    @property
    def label(self) -> str:
        """'cpu' or 'cuda:N' for the table."""
        return "cpu" if self.gpu is None else f"cuda:{self.gpu}"


def visible_gpu_count() -> int:
    """GPUs this process can see, without creating a CUDA context."""
    import torch  # deferred: the CPU-only path and `--help` should not pay for it

    return int(torch.cuda.device_count())


def default_gpus() -> str:
    """What `--gpus` means when not given: every visible GPU, or the CPU when there is none."""
    return "all" if visible_gpu_count() else "none"


def _device_names(visible: int) -> list[str]:
    """What to put in a worker's CUDA_VISIBLE_DEVICES for each visible GPU index.

    When the supervisor itself runs under CUDA_VISIBLE_DEVICES="2,3", its GPU 0 is the
    machine's GPU 2, so the worker must get "2", not "0".
    """
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None or inherited.strip() == "":
        return [str(i) for i in range(visible)]
    names = [part.strip() for part in inherited.split(",") if part.strip()]
    return names[:visible]


def parse_slots(gpus: str, per_gpu: int = 1, visible: int | None = None) -> list[Slot]:
    """Turn `--gpus` and `--per-gpu` into slots; raise AgentError for GPUs that are not there.

    `visible` is the number of visible GPUs (default: ask torch).

    >>> [s.label for s in parse_slots("0,1", per_gpu=2, visible=2)]
    ['cuda:0', 'cuda:0', 'cuda:1', 'cuda:1']
    >>> [s.label for s in parse_slots("none", per_gpu=2, visible=0)]
    ['cpu', 'cpu']
    """
    if per_gpu < 1:
        raise AgentError(f"--per-gpu must be at least 1, got {per_gpu}.")
    text = gpus.strip().lower()
    if text in ("none", "cpu", ""):
        return [Slot(index=i, gpu=None) for i in range(per_gpu)]
    count = visible_gpu_count() if visible is None else visible
    if text == "all":
        if count == 0:
            raise AgentError(
                "--gpus all: no GPU is visible to this process; use --gpus none to train on the CPU."
            )
        wanted = list(range(count))
    else:
        wanted = _parse_indices(gpus)
        missing = [g for g in wanted if g >= count]
        if missing:
            seen = f"{count} GPU{'s' if count != 1 else ''} visible" + (
                f" (0-{count - 1})" if count > 1 else ""
            )
            raise AgentError(
                f"--gpus {gpus}: GPU {', '.join(map(str, missing))} requested but {seen}; "
                "use --gpus all, a subset of the visible indices, or --gpus none."
            )
    names = _device_names(count)
    return [
        Slot(index=n, gpu=gpu, cuda_visible_devices=names[gpu])
        for n, gpu in enumerate(gpu for gpu in wanted for _ in range(per_gpu))
    ]


def _parse_indices(gpus: str) -> list[int]:
    """'0,1' -> [0, 1]; duplicates and non-numbers are user errors."""
    parts = [p.strip() for p in gpus.split(",")]
    if not all(p.isdigit() for p in parts):
        raise AgentError(f"--gpus {gpus!r}: expected 'all', 'none' or GPU indices like '0,1'.")
    indices = [int(p) for p in parts]
    if len(set(indices)) != len(indices):
        raise AgentError(
            f"--gpus {gpus!r}: a GPU is listed twice; use --per-gpu K for several workers per GPU."
        )
    return indices
