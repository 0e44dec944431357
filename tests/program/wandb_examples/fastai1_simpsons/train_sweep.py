"""Stand-in for wandb/examples' examples/fastai/fastai-v1-examples/fastai1-simpsons/train_sweep.py.

The same `wandb.init(config=hyperparameter_defaults)` and `wandb.config` names as the
original, and `accuracy` logged every epoch as its WandbCallback does, from a formula
instead of a ResNet34 fine-tuned on Simpsons images.
"""

from __future__ import annotations

import math

import wandb

HYPERPARAMETER_DEFAULTS = {
    "img_size": 64,
    "batch_size": 8,
    "epochs": 1,
    "encoder": "resnet34",
    "dropout": 0.5,
    "one_cycle": True,
    "learning_rate": 1e-3,
    "pretrained": True,
}


def main() -> None:
    wandb.init(config=HYPERPARAMETER_DEFAULTS)
    config = wandb.config
    ceiling = 0.9 - abs(math.log10(config.learning_rate) + 3) / 20 - config.dropout / 5
    for epoch in range(config.epochs):
        wandb.log({"accuracy": ceiling * (1 - 1 / (epoch + 2))})


if __name__ == "__main__":
    main()
