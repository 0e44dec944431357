"""Benchmark the CLI's start-up: process wall time of `sweeper --help`, `ls`, `status` and
`validate <spec>`, with `wandb --help` timed in the same run for scale.

    .venv/bin/python bench/cli_latency.py [--runs 7] [--spec sweeps/head_bayes.yaml] [--against DIR]

Each command runs as a fresh process, as a user types it (`python -m sweeper`, the
console script's import path), against a temporary home holding one local sweep, after
one untimed round that fills the disk cache and Python's bytecode caches (`__pycache__`)
as a user's first run does. The commands take turns, so load from other jobs falls on all
of them alike. Prints the median wall and CPU time per command, their ratios to
`wandb --help`, and whether each meets the 0.6 s goal (`create`, timed too since it starts
every sweep of a race, has none).

`--against DIR` times another checkout of sweeper (e.g. `git archive <commit>` unpacked in
a temporary folder) in the same run, its commands taking turns with this tree's, each
against its own home, so a change is measured side by side under the same load. The
other tree runs from its own folder: `python -m` puts the working folder first on the
import path.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The goal for every sweeper command, in seconds of process wall time.
GOAL_S = 0.6


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one process run of `argv`.

    CPU time is what the wall time would be on an idle machine (start-up is single
    threaded); on a loaded one the wall time also counts waiting for a core.
    A failing command aborts the benchmark.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@dataclass(frozen=True)
class Command:
    """One command line to time, with the tree it runs from and its environment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def tree_commands(tree: Path, label: str, spec: Path, scratch: Path) -> list[Command]:
    """The timed commands of one sweeper tree, each tree with its own homes under `scratch`.

    `ls` and `status` show one local sweep, made here untimed; `create` stores a new sweep
    at each run in a home of its own, so that the others' output does not grow.
    """
    env = {
        **os.environ,
        "SWEEPER_HOME": str(scratch / "home"),
        "WANDB_MODE": "offline",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])),
    }
    env.pop("WANDB_API_KEY", None)
    # A user's Python writes bytecode caches; with PYTHONDONTWRITEBYTECODE (set on some dev
    # machines) every run would also time compiling each of our modules from source.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sweeper = [sys.executable, "-m", "sweeper"]
    create = [*sweeper, "create", str(spec), "--backend", "local"]
    subprocess.run(create, env=env, cwd=tree, check=True, capture_output=True)
    shown = os.path.relpath(spec, ROOT)
    return [
        Command(f"sweeper --help{label}", [*sweeper, "--help"], env, tree),
        Command(f"sweeper ls{label}", [*sweeper, "ls"], env, tree),
        Command(f"sweeper status{label}", [*sweeper, "status"], env, tree),
        Command(f"sweeper validate {shown}{label}", [*sweeper, "validate", str(spec)], env, tree),
        Command(
            f"sweeper create {shown}{label}",
            create,
            {**env, "SWEEPER_HOME": str(scratch / "create-home")},
            tree,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Runs per command (median taken).")
    parser.add_argument("--spec", default="sweeps/head_bayes.yaml", help="Spec to validate.")
    parser.add_argument(
        "--against", type=Path, help="Another sweeper tree to time side by side (a baseline)."
    )
    args = parser.parse_args()
    spec = (ROOT / args.spec).resolve()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        commands = tree_commands(ROOT, "", spec, Path(scratch, "this"))
        if args.against:
            against = args.against.resolve()
            baseline = tree_commands(against, " [against]", spec, Path(scratch, "against"))
            commands = [c for pair in zip(baseline, commands, strict=True) for c in pair]
        wandb_script = Path(sys.executable).with_name("wandb")
        commands.append(
            Command("wandb --help", [str(wandb_script), "--help"], dict(os.environ), ROOT)
        )
        walls: dict[str, list[float]] = {c.name: [] for c in commands}
        cpus: dict[str, list[float]] = {c.name: [] for c in commands}
        for c in commands:  # untimed: fills the disk and bytecode caches
            subprocess.run(c.argv, env=c.env, cwd=c.cwd, check=True, capture_output=True)
        for _ in range(args.runs):
            for c in commands:
                wall, cpu = timed(c.argv, c.env, c.cwd)
                walls[c.name].append(wall)
                cpus[c.name].append(cpu)

    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    width = max(len(name) for name in walls)
    print(f"{'command':<{width}}  wall s  x wandb  CPU s  x wandb  <= {GOAL_S} s (wall / CPU)")
    for name in walls:
        goal = (
            ""
            if name.startswith(("wandb", "sweeper create"))
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
