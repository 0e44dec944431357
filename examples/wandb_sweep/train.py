"""A W&B training script, unchanged for sweeper: `wandb.init()` gives it the sweep's config.

It fits y = 3x + 1 with plain gradient descent (no dependency beyond wandb) and logs the
validation loss every epoch, as a real training script would.
"""

from __future__ import annotations

import random

import wandb

run = wandb.init()
config = run.config
rng = random.Random(config.seed)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(200))]
train, val = data[:160], data[160:]
w = b = 0.0
for epoch in range(config.epochs):
    for x, y in train:
        error = w * x + b - y
        w -= config.optimizer["lr"] * error * x
        b -= config.optimizer["lr"] * error
        if config.optimizer["clip"]:
            w, b = max(-10.0, min(10.0, w)), max(-10.0, min(10.0, b))
    val_loss = sum((w * x + b - y) ** 2 for x, y in val) / len(val)
    run.log({"epoch": epoch, "val_loss": val_loss})
run.finish()
