"""Stand-in for wandb/examples' examples/pytorch/pytorch-cnn-fashion/train.py.

The same `wandb.init(config=hyperparameter_defaults, project=...)` and `wandb.config`
names as the original, and its `accuracy` and `loss` metrics logged as it goes, from a
formula instead of a PyTorch CNN trained on Fashion-MNIST.
"""

from __future__ import annotations

import wandb

HYPERPARAMETER_DEFAULTS = {
    "dropout": 0.5,
    "channels_one": 16,
    "channels_two": 32,
    "batch_size": 100,
    "learning_rate": 0.001,
    "epochs": 2,
}


def main() -> None:
    wandb.init(config=HYPERPARAMETER_DEFAULTS, project="pytorch-cnn-fashion")
    config = wandb.config
    floor = config.dropout / 2 + 1 / config.channels_one + abs(config.learning_rate - 0.001)
    for epoch in range(config.epochs):
        loss = floor + 1 / (epoch + 1)
        wandb.log({"accuracy": 1 - loss / 2, "loss": loss})


if __name__ == "__main__":
    main()
