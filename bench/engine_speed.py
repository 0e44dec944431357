"""CPU time of one `engine.propose`: bayes on the seeds' head space, and a random draw.

    .venv/bin/python bench/engine_speed.py [--calls 60] [--tree PATH]

Bayes: `sweeps/head_bayes.yaml` (24 configs) with 21 finished runs, the head sweep's last
claims; random: bench/claims.py's continuous space, per config handed out (a batch of
`engine.DRAWN_AHEAD` draws from one engine call, timed whole and divided). Each is timed with the engine as `sweeper.engine` sets it up and, where the
tree has `sweeper.engine_speed`, with W&B's own internals put back, alternating call by
call in this one process; the figure is the median CPU time (`time.process_time`) per
call. `--tree` imports `sweeper` from another checkout (e.g. an older commit unpacked with
`git archive`), to compare trees with this same script.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Finished runs before the timed bayes proposal: the head sweep's 22nd claim.
FINISHED = 21


def main() -> None:
    """Time both kinds of proposal and print a small table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=60, help="timed calls per cell")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout to import sweeper from")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    sys.path.insert(1, str(ROOT / "bench"))
    warnings.filterwarnings("ignore")

    from sweeper import engine
    from sweeper.spec import SweepSpec, load_spec

    # After sweeper (from --tree): claims.py puts this checkout first on the path.
    parameters = importlib.import_module("claims").PARAMETERS

    print(f"sweeper from {Path(engine.__file__).parents[1]}")
    head = load_spec(ROOT / "sweeps" / "head_bayes.yaml")
    runs = head_runs(head, engine)
    random_spec = SweepSpec(
        raw={"method": "random", "parameters": parameters},
        source="bench",
        method="random",
        metric_name="val_accuracy",
        metric_goal="maximize",
    )
    engine.propose(head, runs)  # imports the engine (and installs the stand-ins)
    try:
        speed: Any = importlib.import_module("sweeper.engine_speed")
    except ImportError:
        speed = None
    ways: dict[str, Callable[[], None]] = {"as set up": lambda: None}
    if speed is not None:
        ways = {"as set up": speed.install, "W&B's internals": speed.uninstall}

    def bayes() -> None:
        engine.propose(head, runs)

    def drawn() -> None:
        engine._drawn.clear()  # a fresh batch: one engine call, then the draws ahead
        for _ in range(engine.DRAWN_AHEAD):
            engine.propose(random_spec, [])

    cells = {("bayes, 21 runs", way): [] for way in ways} | {
        ("random, per draw", way): [] for way in ways
    }
    for _ in range(args.calls):
        for way, setup in ways.items():
            setup()
            cells["bayes, 21 runs", way].append(cpu_ms(bayes))
            cells["random, per draw", way].append(cpu_ms(drawn) / engine.DRAWN_AHEAD)
    if speed is not None:
        speed.install()
    print(f"median CPU ms per engine.propose over {args.calls} calls, alternated")
    print(f"  {'':>16}" + "".join(f"  {way:>16}" for way in ways))
    for kind in ("bayes, 21 runs", "random, per draw"):
        medians = [statistics.median(cells[kind, way]) for way in ways]
        print(f"  {kind:>16}" + "".join(f"  {m:>16.3f}" for m in medians))
        if len(medians) == 2:
            print(f"  ratio W&B's / set up, {kind}: {medians[1] / medians[0]:.2f}x")
    print(f"  load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def head_runs(spec: Any, engine: Any) -> list[Any]:
    """`FINISHED` finished runs of the head space's configs, with a smooth fake val."""
    from sweeper.models import RunState
    from sweeper.run_config import flatten_config

    space = engine.discrete_space(spec.raw["parameters"])
    runs = []
    for i, config in enumerate(space[:FINISHED]):
        flat = flatten_config(config)
        val = 0.8 - 0.1 * flat["dropout"] - 200 * abs(flat["lr"] - 1e-4) + 0.001 * i
        runs.append(
            engine.EngineRun(
                id=f"run{i:02d}",
                state=RunState.finished,
                engine_config=config,
                config_key=engine.config_key(flat),
                history=[{"epoch": 1, "val_accuracy": val}],
            )
        )
    return runs


def cpu_ms(call: Callable[[], None]) -> float:
    """CPU milliseconds of this process for one `call`."""
    start = time.process_time()
    call()
    return (time.process_time() - start) * 1000


if __name__ == "__main__":
    main()
