"""Stand-in for wandb/examples' colabs/pyg/pointnet-classification (its training script).

Logs `Validation/Accuracy` every epoch, a metric name with a slash as PyTorch Geometric
examples write them, from a formula instead of PointNet++ trained on ModelNet.
"""

from __future__ import annotations

import wandb


def main() -> None:
    run = wandb.init()
    config = run.config
    ceiling = 0.95 - abs(config.set_abstraction_ratio_1 - 0.5) / 5 - config.dropout / 10
    for epoch in range(3):
        run.log({"Train/Loss": 1 / (epoch + 1), "Validation/Accuracy": ceiling - 0.1 / (epoch + 1)})


if __name__ == "__main__":
    main()
