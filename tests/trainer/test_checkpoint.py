"""Tests for trainer.checkpoint: checkpoints that store what changed on top of a base file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer import TrainConfig, WeightsError
from trainer.checkpoint import (
    checkpoint_payload,
    file_sha256,
    read_state,
    save_checkpoint,
    split_on_base,
)

CONFIG = TrainConfig(data_dir="d", model="resnet18", mode="head")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.pt"
    torch.save({"body.weight": torch.ones(2, 2), "fc.weight": torch.zeros(3, 2)}, path)
    return path


def test_unchanged_tensors_are_left_in_the_base(base: Path, tmp_path: Path) -> None:
    state = {
        "body.weight": torch.ones(2, 2),
        "new.weight": torch.full((2,), 7.0),  # frozen but not in the base: must be stored
        "fc.weight": torch.full((5, 2), 2.0),  # another shape than the base's
    }
    stored, reference = split_on_base(state, {"body.weight", "new.weight"}, str(base))
    assert set(stored) == {"new.weight", "fc.weight"}
    assert reference == {"path": str(base), "sha256": file_sha256(base)}

    path = tmp_path / "run" / "best.pt"
    save_checkpoint(path, checkpoint_payload(CONFIG, ["a"], stored, 1, 0.5, reference))
    loaded = read_state(path, "resnet18")
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        torch.testing.assert_close(loaded[key], tensor)


@pytest.mark.parametrize("weights", ["none", "imagenet"])
def test_without_a_weights_file_the_whole_state_is_stored(weights: str) -> None:
    state = {"body.weight": torch.ones(2, 2)}
    assert split_on_base(state, {"body.weight"}, weights) == (state, None)


def test_nothing_unchanged_means_no_base(base: Path) -> None:
    state = {"body.weight": torch.zeros(2, 2)}
    assert split_on_base(state, set(), str(base)) == (state, None)


@pytest.mark.parametrize("change", ["rewritten", "deleted"])
def test_a_changed_or_missing_base_is_refused(base: Path, tmp_path: Path, change: str) -> None:
    stored, reference = split_on_base({"body.weight": torch.ones(2, 2)}, {"body.weight"}, str(base))
    path = tmp_path / "best.pt"
    save_checkpoint(path, checkpoint_payload(CONFIG, ["a"], stored, 1, 0.5, reference))
    if change == "rewritten":
        torch.save({"body.weight": torch.full((2, 2), 3.0)}, base)
    else:
        base.unlink()
    with pytest.raises(WeightsError, match="stores only what its run trained"):
        read_state(path, "resnet18")


def test_a_checkpoint_downloaded_with_its_base_beside_it_loads(base: Path, tmp_path: Path) -> None:
    """A W&B model artifact holds the checkpoint and its base file side by side."""
    state = {"body.weight": torch.ones(2, 2), "fc.weight": torch.full((3, 2), 2.0)}
    stored, reference = split_on_base(state, {"body.weight"}, str(base))
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(path, checkpoint_payload(CONFIG, ["a"], stored, 1, 0.5, reference))
    downloaded = tmp_path / "artifact"
    downloaded.mkdir()
    (downloaded / "best.pt").write_bytes(path.read_bytes())
    (downloaded / base.name).write_bytes(base.read_bytes())
    base.unlink()
    loaded = read_state(downloaded / "best.pt", "resnet18")
    for key, tensor in state.items():
        torch.testing.assert_close(loaded[key], tensor)
