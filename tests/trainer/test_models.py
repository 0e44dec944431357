"""Tests for trainer.models: the model factory, the Part A CNN and weight loading."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig
from trainer.errors import WeightsError
from trainer.models import PartACNN, build_model, model_units, weights_identity

torch.set_num_threads(1)


def _config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "data_dir": "unused",
        "model": "resnet18",
        "weights": "none",
        "mode": "scratch",
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)


def _save_resnet18(path: Path, num_classes: int, *, wrap: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = build_model(_config(), num_classes).state_dict()
    torch.save({"model": state, "config": _config().model_dump()} if wrap else state, path)
    return state


@pytest.mark.parametrize(
    ("name", "features"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)]
)
def test_resnet_head_is_dropout_then_linear(name: str, features: int) -> None:
    model = build_model(_config(model=name, dropout=0.25), 7)
    assert isinstance(model.fc, nn.Sequential)
    dropout, linear = model.fc
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.25
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (
        features,
        7,
    )


@pytest.mark.parametrize("size", [16, 24, 33])
def test_cnn_runs_on_small_and_odd_images(size: int) -> None:
    model = build_model(_config(model="cnn", image_size=size, filters=4, dense_units=8), 5).eval()
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize(
    ("growth", "channels"), [(2.0, [4, 8, 16, 32, 64]), (1.0, [4] * 5), (0.5, [4, 2, 1, 0, 0])]
)
def test_cnn_filters_grow_per_block(growth: float, channels: list[int]) -> None:
    model = build_model(_config(model="cnn", image_size=32, filters=4, filter_growth=growth), 3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [max(1, c) for c in channels]


@pytest.mark.parametrize(("batch_norm", "count"), [(True, 5), (False, 0)])
def test_cnn_batch_norm_is_optional(batch_norm: bool, count: int) -> None:
    model = build_model(_config(model="cnn", image_size=32, filters=4, batch_norm=batch_norm), 3)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == count


def test_cnn_layers_in_order() -> None:
    model = build_model(
        _config(
            model="cnn", image_size=32, filters=2, kernel_size=5, activation="gelu", dropout=0.1
        ),
        3,
    )
    assert isinstance(model, PartACNN)
    kinds = [type(m).__name__ for m in model.features[:4]]
    assert kinds == ["Conv2d", "BatchNorm2d", "GELU", "MaxPool2d"]
    assert model.features[0].kernel_size == (5, 5)
    assert [type(m).__name__ for m in model.dense] == ["Linear", "GELU", "Dropout"]
    assert model.fc.out_features == 3


@pytest.mark.parametrize("name", ["resnet18", "cnn"])
def test_units_compose_to_the_model(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(_config(model=name, image_size=32, filters=4), 3).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(nn.Sequential(*model_units(model))(x), model(x))


def test_imagenet_offline_names_the_file_to_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that refuses connections: "offline" even on a machine with network.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsError) as caught:
        build_model(_config(weights="imagenet", mode="head"), 3)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in str(caught.value)
    assert "checkpoint path" in str(caught.value)


@pytest.mark.parametrize("wrap", [True, False])
def test_checkpoint_loads_as_weights(tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "best.pt"
    saved = _save_resnet18(path, 3, wrap=wrap)
    loaded = build_model(_config(weights=str(path), mode="full"), 3).state_dict()
    assert loaded.keys() == saved.keys()
    for key, value in saved.items():
        torch.testing.assert_close(loaded[key], value)


def test_checkpoint_with_another_class_count_drops_the_classifier(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "best.pt"
    saved = _save_resnet18(path, 3, wrap=True)
    with caplog.at_level(logging.INFO, logger="trainer"):
        loaded = build_model(_config(weights=str(path), mode="head"), 5).state_dict()
    assert loaded["fc.1.weight"].shape == (5, 512)
    torch.testing.assert_close(loaded["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])
    assert "fc.1.weight" in caplog.text and "fc.1.bias" in caplog.text


def test_torchvision_style_classifier_maps_onto_our_head(tmp_path: Path) -> None:
    torch.manual_seed(2)
    plain = torch.nn.Linear(512, 3)
    state = {
        k: v for k, v in build_model(_config(), 3).state_dict().items() if not k.startswith("fc.")
    }
    state |= {"fc.weight": plain.weight.detach(), "fc.bias": plain.bias.detach()}
    torch.save(state, tmp_path / "tv.pth")
    model = build_model(_config(weights=str(tmp_path / "tv.pth"), mode="full"), 3)
    torch.testing.assert_close(model.fc[1].weight, plain.weight)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"not a checkpoint", "cannot be loaded"),
        ("list", "neither a state_dict"),
    ],
)
def test_bad_checkpoint_raises_weights_error(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "list":
        torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match=message):
        build_model(_config(weights=str(path), mode="head"), 3)


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    _save_resnet18(path, 3, wrap=True)
    with pytest.raises(WeightsError, match="holds a resnet18 but the config asks for resnet34"):
        build_model(_config(model="resnet34", weights=str(path), mode="head"), 3)


def test_state_dict_sharing_nothing_is_refused(tmp_path: Path) -> None:
    cnn = build_model(_config(model="cnn", image_size=32, filters=4), 3)
    torch.save(cnn.state_dict(), tmp_path / "cnn.pt")
    model = build_model(_config(), 3)
    with pytest.raises(WeightsError, match="no tensor that fits"):
        load_checkpoint(model, tmp_path / "cnn.pt")


def test_weights_identity_follows_file_content(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"one")
    first = weights_identity(_config(weights=str(path), mode="head"))
    path.write_bytes(b"a longer second version")
    second = weights_identity(_config(weights=str(path), mode="head"))
    assert first.startswith("sha256:") and first != second
    assert (
        weights_identity(_config(model="resnet34", weights="imagenet", mode="head"))
        == "ResNet34_Weights.IMAGENET1K_V1"
    )


def test_tensors_missing_from_the_weights_get_a_fresh_init(tmp_path: Path) -> None:
    saved = _save_resnet18(tmp_path / "full.pt", 3, wrap=False)
    partial = {k: v for k, v in saved.items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial.pt")
    model = build_model(_config(weights=str(tmp_path / "partial.pt"), mode="full"), 3)
    assert not any(t.is_meta for t in model.state_dict().values())
    torch.testing.assert_close(model.layer3[0].conv1.weight, saved["layer3.0.conv1.weight"])
    assert model.layer4[0].conv1.weight.std() > 0
    torch.testing.assert_close(model.layer4[0].bn1.running_var, torch.ones(512))
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
