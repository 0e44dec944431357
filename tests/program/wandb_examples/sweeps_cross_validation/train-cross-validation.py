"""Stand-in for wandb/examples' examples/wandb-sweeps/sweeps-cross-validation/train-cross-validation.py.

The original starts one process per fold, each with a wandb run of its own, and logs
the folds' mean `val_accuracy` on the sweep's run; this one computes the folds' values
from a formula and logs their mean on the sweep's run, the metric the sweep reads.
"""

from __future__ import annotations

import wandb


def main() -> None:
    sweep_run = wandb.init()
    config = sweep_run.config
    width = sum(config[f"node_size{i}"] for i in range(1, config.num_layers + 1))
    folds = [min(0.99, 0.5 + width / 2000 + fold / 100) for fold in range(5)]
    sweep_run.log(dict(val_accuracy=sum(folds) / len(folds)))
    wandb.finish()


if __name__ == "__main__":
    main()
