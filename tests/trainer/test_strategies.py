"""Tests for trainer.strategies: which parameters train per mode and epoch, frozen BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.config import TrainConfig
from trainer.models import build_model
from trainer.strategies import FrozenBatchNorm2d, Strategy, count_parameters

torch.set_num_threads(1)

# resnet18 parameter counts, by hand (conv: out*in*k*k, no bias; BatchNorm: 2*channels):
STEM = 64 * 3 * 7 * 7 + 2 * 64  # 9_536
LAYER1 = 2 * (2 * 64 * 64 * 9 + 2 * 2 * 64)  # 147_968
LAYER2 = (128 * 64 * 9 + 128 * 128 * 9 + 128 * 64 + 3 * 2 * 128) + (
    2 * 128 * 128 * 9 + 2 * 2 * 128
)  # 525_568
LAYER3 = (256 * 128 * 9 + 256 * 256 * 9 + 256 * 128 + 3 * 2 * 256) + (
    2 * 256 * 256 * 9 + 2 * 2 * 256
)  # 2_099_712
LAYER4 = (512 * 256 * 9 + 512 * 512 * 9 + 512 * 256 + 3 * 2 * 512) + (
    2 * 512 * 512 * 9 + 2 * 2 * 512
)  # 8_393_728
HEAD = 512 * 3 + 3  # 1_539
TOTAL = STEM + LAYER1 + LAYER2 + LAYER3 + LAYER4 + HEAD  # 11_178_051
BACKBONE = TOTAL - HEAD
# freeze_fraction freezes the longest run of backbone tensors (in order) within the share:
# 0.5 * 11_176_512 = 5_588_256 ends inside layer4.0 after conv1 + bn1 (frozen 3_963_456);
# 0.8 * 11_176_512 = 8_941_209.6 ends inside layer4.1 after conv1 + bn1 (frozen 8_816_192).
FROZEN_AT_HALF = STEM + LAYER1 + LAYER2 + LAYER3 + 512 * 256 * 9 + 2 * 512
FROZEN_AT_80 = (
    STEM
    + LAYER1
    + LAYER2
    + LAYER3
    + (LAYER4 - 2 * 512 * 512 * 9 - 2 * 2 * 512)
    + 512 * 512 * 9
    + 2 * 512
)


def test_hand_counts_match_torchvision() -> None:
    assert (TOTAL, FROZEN_AT_HALF, FROZEN_AT_80) == (11_178_051, 3_963_456, 8_816_192)


def _model_and_strategy(**overrides: object) -> tuple[nn.Module, Strategy]:
    base = TrainConfig(data_dir="unused", model="resnet18", weights="none", mode="scratch")
    model = build_model(base, 3)
    values = (
        {"weights": "start.pt", **overrides}
        if overrides.get("mode", "scratch") != "scratch"
        else overrides
    )
    return model, Strategy(model, base.model_copy(update=values))


@pytest.mark.parametrize(
    ("overrides", "epoch", "trainable"),
    [
        ({"mode": "scratch"}, 1, TOTAL),
        ({"mode": "full"}, 1, TOTAL),
        ({"mode": "head"}, 3, HEAD),
        ({"mode": "partial"}, 1, LAYER4 + HEAD),
        ({"mode": "partial", "unfreeze_from": "layer3"}, 1, LAYER3 + LAYER4 + HEAD),
        ({"mode": "partial", "unfreeze_from": "layer1"}, 1, TOTAL - STEM),
        ({"mode": "partial", "freeze_fraction": 0.5}, 1, TOTAL - FROZEN_AT_HALF),
        ({"mode": "partial", "freeze_fraction": 0.8}, 1, TOTAL - FROZEN_AT_80),
        ({"mode": "gradual"}, 1, HEAD),
        ({"mode": "gradual"}, 2, LAYER4 + HEAD),
        ({"mode": "gradual"}, 3, LAYER3 + LAYER4 + HEAD),
        ({"mode": "gradual", "unfreeze_every": 2}, 2, HEAD),
        ({"mode": "gradual", "unfreeze_every": 2}, 3, LAYER4 + HEAD),
        ({"mode": "gradual"}, 6, TOTAL),
        ({"mode": "gradual"}, 9, TOTAL),
        ({"mode": "two_phase", "head_epochs": 2}, 2, HEAD),
        ({"mode": "two_phase", "head_epochs": 2}, 3, TOTAL),
    ],
)
def test_trainable_parameter_counts(
    overrides: dict[str, object], epoch: int, trainable: int
) -> None:
    model, strategy = _model_and_strategy(**overrides)
    strategy.apply(epoch)
    assert count_parameters(model) == (trainable, TOTAL)


def test_gradual_unfreezing_is_monotone_when_applied_epoch_by_epoch() -> None:
    model, strategy = _model_and_strategy(mode="gradual")
    counts = []
    for epoch in range(1, 7):
        strategy.apply(epoch)
        counts.append(count_parameters(model)[0])
    assert counts == [
        HEAD,
        HEAD + LAYER4,
        HEAD + LAYER4 + LAYER3,
        TOTAL - STEM - LAYER1,
        TOTAL - STEM,
        TOTAL,
    ]


def test_gradual_learning_rates_decay_per_block_from_the_head() -> None:
    _, strategy = _model_and_strategy(mode="gradual", lr=0.1, layer_lr_decay=0.5)
    assert strategy.apply(3).lrs == pytest.approx({"fc": 0.1, "layer4": 0.05, "layer3": 0.025})


@pytest.mark.parametrize(("finetune_lr", "expected"), [(None, 0.01), (0.003, 0.003)])
def test_two_phase_learning_rates(finetune_lr: float | None, expected: float) -> None:
    _, strategy = _model_and_strategy(
        mode="two_phase", lr=0.1, head_epochs=1, finetune_lr=finetune_lr
    )
    assert strategy.apply(1).lrs == {"fc": 0.1}
    lrs = strategy.apply(2).lrs
    assert set(lrs) == {"stem", "layer1", "layer2", "layer3", "layer4", "fc"}
    assert lrs == pytest.approx(dict.fromkeys(lrs, expected))


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics() -> None:
    model, strategy = _model_and_strategy(mode="partial", unfreeze_from="layer4")
    strategy.apply(1)
    model.train()
    frozen_before = model.layer3[0].bn1.running_mean.clone()
    trained_before = model.layer4[0].bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert isinstance(model.layer3[0].bn1, FrozenBatchNorm2d) and not model.layer3[0].bn1.training
    assert not model.bn1.training
    assert type(model.layer4[0].bn1) is nn.BatchNorm2d and model.layer4[0].bn1.training
    torch.testing.assert_close(model.layer3[0].bn1.running_mean, frozen_before)
    assert not torch.equal(model.layer4[0].bn1.running_mean, trained_before)


def test_unfrozen_batchnorm_trains_again() -> None:
    model, strategy = _model_and_strategy(mode="gradual")
    strategy.apply(1)
    model.train()
    assert not model.layer4[1].bn2.training
    strategy.apply(2)
    assert type(model.layer4[1].bn2) is nn.BatchNorm2d and model.layer4[1].bn2.training
    assert isinstance(model.layer3[1].bn2, FrozenBatchNorm2d)


def test_frozen_batchnorm_survives_a_state_dict_round_trip() -> None:
    model, strategy = _model_and_strategy(mode="head")
    strategy.apply(1)
    fresh = build_model(
        TrainConfig(data_dir="unused", model="resnet18", weights="none", mode="scratch"), 3
    )
    assert fresh.load_state_dict(model.state_dict()).missing_keys == []


@pytest.mark.parametrize(
    ("overrides", "frozen_units"),
    # resnet18 units: stem, 8 residual blocks, pooling, fc.
    [
        ({"mode": "scratch"}, 0),
        ({"mode": "head"}, 10),
        ({"mode": "partial"}, 7),
        ({"mode": "partial", "unfreeze_from": "layer3"}, 5),
        ({"mode": "partial", "freeze_fraction": 0.8}, 8),
        ({"mode": "two_phase"}, 10),
    ],
)
def test_frozen_units_is_the_leading_frozen_prefix(
    overrides: dict[str, object], frozen_units: int
) -> None:
    _, strategy = _model_and_strategy(**overrides)
    strategy.apply(1)
    assert len(strategy.units) == 11
    assert strategy.frozen_units() == frozen_units


def test_cnn_trains_everything() -> None:
    config = TrainConfig(
        data_dir="unused", model="cnn", weights="none", mode="scratch", image_size=32, filters=4
    )
    model = build_model(config, 3)
    stage = Strategy(model, config).apply(1)
    assert set(stage.lrs) == {"features", "dense", "fc"}
    trainable, total = count_parameters(model)
    assert trainable == total > 0
