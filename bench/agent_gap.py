"""How long a slot sits idle between two head runs: warm reuse vs a fresh process per run vs cold,
and with bayes search, whose claim fits a GP.

    python bench/agent_gap.py [--runs 5] [--wandb offline] [--ways reuse,fresh,cold,bayes,...]

One agent with one CPU slot trains `--runs` head-tuning configs with the real trainer (a
resnet18 with a random backbone checkpoint, no download; 10 classes x 24 images at 64
px) in several ways, in one run of this script, on the same data and warm disk caches
(a grid of learning rates unless the way says bayes):

- reuse: the default, one warm worker process trains run after run;
- fresh: `--fresh-process`, a fresh process per run, started as a spare during the run before;
- cold: a fresh process per run started only when the run is due (no spare);
- bayes: reuse, with bayes search over the seeds' head space (epochs {1, 2} x dropout
  {0, 0.2, 0.3} x batch {32, 64} x lr {1e-3, 1e-4}, run_cap `--runs`; the seeds' sweep
  is `--runs 22`), so each claim is a GP proposal on the runs so far;
- bayes-check: bayes with every parameter checked against W&B's schema on every
  proposal, as W&B's engine does alone (sweeper.engine keeps the outcome per spec since
  issue 17's third pass).

The bench trainer (`agent_gap:head`, imported by the workers) wraps `trainer.train` and
stamps the wall clock when it is called and when it returns. Medians over the pairs of
consecutive runs:

- gap: previous run returned -> next run's trainer called (report the run, free it,
  check memory, claim, hand the run id over, config, wandb run start; plus the process
  start for cold);
- run: the trainer call itself (a warm process builds its model and reads the cached
  features faster than a fresh one).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from trainer import TrainConfig, TrainResult, train
from trainer.models import build_model

STAMP_DIR_ENV = "AGENT_GAP_STAMPS"
#: Per way: run_agent's options and the search method.
WAYS: dict[str, tuple[dict[str, Any], str]] = {
    "reuse": ({}, "grid"),
    "fresh": ({"fresh_process": True}, "grid"),
    "cold": ({"fresh_process": True, "spare": False}, "grid"),
    "bayes": ({}, "bayes"),
    "bayes-check": ({}, "bayes"),
}
#: The seeds' head space (sweeps/head_bayes.yaml) with 1-2 epochs, for the bayes ways.
BAYES_SPACE: dict[str, list[Any]] = {
    "epochs": [1, 2],
    "dropout": [0.0, 0.2, 0.3],
    "batch_size": [32, 64],
    "lr": [1e-3, 1e-4],
}


def head(
    config: Any,
    on_epoch: Callable[..., bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """`trainer.train`, with the wall clock stamped when it is called and when it returns."""
    called = time.time()
    result = train(config, on_epoch=on_epoch, stop_event=stop_event)
    run_id = Path(config.checkpoint_dir).name
    stamps = {"called": called, "ended": time.time()}
    (Path(os.environ[STAMP_DIR_ENV]) / f"{run_id}.json").write_text(json.dumps(stamps))
    return result


def _dataset(root: Path) -> dict[str, Any]:
    """Images and a backbone checkpoint under `root`; the fixed part of every run's config."""
    from feature_cache import write_dataset

    write_dataset(root / "data", classes=10, per_class=24, test_per_class=6, size=80)
    torch.manual_seed(0)
    scratch = TrainConfig(data_dir="-", model="resnet18", weights="none", mode="scratch")
    torch.save(build_model(scratch, 1000).state_dict(), root / "backbone.pt")
    return {
        "data_dir": str(root / "data"),
        "model": "resnet18",
        "weights": str(root / "backbone.pt"),
        "mode": "head",
        "image_size": 64,
        "epochs": 2,
        "batch_size": 32,
        "num_workers": 0,
        "device": "cpu",
        "cache_dir": str(root / "cache"),
    }


def sweep_config(fixed: dict[str, Any], method: str, runs: int) -> dict[str, Any]:
    """The bench's sweep: a grid of `runs` learning rates, or bayes over BAYES_SPACE
    capped at `runs`; `fixed` gives every other setting.

    >>> grid = sweep_config({"epochs": 2, "lr": 0.1}, "grid", 3)
    >>> grid["parameters"]["epochs"], len(grid["parameters"]["lr"]["values"])
    ({'value': 2}, 3)
    >>> bayes = sweep_config({"epochs": 2, "mode": "head"}, "bayes", 22)
    >>> bayes["run_cap"], bayes["parameters"]["epochs"], bayes["parameters"]["mode"]
    (22, {'values': [1, 2]}, {'value': 'head'})
    """
    parameters: dict[str, Any] = {name: {"value": value} for name, value in fixed.items()}
    raw: dict[str, Any] = {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": parameters,
    }
    if method == "grid":
        parameters["lr"] = {"values": [10 ** -(3 + i / runs) for i in range(runs)]}
    else:
        parameters.update({name: {"values": values} for name, values in BAYES_SPACE.items()})
        raw["run_cap"] = runs
    return raw


class Measured(BaseModel):
    """One way's figures: seconds, and what the search found."""

    gap: float = Field(description="Median seconds from a run's end to the next one's start.")
    run: float = Field(description="Median seconds of a run (the first left out).")
    gaps: float = Field(description="All the gaps, summed.")
    span: float = Field(description="Seconds from the first run's start to the last one's end.")
    best: float = Field(description="The best val_accuracy of the sweep's runs.")
    distinct: int = Field(description="Distinct configs among the runs.")


def _measure(home: Path, fixed: dict[str, Any], way: str, runs: int) -> Measured:
    """One agent over a fresh sweep of `runs` configs."""
    import yaml
    from rich.console import Console

    from agent import run_agent
    from sweeper.locate import open_backend
    from sweeper.paths import Home
    from sweeper.spec import parse_spec

    stamps = Path(tempfile.mkdtemp(dir=home))
    os.environ[STAMP_DIR_ENV] = str(stamps)
    options, method = WAYS[way]
    spec = parse_spec(yaml.safe_dump(sweep_config(fixed, method, runs)), "<bench>")
    backend = open_backend("local", Home(home))
    sweep_id = backend.create_sweep(spec).id
    backend.close()
    # A long heartbeat: the bench measures hand-over, not heartbeats.
    with _every_parameter_checked(way == "bayes-check"):
        summary = run_agent(
            sweep_id,
            home=Home(home),
            trainer="agent_gap:head",
            heartbeat_s=60.0,
            console=Console(file=io.StringIO()),
            **options,
        )
    if summary.finished != runs:
        sys.exit(f"bench run failed: {summary.line()}; see {Home(home).agent_log_path(sweep_id)}")
    times = sorted(
        (json.loads(p.read_text()) for p in stamps.glob("*.json")), key=lambda t: t["called"]
    )
    gaps = [b["called"] - a["ended"] for a, b in itertools.pairwise(times)]
    # The first run of a process-per-run mode and of reuse alike starts in a new process.
    durations = [t["ended"] - t["called"] for t in times[1:]]
    backend = open_backend("local", Home(home))
    try:
        done = backend.list_runs(sweep_id, with_history=False)
    finally:
        backend.close()
    return Measured(
        gap=statistics.median(gaps),
        run=statistics.median(durations),
        gaps=sum(gaps),
        span=times[-1]["ended"] - times[0]["called"],
        best=max(r.metric or 0.0 for r in done),
        distinct=len({json.dumps(r.config, sort_keys=True) for r in done}),
    )


@contextlib.contextmanager
def _every_parameter_checked(on: bool) -> Iterator[None]:
    """While `on`, the engine checks every parameter against W&B's schema on every call,
    as it does alone (sweeper.engine keeps the outcome per spec)."""
    if not on:
        yield
        return
    import sweeps.config
    import sweeps.params

    from sweeper import engine

    engine._sweeps()  # installs sweeper's memo, which this replaces for the way
    kept = sweeps.params.fill_parameter
    sweeps.params.fill_parameter = sweeps.config.fill_parameter
    try:
        yield
    finally:
        sweeps.params.fill_parameter = kept


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per way (gaps = runs - 1)")
    parser.add_argument("--wandb", default="offline", choices=["offline", "disabled"])
    parser.add_argument(
        "--ways", default=",".join(WAYS), help=f"comma-separated: {', '.join(WAYS)}"
    )
    args = parser.parse_args()
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    if unknown := set(ways) - set(WAYS):
        parser.error(f"--ways takes {', '.join(WAYS)}; got {', '.join(sorted(unknown))}")
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    os.environ["WANDB_MODE"] = args.wandb
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(
        f"agent gap: {args.runs} head runs per way (resnet18, 64 px, 300 images, 2 epochs), "
        f"1 CPU slot, wandb {args.wandb}, median seconds"
    )
    print(f"device: CPU, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="agent-gap-") as root:
        fixed = _dataset(Path(root))
        # Build the disk caches once, untimed, so that every way starts from warm files.
        train(TrainConfig(**fixed))
        results: dict[str, Measured] = {}
        print(
            f"{'way':<12} {'gap':>7} {'run':>7} {'all gaps':>9} {'span':>7} {'best val':>9} "
            f"{'distinct':>9}"
        )
        for way in ways:
            m = results[way] = _measure(Path(root), fixed, way, args.runs)
            print(
                f"{way:<12} {m.gap:>7.2f} {m.run:>7.2f} {m.gaps:>9.2f} {m.span:>7.1f} {m.best:>9.2f} "
                f"{m.distinct:>9}",
                flush=True,
            )
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for way, base in (("fresh", "reuse"), ("cold", "reuse"), ("bayes-check", "bayes")):
        if way in results and base in results:
            other, ref = results[way], results[base]
            print(
                f"{way}/{base}: gap {other.gap / ref.gap:.2f}x, "
                f"gap + run {(other.gap + other.run) / (ref.gap + ref.run):.2f}x"
            )


if __name__ == "__main__":
    main()
