"""Benchmark the CLI's start-up: process wall time of `sweeper --help`, `ls`, `status` and
`validate <spec>`, with `wandb --help` timed in the same run for scale.

    .venv/bin/python bench/cli_latency.py [--runs 7] [--spec sweeps/head_bayes.yaml]

Each command runs as a fresh process, as a user types it (`python -m sweeper`, the
console script's import path), against a temporary home holding one local sweep, after
one untimed round that fills the disk cache and Python's bytecode caches (`__pycache__`)
as a user's first run does. The commands take turns, so load from other jobs falls on all
of them alike. Prints the median wall and CPU time per command, their ratios to
`wandb --help`, and whether each meets the 0.6 s goal.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The goal for every sweeper command, in seconds of process wall time.
GOAL_S = 0.6


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one process run of `argv`.

    CPU time is what the wall time would be on an idle machine (start-up is single
    threaded); on a loaded one the wall time also counts waiting for a core.
    A failing command aborts the benchmark.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Runs per command (median taken).")
    parser.add_argument("--spec", default="sweeps/head_bayes.yaml", help="Spec to validate.")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "SWEEPER_HOME": home,
            "WANDB_MODE": "offline",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.pop("WANDB_API_KEY", None)
        # A user's Python writes bytecode caches; with PYTHONDONTWRITEBYTECODE (set on some dev
        # machines) every run would also time compiling each of our modules from source.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        sweeper = [sys.executable, "-m", "sweeper"]
        # Setup, not timed: one local sweep for `ls` and `status` to show.
        subprocess.run(
            [*sweeper, "create", args.spec, "--backend", "local"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        wandb_script = Path(sys.executable).with_name("wandb")
        commands = {
            "sweeper --help": [*sweeper, "--help"],
            "sweeper ls": [*sweeper, "ls"],
            "sweeper status": [*sweeper, "status"],
            f"sweeper validate {args.spec}": [*sweeper, "validate", args.spec],
            "wandb --help": [str(wandb_script), "--help"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # untimed: fills the disk and bytecode caches
            subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
        for _ in range(args.runs):
            for name, argv in commands.items():
                wall, cpu = timed(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)

    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    width = max(len(name) for name in commands)
    print(f"{'command':<{width}}  wall s  x wandb  CPU s  x wandb  <= {GOAL_S} s (wall / CPU)")
    for name in commands:
        goal = (
            ""
            if name.startswith("wandb")
            else " / ".join("yes" if t <= GOAL_S else "no" for t in (wall[name], cpu[name]))
        )
        print(
            f"{name:<{width}}  {wall[name]:6.3f}  {wall[name] / wall['wandb --help']:7.2f}  "
            f"{cpu[name]:5.3f}  {cpu[name] / cpu['wandb --help']:7.2f}  {goal}"
        )
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    print(f"(medians of {args.runs} runs each, interleaved; {os.cpu_count()} CPUs; load {load})")


if __name__ == "__main__":
    main()
