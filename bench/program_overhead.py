"""Benchmark the agent's own overhead per program run: claim, start, reading metrics, finish.

    .venv/bin/python bench/program_overhead.py [--runs 6]

The script only calls `wandb.init()`, logs one row and finishes, so nearly all of a run's
time is wandb's own start-up, which a user pays under `wandb agent` too. Measured side by
side in one process: the script run directly (`python script.py`, the sweep's config
file given as `wandb agent` gives it), and `sweeper agent --gpus none --count N` on a
random sweep for N = 1 and N = 1 + runs; the difference of the two agent timings over
`runs` is the time per run under the agent, with the agent's start-up cancelled out.
Overhead = that minus the direct run's time. Goal: <= 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.5
SCRIPT = "import wandb\nrun = wandb.init()\nrun.log({'score': run.config.x})\nrun.finish()\n"
SPEC = """\
method: random
metric: {name: score, goal: maximize}
program: script.py
parameters:
  x: {distribution: uniform, min: 0, max: 1}
"""


def wall(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        (cwd / "script.py").write_text(SCRIPT)
        (cwd / "sweep.yaml").write_text(SPEC)
        (cwd / "params.yaml").write_text("x:\n  value: 0.5\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
        env["SWEEPER_HOME"] = str(cwd / ".sweeper")
        direct_env = {**env, "WANDB_SWEEP_PARAM_PATH": str(cwd / "params.yaml")}
        direct_env["WANDB_DIR"] = str(cwd)
        sweeper = [sys.executable, "-m", "sweeper"]
        out = subprocess.run(
            [*sweeper, "create", "sweep.yaml", "--backend", "local", "--json"],
            env=env,
            cwd=cwd,
            check=True,
            capture_output=True,
            text=True,
        )
        sweep_id = json.loads(out.stdout)["id"]
        agent = [*sweeper, "agent", sweep_id, "--gpus", "none", "--count"]
        direct, short, long = [], [], []
        for _ in range(2):  # turns, so other load falls on both alike
            direct.append(wall([sys.executable, "script.py"], direct_env, cwd))
            short.append(wall([*agent, "1"], env, cwd))
            long.append(wall([*agent, str(1 + args.runs)], env, cwd))
    per_run = (statistics.median(long) - statistics.median(short)) / args.runs
    script = statistics.median(direct)
    overhead = per_run - script
    print(f"script run directly:       {script:.2f} s")
    print(f"per run under the agent:   {per_run:.2f} s ({per_run / script:.2f}x the direct run)")
    verdict = "meets" if overhead <= GOAL_S else "misses"
    print(f"agent overhead per run:    {overhead:.2f} s ({verdict} the {GOAL_S} s goal)")


if __name__ == "__main__":
    main()
