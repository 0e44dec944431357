"""A W&B user's training script for the report's end-to-end test: reads only `wandb.config`
(a nested `optimizer` group), logs `val_loss` each epoch, and fails when the learning rate
makes it diverge, as a real script would. Its body runs only as a script: pytest's doctest
collection imports it."""

from __future__ import annotations

import sys

import wandb


def main() -> None:
    run = wandb.init()
    config = run.config
    lr = float(config.optimizer["learning_rate"])
    if lr >= 1.0:
        print(f"ValueError: loss diverged at learning_rate={lr}", file=sys.stderr, flush=True)
        sys.exit(3)
    for epoch in range(config.epochs):
        run.log({"val_loss": round(1.0 / (1 + epoch * lr * 10) + 0.01 * config.seed, 4)})
    run.finish()


if __name__ == "__main__":
    main()
