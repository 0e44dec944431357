"""A user's script that reads only `wandb.config` and logs `score` for `steps` steps.

Knobs through the environment, so one script serves every test: PROGRAM_FAIL=1 exits
with an error on stderr; PROGRAM_HANG_BELOW=x waits after its first step, until it is
stopped, when lr < x; PROGRAM_KILL_ONCE=path kills itself with SIGKILL if `path` does not
exist yet (creating it); PROGRAM_OUT names a file the config is appended to as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import wandb

run = wandb.init()
config = dict(run.config)
if out := os.environ.get("PROGRAM_OUT"):
    with open(out, "a") as f:
        f.write(json.dumps({"run": run.id, "config": config, "argv": sys.argv[1:]}) + "\n")
if (marker := os.environ.get("PROGRAM_KILL_ONCE")) and not os.path.exists(marker):
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)
if os.environ.get("PROGRAM_FAIL"):
    print("about to fail", flush=True)
    print("ValueError: lr too large for this script", file=sys.stderr, flush=True)
    sys.exit(3)
steps = int(config.get("steps", 3))
for step in range(steps):
    run.log({"score": float(config.get("lr", 1)) * (step + 1), "step_seen": step})
    if float(config.get("lr", 1)) < float(os.environ.get("PROGRAM_HANG_BELOW", "-inf")):
        time.sleep(600)
run.finish()
