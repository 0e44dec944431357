"""A user's script that reads only `wandb.config` and logs `score` for `steps` steps
(lr * step number), or the values of its `scores` parameter in turn; with `summary_best`
true it sets `wandb.summary["score"]` to the best of them itself, as W&B users do.

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
lr = float(config.get("lr", 1))
scores = config.get("scores") or [lr * (step + 1) for step in range(int(config.get("steps", 3)))]
for step, score in enumerate(scores):
    run.log({"score": float(score), "step_seen": step})
    if lr < float(os.environ.get("PROGRAM_HANG_BELOW", "-inf")):
        time.sleep(600)
if config.get("summary_best"):
    run.summary["score"] = max(scores)
run.finish()
