"""A user's script on the Python API, as it would be written for W&B with `wandb.` -> `sweeper.`
for the two sweep calls: `python function_sweep.py CONFIG_JSON [COUNT]`.

`train()` reads its config only through a bare `wandb.init()` and logs `loss` with
`wandb.log()` for `steps` steps. lr >= 1 raises ValueError; lr below $HANG_BELOW waits
after its first step until it is stopped. Each call appends its config to $PROGRAM_OUT.
Prints the sweep id and the agent's summary as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

import wandb

import sweeper


def train() -> None:
    wandb.init()
    config = dict(wandb.config)
    with open(os.environ["PROGRAM_OUT"], "a") as f:
        f.write(json.dumps({"run": wandb.run.id, "config": config}) + "\n")
    lr = float(config["lr"])
    if lr >= 1:
        raise ValueError(f"lr {lr} is too large")
    for step in range(int(config.get("steps", 3))):
        wandb.log({"loss": lr / (step + 1)})
        while lr < float(os.environ.get("HANG_BELOW", "-inf")):
            time.sleep(0.01)


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else None
    sweep_id = sweeper.sweep(config, project="api-test")
    summary = sweeper.agent(sweep_id, function=train, count=count)
    print(json.dumps({"sweep": sweep_id, "summary": summary.model_dump()}))
