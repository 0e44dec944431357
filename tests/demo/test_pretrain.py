"""demo.pretrain: a cached backbone checkpoint that the trainer loads as `weights`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from demo.dataset import DemoDataSpec, build_demo_data
from demo.pretrain import PretrainSpec, pretrain_backbone, stamp_path
from sweeper.errors import SweeperError
from trainer import train
from trainer.config import TrainConfig
from trainer.models import build_model

ONE_EPOCH = PretrainSpec(epochs=1, batch_size=32)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def data_root(tmp_path: Path, small_spec: DemoDataSpec) -> Path:
    return build_demo_data(tmp_path / "data", small_spec).root


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SweeperError, match=r"not a finished demo dataset.*python -m demo\.dataset"):
        pretrain_backbone(tmp_path / "nowhere", tmp_path / "backbone.pt", ONE_EPOCH)
    assert not (tmp_path / "backbone.pt").exists()


@pytest.mark.slow
def test_checkpoint_loads_as_weights_for_fine_tuning(data_root: Path, tmp_path: Path) -> None:
    backbone = pretrain_backbone(data_root, tmp_path / "backbone.pt", ONE_EPOCH)
    assert backbone.trained and backbone.path == (tmp_path / "backbone.pt").resolve()
    assert backbone.source_test_accuracy is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.json", "backbone.pt", "data"]

    config = TrainConfig(
        data_dir=str(data_root / "target"),
        model="resnet18",
        weights=str(backbone.path),
        mode="head",
        image_size=32,
        epochs=1,
        batch_size=16,
        num_workers=0,
        device="cpu",
        cache_dir=str(tmp_path / "cache"),
    )
    model = build_model(config, num_classes=5)
    saved = torch.load(backbone.path, map_location="cpu", weights_only=True)
    saved = saved.get("model", saved)
    assert torch.equal(model.state_dict()["conv1.weight"], saved["conv1.weight"])
    assert torch.equal(
        model.state_dict()["layer4.1.bn2.running_mean"], saved["layer4.1.bn2.running_mean"]
    )
    result = train(config)
    assert result.test_accuracy is not None
    assert result.trainable_params < result.total_params


@pytest.mark.slow
def test_second_call_reuses_and_changes_retrain(
    data_root: Path, tmp_path: Path, small_spec: DemoDataSpec
) -> None:
    out = tmp_path / "backbone.pt"
    first = pretrain_backbone(data_root, out, ONE_EPOCH)
    checkpoint = out.read_bytes()
    again = pretrain_backbone(data_root, out, ONE_EPOCH)
    assert not again.trained and again.wall_seconds == 0.0
    assert again.source_test_accuracy == first.source_test_accuracy
    assert out.read_bytes() == checkpoint

    # A checkpoint that no longer matches its stamp is not trusted.
    out.write_bytes(b"truncated")
    assert pretrain_backbone(data_root, out, ONE_EPOCH).trained
    # Other settings are another backbone.
    assert pretrain_backbone(data_root, out, ONE_EPOCH.model_copy(update={"seed": 1})).trained
    assert json.loads(stamp_path(out).read_text())["key"]["spec"]["seed"] == 1
    # A rebuilt dataset is another source task.
    build_demo_data(data_root, small_spec.model_copy(update={"seed": 2}))
    assert pretrain_backbone(data_root, out, ONE_EPOCH.model_copy(update={"seed": 1})).trained
