"""Fine-tuning strategies: which parameters train in each epoch, and at what learning rate.

A model is seen as a stack of named blocks from input to output (ResNet: stem,
layer1..layer4, fc). Each mode decides per epoch which blocks (or, for
`freeze_fraction`, which parameter tensors) train:

- scratch, full: everything.
- head: only `fc`.
- partial: `unfreeze_from` and every later block + fc (default layer4), or every
  parameter after the first `freeze_fraction` of the backbone's parameter count.
- gradual: head only, then one more block from the top every `unfreeze_every`
  epochs; block at depth d (fc = 0, layer4 = 1, ...) gets `lr * layer_lr_decay**d`.
- two_phase: `head_epochs` of head only at `lr`, then every block at `finetune_lr`
  (default lr / 10).

BatchNorm layers whose parameters are all frozen are switched to a subclass that
stays in eval mode whatever `model.train()` says, so frozen statistics never drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision import models as tvm

from trainer.config import TrainConfig
from trainer.models import PartACNN, model_units


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that ignores `train(True)`: its running statistics never update."""

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


@dataclass(frozen=True)
class Stage:
    """What trains in one epoch: learning rate per trainable block (block name -> lr)."""

    lrs: dict[str, float]


class Strategy:
    """Applies `config.mode` to `model` epoch by epoch.

    >>> from trainer.config import TrainConfig
    >>> from trainer.models import build_model
    >>> cfg = TrainConfig(data_dir="d", model="resnet18", weights="none", mode="scratch")
    >>> model = build_model(cfg, 3)
    >>> cfg = cfg.model_copy(update={"mode": "head"})
    >>> Strategy(model, cfg).apply(1).lrs
    {'fc': 0.001}
    >>> count_parameters(model)
    (1539, 11178051)
    """

    def __init__(self, model: nn.Module, config: TrainConfig) -> None:
        self.model = model
        self.config = config
        self.blocks = named_blocks(model)
        self.units = model_units(model)

    @property
    def frozen_set_is_fixed(self) -> bool:
        """True when the same parameters stay frozen for the whole run (not gradual, two_phase)."""
        return self.config.mode not in ("gradual", "two_phase")

    def apply(self, epoch: int) -> Stage:
        """Set `requires_grad` and BatchNorm modes for 1-based `epoch`; return its learning rates."""
        lrs = self._lrs(epoch)
        frozen = self._frozen_prefix_params() if self.config.mode == "partial" else set()
        for name, block in self.blocks:
            for param in block.parameters():
                param.requires_grad_(name in lrs and id(param) not in frozen)
        _sync_batchnorm(self.model)
        trainable = {
            name for name, block in self.blocks if any(p.requires_grad for p in block.parameters())
        }
        return Stage({name: lr for name, lr in lrs.items() if name in trainable})

    def frozen_units(self) -> int:
        """How many leading units of `model_units` have no trainable parameter (after `apply`)."""
        count = 0
        for unit in self.units:
            if any(p.requires_grad for p in unit.parameters()):
                break
            count += 1
        return count

    def _lrs(self, epoch: int) -> dict[str, float]:
        config, names = self.config, [name for name, _ in self.blocks]
        top_down = names[::-1]  # fc first
        if config.mode in ("scratch", "full"):
            return dict.fromkeys(names, config.lr)
        if config.mode == "head":
            return {"fc": config.lr}
        if config.mode == "partial":
            if config.freeze_fraction is not None:
                return dict.fromkeys(names, config.lr)
            start = names.index(config.unfreeze_from or "layer4")
            return dict.fromkeys(names[start:], config.lr)
        if config.mode == "gradual":
            open_blocks = 1 + (epoch - 1) // config.unfreeze_every
            return {
                name: config.lr * config.layer_lr_decay**depth
                for depth, name in enumerate(top_down[:open_blocks])
            }
        # two_phase
        if epoch <= config.head_epochs:
            return {"fc": config.lr}
        return dict.fromkeys(names, config.finetune_lr or config.lr / 10)

    def _frozen_prefix_params(self) -> set[int]:
        """ids of the longest prefix of backbone tensors whose size stays within freeze_fraction."""
        if self.config.freeze_fraction is None:
            return set()
        backbone = [p for name, block in self.blocks if name != "fc" for p in block.parameters()]
        budget = self.config.freeze_fraction * sum(p.numel() for p in backbone)
        frozen: set[int] = set()
        used = 0
        for param in backbone:
            used += param.numel()
            if used > budget:
                break
            frozen.add(id(param))
        return frozen


def named_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The strategy blocks of `model` from input to output; the last is always `fc`."""
    if isinstance(model, tvm.ResNet):
        stem = nn.ModuleList([model.conv1, model.bn1])
        layers = [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
        return [("stem", stem), *layers, ("fc", model.fc)]
    if isinstance(model, PartACNN):
        return [("features", model.features), ("dense", model.dense), ("fc", model.fc)]
    raise TypeError(f"no strategy blocks for {type(model).__name__}")


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts of `model`."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _sync_batchnorm(model: nn.Module) -> None:
    """Freeze BatchNorm layers whose parameters are all frozen; unfreeze the others."""
    for module in model.modules():
        if type(module) not in (nn.BatchNorm2d, FrozenBatchNorm2d):
            continue
        params = list(module.parameters(recurse=False))
        frozen = bool(params) and not any(p.requires_grad for p in params)
        target: type[nn.BatchNorm2d] = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
        if type(module) is not target:
            # Swapping the class keeps the tensors, the state_dict keys and the hooks.
            module.__class__ = target
            module.train(model.training and not frozen)
