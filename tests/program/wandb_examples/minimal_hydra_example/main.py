"""Stand-in for wandb/examples' examples/minimal-hydra-example/main.py.

The sweep's command passes `${args_no_hyphens}` (`optimizer=sgd`,
`optimizer.config.learning_rate=0.01`) for Hydra to override its config; this one reads
the same overrides from its command line and logs `val_loss` per epoch, from a formula
instead of a Keras model trained on CIFAR-10.
"""

from __future__ import annotations

import sys

import wandb


def main() -> None:
    overrides = dict(arg.split("=", 1) for arg in sys.argv[1:])
    learning_rate = float(overrides["optimizer.config.learning_rate"])
    bonus = {"sgd": 0.0, "adagrad": 0.05, "adam": 0.1}[overrides["optimizer"]]
    with wandb.init(config={"overrides": overrides}) as run:
        for epoch in range(3):
            run.log({"val_loss": abs(learning_rate - 0.01) + bonus + 1 / (epoch + 1)})


if __name__ == "__main__":
    main()
