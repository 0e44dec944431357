"""Dedupe policies for bayes on a discrete space: engine calls per sweep and search quality.

    python bench/bayes_dedupe.py [--seeds 40] [--workdir /tmp/peers-work] [--jobs 2]
    python bench/bayes_dedupe.py --seeds 80 --policies "3 tries (before),nearest (now)"

W&B's bayes engine proposes configs that already ran; on a discrete space
`sweeper.engine.propose` never hands one out again. Each way of getting an unused config
costs engine calls (a GP fit and its predict over 1000 candidates, ~0.1 s each on the dev
CPU) and may change which configs the search tries. This bench measures both without a
clock: every config of `sweeps/head_bayes.yaml`'s 24-config space is trained once (seeded,
bench/peers.py's data and backbone, kept in `--workdir` with the results as
`head_results.json`, read back on later runs: delete it to train again), then the 22-run
sweep is replayed per seed and policy on those results, one slot, each run finished
before the next proposal:

- "N tries": ask the engine again on the same history up to N times, then pick an unused
  config at random (3 tries is the policy before this bench);
- "in flight N tries": on a repeat, ask again with the repeated config added as a pending
  run (the engine's `current_X`: the GP's fantasy there pushes the next choice away);
- "nearest (now)": `sweeper.engine.propose` as it is: one engine call; on a repeat, the
  unused config nearest to the proposal in the engine's normalized space, ties at random.

Per policy, over the seeds: engine calls per sweep, the run at which the space's best val
was first reached (mean and median; sweeps that never reach it count as run 23 in the
median), the best run's val and test accuracy, distinct configs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
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
from sweeper.run_config import flatten_config
from sweeper.spec import SweepSpec, parse_spec

RUNS = 22
#: Results of the 24 head configs: config key (swept parameters) -> val, test, history.
Table = dict[str, dict[str, Any]]
Policy = Callable[[SweepSpec, Sequence[engine.EngineRun]], engine.Proposal | engine.Exhausted]


def results_table(workdir: Path) -> Table:
    """Every config of the head space trained once, read back from `workdir` when there."""
    saved = workdir / "head_results.json"
    if saved.exists():
        table: Table = json.loads(saved.read_text())
        return table
    from trainer import TrainConfig, train

    setup = prepare(workdir, DemoDataSpec(), PretrainSpec(), RUNS)
    names = sorted(setup.space)
    table = {}
    with tempfile.TemporaryDirectory(prefix="bayes-dedupe-") as cache:
        for values in itertools.product(*(setup.space[n] for n in names)):
            config = dict(zip(names, values, strict=True))
            result = train(TrainConfig(**setup.fixed, **config, cache_dir=cache))
            table[engine.config_key(config)] = {
                "val": result.best_val_accuracy,
                "test": result.test_accuracy,
                "history": [{"val_accuracy": e.val_accuracy} for e in result.history],
            }
    temp = saved.with_suffix(".tmp")
    temp.write_text(json.dumps(table, indent=1))
    temp.rename(saved)
    return table


def _unused(spec: SweepSpec, runs: Sequence[engine.EngineRun]) -> dict[str, dict[str, Any]]:
    """The space's configs (engine form) no run used, by config key."""
    used = {r.config_key for r in runs}
    space = engine.discrete_space(spec.raw["parameters"]) or []
    keyed = {engine.config_key(flatten_config(c)): c for c in space}
    return {key: c for key, c in keyed.items() if key not in used}


def retry(n: int, pending: bool) -> Policy:
    """Up to n engine calls, then an unused config at random; with `pending`, each repeat
    joins the history as a pending run (the engine's runs in flight) for the next call."""

    def policy(spec: SweepSpec, runs: Sequence[engine.EngineRun]) -> Any:
        sweeps = engine._sweeps()
        unused = _unused(spec, runs)
        history = [engine.to_sweep_run(r, spec) for r in runs]
        for i in range(n):
            (suggestion,) = engine._next_runs(spec, history, 1)
            proposal = engine._proposal(suggestion.config, suggestion.search_info)
            if proposal.config_key in unused:
                return proposal
            if pending:
                repeat = sweeps.SweepRun(
                    name=f"repeat-{i}", state="pending", config=proposal.engine_config
                )
                history.append(repeat)
        return engine._proposal(random.choice(sorted(unused.items()))[1], None)

    return policy


POLICIES: dict[str, Policy] = {
    "3 tries (before)": retry(3, pending=False),
    "2 tries": retry(2, pending=False),
    "1 try": retry(1, pending=False),
    "in flight 2 tries": retry(2, pending=True),
    "nearest (now)": engine.propose,
}


def replay(table: Table, policy: str, seed: int) -> dict[str, Any]:
    """One 22-run sweep proposed by `policy` on the table's results."""
    spec = parse_spec(HEAD_SPEC.read_text(), str(HEAD_SPEC))
    swept = json.loads(next(iter(table)))
    random.seed(seed)
    np.random.seed(seed)  # wandb's engine draws from numpy's global generator
    calls = 0
    real = engine._next_runs

    def counted(spec: SweepSpec, runs: list[Any], n: int) -> Any:
        nonlocal calls
        calls += 1
        return real(spec, runs, n)

    engine._next_runs = counted  # type: ignore[assignment]
    runs: list[engine.EngineRun] = []
    reached: list[dict[str, Any]] = []
    try:
        for i in range(RUNS):
            proposal = POLICIES[policy](spec, runs)
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
    finally:
        engine._next_runs = real  # type: ignore[assignment]
    top = max(r["val"] for r in table.values())
    best = max(reached, key=lambda r: r["val"])
    return {
        "val": best["val"],
        "test": best["test"],
        "distinct": len({r.config_key for r in runs}),
        "reach": next((i + 1 for i, r in enumerate(reached) if r["val"] >= top), None),
        "calls": calls,
    }


def _replays(args: tuple[Table, str, Sequence[int]]) -> list[dict[str, Any]]:
    table, policy, seeds = args
    return [replay(table, policy, seed) for seed in seeds]


def row(policy: str, results: Sequence[dict[str, Any]]) -> str:
    """The policy's Markdown table row, means over the seeds."""
    reach = [r["reach"] for r in results if r["reach"] is not None]
    median = statistics.median(r["reach"] or RUNS + 1 for r in results)
    return (
        f"| {policy} | {statistics.mean(r['calls'] for r in results):.1f} "
        f"| {statistics.mean(reach):.2f} ({len(reach)}/{len(results)}) | {median:g} "
        f"| {statistics.mean(r['val'] for r in results):.3f} "
        f"| {statistics.mean(r['test'] for r in results):.3f} "
        f"| {statistics.mean(r['distinct'] for r in results):.1f} |"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "peers-work")
    parser.add_argument("--jobs", type=int, default=2, help="replay processes")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    table = results_table(args.workdir)
    policies = args.policies.split(",")
    print(
        f"bayes dedupe: the head sweep's {len(table)} configs trained once, {RUNS}-run sweeps "
        f"replayed over {args.seeds} seeds; best val of the space "
        f"{max(r['val'] for r in table.values()):.3f}"
    )
    print(
        "| policy | engine calls / sweep | run reaching the best: mean (sweeps) | median "
        "| best val | test | distinct |"
    )
    print("|---|---|---|---|---|---|---|")
    seeds = range(args.seeds)
    chunks = [(table, p, seeds[j :: args.jobs]) for p in policies for j in range(args.jobs)]
    with ProcessPoolExecutor(args.jobs) as pool:
        done = list(pool.map(_replays, chunks))
    for i, policy in enumerate(policies):
        print(row(policy, [r for part in done[i * args.jobs : (i + 1) * args.jobs] for r in part]))


if __name__ == "__main__":
    main()
