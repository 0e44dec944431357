"""Checkpoint files: the best epoch written atomically, and weights read back safely.

A checkpoint is a plain dict (`checkpoint_payload`): the model's state_dict, the config it
was trained with, its class names, the epoch and the best val accuracy. Every read goes
through `torch.load(weights_only=True)`, so no file can run code when loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainer.atomic import save_atomic
from trainer.config import TrainConfig
from trainer.errors import TrainerError, WeightsError

log = logging.getLogger("trainer")


def checkpoint_payload(
    config: TrainConfig,
    class_names: list[str],
    state: dict[str, Tensor],
    epoch: int,
    best_val: float,
) -> dict[str, Any]:
    """The dict a best-epoch checkpoint holds; `load_checkpoint` reads its `model` entry."""
    return {
        "model": state,
        "config": config.model_dump(),
        "class_names": list(class_names),
        "epoch": epoch,
        "best_val_accuracy": best_val,
    }


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write the best checkpoint atomically; a full or read-only disk is the user's to fix."""
    try:
        save_atomic(path, payload)
    except OSError as e:
        raise TrainerError(
            f"cannot write the checkpoint {path} ({e.strerror or e}): free space there, or "
            "choose another checkpoint_dir (the agent puts it under --home)"
        ) from e


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], expected_model: str | None = None
) -> None:
    """Load a checkpoint (our `best.pt` dict or a bare state_dict) into `model`, in place.

    Tensors whose shape differs from the model's (a classifier for another class
    count) are dropped and the rest loads non-strictly; missing and unexpected keys
    are logged. Raise `WeightsError` when the file is missing or unreadable, was
    trained as another model, or shares no tensor with `model` outside the classifier.
    """
    load_state(model, read_state(Path(path), expected_model), str(path), assign=False)


def load_state(model: nn.Module, state: dict[str, Tensor], source: str, *, assign: bool) -> None:
    """Load the tensors of `state` that fit `model` (named `source` in messages), in place.

    `assign` keeps the given tensors instead of copying them (a model built on the meta
    device). Raise `WeightsError` when nothing outside the classifier fits.
    """
    own = model.state_dict()
    # A torchvision ResNet file has `fc.weight`; ours wraps it as `fc.1` behind the Dropout.
    if "fc.1.weight" in own:
        state = {
            ("fc.1." + k[3:] if k in ("fc.weight", "fc.bias") else k): v for k, v in state.items()
        }
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(not k.startswith("fc.") for k in fitting):
        raise WeightsError(
            f"weights {source!r} have no tensor that fits the body of a {type(model).__name__}: "
            "were they saved from another model?"
        )
    missing = model.load_state_dict(fitting, strict=False, assign=assign).missing_keys
    reshaped = sorted(k for k in state if k in own and k not in fitting)
    unexpected = sorted(k for k in state if k not in own)
    for what, keys in (("dropped (another shape)", reshaped), ("missing (fresh init)", missing),
                       ("unexpected (ignored)", unexpected)):  # fmt: skip
        if keys:
            log.info("weights %s: %d tensors %s: %s", source, len(keys), what, ", ".join(keys))


def read_state(path: Path, expected_model: str | None) -> dict[str, Tensor]:
    """The state_dict in `path` (our checkpoint dict or a bare state_dict), memory-mapped.

    Raise `WeightsError` when the file is missing, unreadable, not a state_dict, or was saved
    from another model than `expected_model`.
    """
    if not path.is_file():
        raise WeightsError(
            f"checkpoint {str(path)!r} does not exist: give an existing .pt file, 'imagenet' or 'none'"
        )
    try:
        try:
            # Memory-mapped: tensors that are never used (a frozen backbone whose features
            # are cached) are never read from disk.
            loaded: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a file in torch's legacy (non-zip) format cannot be mapped
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises a zoo of types for a truncated or foreign file
        raise WeightsError(f"checkpoint {str(path)!r} cannot be loaded: {e}") from e
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        saved_model = (loaded.get("config") or {}).get("model")
        if expected_model is not None and saved_model not in (None, expected_model):
            raise WeightsError(
                f"checkpoint {str(path)!r} holds a {saved_model} but the config asks for {expected_model}"
            )
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise WeightsError(
            f"checkpoint {str(path)!r} is neither a state_dict nor a dict with a 'model' state_dict"
        )
    return loaded
