"""Checkpoint files: the best epoch written atomically, and weights read back safely.

A checkpoint is a plain dict (`checkpoint_payload`): the model's state_dict, the config it
was trained with, its class names, the epoch and the best val accuracy. A run that kept
part of its starting weights frozen and unchanged (a head run) stores only the tensors it
changed plus `base`, the path and sha256 of the weights file it started from
(`split_on_base`): a resnet18 head checkpoint is then a few kB, not 45 MB, and reading it
back rebuilds the whole state from the base file, refusing a base that has changed. Every
read goes through `torch.load(weights_only=True)`, so no file can run code when loaded.
"""

from __future__ import annotations

import functools
import hashlib
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
    base: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The dict a best-epoch checkpoint holds; `load_checkpoint` reads its `model` entry,
    completed from the `base` weights file when there is one (see `split_on_base`)."""
    payload: dict[str, Any] = {
        "model": state,
        "config": config.model_dump(),
        "class_names": list(class_names),
        "epoch": epoch,
        "best_val_accuracy": best_val,
    }
    if base is not None:
        payload["base"] = base
    return payload


def split_on_base(
    state: dict[str, Tensor], unchanged: set[str], weights: str
) -> tuple[dict[str, Tensor], dict[str, str] | None]:
    """The part of `state` a checkpoint must store, and the reference to its base file.

    `unchanged` names the tensors the run kept as loaded from `weights` (frozen for the
    whole run). Those that the file holds with the same shape are left out and the file is
    referenced by path and sha256; a tensor the file lacks (initialised fresh) is stored.
    Without a weights file ('none', 'imagenet') the whole state is stored, and no base.
    """
    if weights in ("none", "imagenet"):
        return state, None
    path, sha256 = os.path.abspath(weights), file_sha256(weights)
    shapes = _shapes(path, sha256)
    kept = {
        key: tensor
        for key, tensor in state.items()
        if key not in unchanged or shapes.get(key) != tensor.shape
    }
    if len(kept) == len(state):
        return state, None
    return kept, {"path": path, "sha256": sha256}


@functools.lru_cache(maxsize=8)
def _shapes(path: str, sha256: str) -> dict[str, torch.Size]:
    """The tensor shapes in the weights file `path` with these bytes: read once per sweep
    in a warm worker, not once per run (unpickling a resnet18's index takes ~0.05 s)."""
    return {key: tensor.shape for key, tensor in read_state(Path(path), None).items()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, remembered while the file's inode, size and mtime stay.

    Raise `WeightsError` when the file cannot be read.
    """
    try:
        info = os.stat(path)
    except OSError as e:
        raise WeightsError(f"cannot read checkpoint {str(path)!r}: {e.strerror or e}") from e
    return _file_sha256(os.path.abspath(path), info.st_ino, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, inode: int, size: int, mtime_ns: int) -> str:
    """A sweep hashes its backbone once per process, not once per run."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        raise WeightsError(f"cannot read checkpoint {path!r}: {e.strerror or e}") from e
    return digest.hexdigest()


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
    """The state_dict in `path` (our checkpoint dict or a bare state_dict), memory-mapped;
    a checkpoint with a `base` is completed from its base file.

    Raise `WeightsError` when the file is missing, unreadable, not a state_dict, was saved
    from another model than `expected_model`, or its base file is gone or has changed.
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
        base = loaded.get("base")
        loaded = loaded["model"]
        if base is not None:
            loaded = {**_read_base(base, path, expected_model), **loaded}
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise WeightsError(
            f"checkpoint {str(path)!r} is neither a state_dict nor a dict with a 'model' state_dict"
        )
    return loaded


def _read_base(base: Any, path: Path, expected_model: str | None) -> dict[str, Tensor]:
    """The state of the weights file a checkpoint at `path` was built on, checked by hash."""
    if not isinstance(base, dict) or not {"path", "sha256"} <= base.keys():
        raise WeightsError(f"checkpoint {str(path)!r} has a malformed 'base' entry")
    where = Path(base["path"])
    # A checkpoint copied with its base beside it (a W&B model artifact holds both).
    beside = path.parent / where.name
    if not where.is_file() and beside.is_file() and file_sha256(beside) == base["sha256"]:
        where = beside
    if not where.is_file() or file_sha256(where) != base["sha256"]:
        state = "no longer exists" if not where.is_file() else "has changed since"
        raise WeightsError(
            f"checkpoint {str(path)!r} stores only what its run trained on top of "
            f"{str(where)!r}, which {state}: restore that file (sha256 {base['sha256'][:12]}...)"
        )
    return read_state(where, expected_model)
