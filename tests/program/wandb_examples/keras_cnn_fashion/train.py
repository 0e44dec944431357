"""Stand-in for wandb/examples' examples/keras/keras-cnn-fashion/train.py.

The same `wandb.init(config=defaults)` and `wandb.config` names as the original, and
`val_loss` logged every epoch as its WandbCallback does, from a formula instead of a
Keras CNN trained on Fashion-MNIST.
"""

from __future__ import annotations

import wandb

DEFAULTS = {
    "dropout": 0.2,
    "hidden_layer_size": 128,
    "layer_1_size": 16,
    "layer_2_size": 32,
    "learn_rate": 0.01,
    "decay": 1e-6,
    "momentum": 0.9,
    "epochs": 27,
}


def main() -> None:
    wandb.init(config=DEFAULTS)
    config = wandb.config
    floor = abs(config.learn_rate - 0.003) * 20 + config.dropout + 4 / config.layer_1_size
    for epoch in range(config.epochs):
        val_loss = floor + config.momentum / (epoch + 1)
        wandb.log({"epoch": epoch, "loss": val_loss * 0.9, "val_loss": val_loss})


if __name__ == "__main__":
    main()
