"""Search quality of bayes proposals made ahead vs at the claim, on the seeds' head sweep.

    python bench/bayes_ahead.py [--seeds 20] [--workdir /tmp/peers-work]

`sweeper.engine.propose_ahead` proposes a slot's next bayes config while the run before it
trains, with that run in flight (the GP's own prediction stands in for its result). This
bench measures what that costs the search, without the wall clock's noise: every config
of `sweeps/head_bayes.yaml`'s 24-config space is trained once (seeded, bench/peers.py's
data and backbone, `--workdir` keeps them), then the 22-run sweep is replayed per seed
through `sweeper.engine.propose` on those results, four ways: proposals at the claim
(after the run before ended) or ahead, with the engine asked up to `ENGINE_TRIES` times
for an unused config or once. Per way, means over the seeds: the best run's val and test
accuracy, distinct configs, the run at which the best val was first reached, the best val
after 3/5/8/12 runs, and the engine calls per sweep.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers import HEAD_SPEC, prepare

from demo.dataset import DemoDataSpec
from demo.pretrain import PretrainSpec
from sweeper import engine
from sweeper.models import RunState
from sweeper.spec import parse_spec
from trainer import TrainConfig, train

RUNS = 22
CURVE_AT = (3, 5, 8, 12)


def results_table(workdir: Path) -> dict[str, dict[str, Any]]:
    """Every config of the head space trained once: config key -> val, test, history."""
    setup = prepare(workdir, DemoDataSpec(), PretrainSpec(), RUNS)
    names = sorted(setup.space)
    table: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bayes-ahead-") as cache:
        for values in itertools.product(*(setup.space[n] for n in names)):
            config = dict(zip(names, values, strict=True))
            result = train(TrainConfig(**setup.fixed, **config, cache_dir=cache))
            table[engine.config_key(config)] = {
                "val": result.best_val_accuracy,
                "test": result.test_accuracy,
                "history": [{"val_accuracy": e.val_accuracy} for e in result.history],
                "swept": names,
            }
    return table


def replay(table: dict[str, dict[str, Any]], seed: int, ahead: bool) -> dict[str, Any]:
    """One 22-run sweep proposed by sweeper.engine on the table's results."""
    spec = parse_spec(HEAD_SPEC.read_text(), str(HEAD_SPEC))
    swept = next(iter(table.values()))["swept"]
    random.seed(seed)
    np.random.seed(seed)  # wandb's engine draws from numpy's global generator
    engine.propose_ahead(ahead)
    calls = 0
    real = engine._next_runs

    def counted(spec: Any, runs: list[Any], n: int) -> Any:
        nonlocal calls
        calls += 1
        return real(spec, runs, n)

    engine._next_runs = counted
    runs: list[engine.EngineRun] = []
    reached: list[dict[str, Any]] = []
    try:
        for i in range(RUNS):
            proposal = engine.propose(spec, runs)
            assert isinstance(proposal, engine.Proposal)
            row = table[engine.config_key({n: proposal.config[n] for n in swept})]
            runs.append(
                engine.EngineRun(
                    id=f"r{i}",
                    state=RunState.finished,
                    engine_config=proposal.engine_config,
                    config_key=proposal.config_key,
                    metric=row["val"],
                    history=row["history"],
                )
            )
            reached.append(row)
        for held in list(engine._ahead.values()):
            held.thread.join()  # the engine calls of this sweep, counted
    finally:
        engine._next_runs = real
        engine.propose_ahead(False)
    top = max(r["val"] for r in table.values())
    best = max(reached, key=lambda r: r["val"])
    return {
        "val": best["val"],
        "test": best["test"],
        "distinct": len({r.config_key for r in runs}),
        "reach": next(i + 1 for i, r in enumerate(reached) if r["val"] >= top)
        if best["val"] >= top
        else None,
        "curve": [max(r["val"] for r in reached[:k]) for k in CURVE_AT],
        "calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "peers-work")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    table = results_table(args.workdir)
    print(f"bayes ahead: the head sweep's 24 configs trained once, {RUNS}-run sweeps replayed")
    print(
        f"over {args.seeds} seeds; best val of the space {max(r['val'] for r in table.values()):.2f}"
    )
    at = "/".join(str(k) for k in CURVE_AT)
    print(
        f"| way | best val | test | distinct | run reaching the best | best after {at} | engine calls |"
    )
    print("|---|---|---|---|---|---|---|")
    tries = engine.ENGINE_TRIES
    for ahead, engine_tries in itertools.product((False, True), (tries, 1)):
        engine.ENGINE_TRIES = engine_tries
        rows = [replay(table, seed, ahead) for seed in range(args.seeds)]
        engine.ENGINE_TRIES = tries
        reach = [r["reach"] for r in rows if r["reach"] is not None]
        curve = "/".join(
            f"{statistics.mean(r['curve'][j] for r in rows):.3f}" for j in range(len(CURVE_AT))
        )
        way = f"{'ahead' if ahead else 'at the claim'}, {engine_tries} tr{'ies' if engine_tries > 1 else 'y'}"
        print(
            f"| {way} | {statistics.mean(r['val'] for r in rows):.3f} "
            f"| {statistics.mean(r['test'] for r in rows):.3f} "
            f"| {statistics.mean(r['distinct'] for r in rows):.1f} "
            f"| {statistics.mean(reach):.1f} ({len(reach)}/{len(rows)}) | {curve} "
            f"| {statistics.mean(r['calls'] for r in rows):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
