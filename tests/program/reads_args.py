"""A user's script that reads only its command line (no wandb.config), then logs `score`."""

from __future__ import annotations

import json
import os
import sys

import wandb

args = sys.argv[1:]
if out := os.environ.get("PROGRAM_OUT"):
    with open(out, "a") as f:
        f.write(json.dumps({"argv": args, "executable": sys.executable}) + "\n")
run = wandb.init(config={})
run.log({"score": float(len(args))})
run.finish()
