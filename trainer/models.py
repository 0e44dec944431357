"""Model factory: torchvision ResNets with a Dropout+Linear head, and the Part A CNN.

Every model is built by `build_model`, which also loads the starting weights
(`imagenet`, `none` or a checkpoint path). `model_units` splits a model into the
sequence of modules its forward pass runs, which is what the fine-tuning strategies
freeze and what the feature cache runs once.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from trainer.checkpoint import file_sha256, load_checkpoint, load_state, read_state
from trainer.config import TrainConfig
from trainer.errors import WeightsError

log = logging.getLogger("trainer")

#: name -> (builder, torchvision weights enum member used for "imagenet").
_RESNETS: dict[str, tuple[Callable[..., tvm.ResNet], tvm.WeightsEnum]] = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
}

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "leaky_relu": nn.LeakyReLU,
}

#: The Part A CNN has this many conv blocks.
CNN_BLOCKS = 5


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """Build `config.model` with a `num_classes` classifier and load `config.weights`.

    >>> from trainer.config import TrainConfig
    >>> cfg = TrainConfig(data_dir="d", model="resnet18", weights="none", mode="scratch", dropout=0.3)
    >>> build_model(cfg, 10).fc
    Sequential(
      (0): Dropout(p=0.3, inplace=False)
      (1): Linear(in_features=512, out_features=10, bias=True)
    )
    """
    if config.model == "cnn":
        cnn = PartACNN(config, num_classes)
        if config.weights != "none":
            load_checkpoint(cnn, config.weights, expected_model="cnn")
        return cnn
    builder, imagenet = _RESNETS[config.model]
    if config.weights == "none":
        return _resnet(builder, config.dropout, num_classes)
    if config.weights == "imagenet":
        state, source = _imagenet_state_dict(imagenet), str(imagenet)
    else:
        state, source = read_state(Path(config.weights), config.model), config.weights
    # Built on the meta device: no random init of tensors the weights then replace.
    with torch.device("meta"):
        model = _resnet(builder, config.dropout, num_classes)
    load_state(model, state, source, assign=True)
    _initialise_unloaded(model)
    return model


def _resnet(builder: Callable[..., tvm.ResNet], dropout: float, num_classes: int) -> tvm.ResNet:
    resnet = builder(weights=None)
    resnet.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(resnet.fc.in_features, num_classes))
    return resnet


def _initialise_unloaded(model: nn.Module) -> None:
    """Give every module still holding meta tensors (not in the weights) a fresh CPU init."""
    for name, module in model.named_modules():
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if not any(t.is_meta for t in own):
            continue
        module.to_empty(device="cpu", recurse=False)
        reset = getattr(module, "reset_parameters", None)
        if reset is None:
            raise WeightsError(f"the weights lack {name or 'the model'} and it has no initialiser")
        reset()


class PartACNN(nn.Module):
    """The Part A network: 5 x (conv -> [BatchNorm] -> activation -> 2x2 max-pool), dense, classifier.

    Block i has `filters * filter_growth**i` channels (at least 1); pooling uses
    `ceil_mode` so that images smaller than 32 px still reach a 1x1 map.
    """

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__()
        activation = _ACTIVATIONS[config.activation]
        layers: list[nn.Module] = []
        channels, size = 3, config.image_size
        for i in range(CNN_BLOCKS):
            out = max(1, round(config.filters * config.filter_growth**i))
            layers.append(nn.Conv2d(channels, out, config.kernel_size, padding="same"))
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers += [activation(), nn.MaxPool2d(2, ceil_mode=True)]
            channels, size = out, math.ceil(size / 2)
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.dense = nn.Sequential(
            nn.Linear(channels * size * size, config.dense_units),
            activation(),
            nn.Dropout(config.dropout),
        )
        self.fc = nn.Linear(config.dense_units, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dense(self.flatten(self.features(x))))


def model_units(model: nn.Module) -> list[nn.Module]:
    """The modules `model`'s forward pass runs, in order; `nn.Sequential(*units)` equals `model`.

    ResNets split into the stem, every residual block, pooling and the head `fc`, so a
    frozen prefix can end at any block. The last unit is always the classifier head.
    """
    if isinstance(model, tvm.ResNet):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        blocks = [
            block
            for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
            for block in layer
        ]
        return [stem, *blocks, nn.Sequential(model.avgpool, nn.Flatten(1)), model.fc]
    if isinstance(model, PartACNN):
        return [model.features, nn.Sequential(model.flatten, model.dense), model.fc]
    raise TypeError(f"no unit split for {type(model).__name__}")


def weights_identity(config: TrainConfig) -> str:
    """A string that changes whenever the starting weights change: the torchvision weights
    name, 'none', or the sha256 of the checkpoint file's bytes.

    >>> from trainer.config import TrainConfig
    >>> weights_identity(TrainConfig(data_dir="d", model="resnet50", mode="head"))
    'ResNet50_Weights.IMAGENET1K_V1'
    """
    if config.weights == "imagenet":
        return str(_RESNETS[config.model][1])
    if config.weights == "none":
        return "none"
    return f"sha256:{file_sha256(config.weights)}"


def _imagenet_state_dict(weights: tvm.WeightsEnum) -> dict[str, Tensor]:
    """torchvision's ImageNet weights, from torch hub's cache or downloaded there."""
    expected = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # URLError offline, hash mismatch, truncated file
        raise WeightsError(
            f"cannot load {weights} ({e}). Without network, download {weights.url} on another "
            f"machine and place it at {expected}, or set weights to a checkpoint path."
        ) from e
