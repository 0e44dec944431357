"""Stand-in for wandb/examples' examples/wandb-sweeps/sweeps-boolean-parameters/train-bool.py.

The original, with its body under a main guard: it reads its parameters from the
command line (W&B's default `${args}`: `--flag1=True`) and logs `metric`.
"""

from __future__ import annotations

import argparse

import wandb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimizer", default=None, type=str)
    parser.add_argument("--flag1", default=False, type=lambda s: s.lower() == "true")
    parser.add_argument("--flag2", default=True, type=lambda s: s.lower() == "true")

    args = parser.parse_args()

    run = wandb.init(config=args)
    run.log(dict(metric=1.0))


if __name__ == "__main__":
    main()
