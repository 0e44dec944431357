"""Benchmark: the seeds' head sweep three ways in one run — the seed loop, Optuna, sweeper.

The sweep is `sweeps/head_bayes.yaml` (epochs {5,10} x dropout {0,0.2,0.3} x batch
{32,64} x lr {1e-3,1e-4}, bayes, run_cap 22, head mode) on the `make demo` target task
(digits 5-9, demo/dataset.py) with the demo's pretrained resnet18 (demo/pretrain.py) as
its backbone. The same data, backbone and seed go to every way:

1. the seed loop: wandb's `sweeps` engine proposes (`sweeps.next_run` on the history, as
   W&B's controller does), each run a fresh `python` process training from the images
   with no caches (`feature_cache: false`, which also turns the decoded-image cache off),
   as the seed project ran it (without its wandb logging);
2. Optuna: a TPE sampler (seeded) with RDB storage on SQLite, `trainer.train` called for
   each trial in one process of its own (bench/optuna_loop.py), with the caches sweeper
   uses (cold at the start);
3. sweeper: `sweeper create` + `sweeper agent --gpus none` as subprocesses, whole
   processes timed, with wandb logging offline as `make demo` does (`--wandb disabled`
   turns it off).

Per way: wall time, distinct configs, the best run's val and test accuracy, and the
overhead per run: (wall - the sum of the runs' own training seconds) / runs. Every way is
timed as whole processes, from the start of its first to the exit of its last, imports
included: Optuna's is one process (python, torch, the trainer, optuna, then the trials,
which start no process), the cost the other two ways pay per run. The table is Markdown,
ready for BENCHMARKS.md.

    .venv/bin/python bench/peers.py                 # the demo's data, 22 runs per way (~10-15 min, quiet 2-core CPU)
    .venv/bin/python bench/peers.py --quick         # 6 runs per way, 1 pretraining epoch
    .venv/bin/python bench/peers.py --threads 1 --ways optuna,sweeper --rounds 5   # issue 17's race, 5 rounds
    .venv/bin/python bench/peers.py --workdir .sweeper/demo       # reuse make demo's data and backbone
    .venv/bin/python bench/peers.py --target-per-class 150 --image-size 64   # more training per run
    .venv/bin/python bench/peers.py --target-per-class 100 --target-copies 4 --image-size 64

`--target-copies N` trains on N renders of each labelled target digit (copy 0 is the
demo's; the others are drawn with other random distortions, seeded the way the demo draws
its source task's copies): sklearn's digits give about 900 target images, and a data set
where training dominates needs more. The copies of one digit can land on both sides of
the train/val split, so val accuracy is optimistic there; the bench is for time.

Everything goes under a temp folder; `--workdir` keeps the data and the backbone for the
next run (the same layout as `make demo`'s .sweeper/demo/); the ways' homes are always
fresh. On a shared CPU pass `--threads 1`: torch's threads fight other jobs for cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.dataset import DemoDataSpec, build_demo_data, render_digit
from demo.pretrain import PretrainSpec, pretrain_backbone
from sweeper.engine import config_key
from trainer import TrainConfig, TrainResult

REPO = Path(__file__).resolve().parents[1]
#: Optuna's way: its loop in a process of its own, timed whole.
OPTUNA_LOOP = REPO / "bench" / "optuna_loop.py"
#: The seeds' sweep, whose swept parameters every way searches.
HEAD_SPEC = REPO / "sweeps" / "head_bayes.yaml"
#: The seed project's training script, reduced to its call: one fresh process per run.
SEED_SCRIPT = (
    "import sys\n"
    "from pathlib import Path\n"
    "from trainer import TrainConfig, train\n"
    "result = train(TrainConfig.model_validate_json(sys.argv[1]))\n"
    "Path(sys.argv[2]).write_text(result.model_dump_json(exclude={'history'}))\n"
)
SEED = 0


class Trial(BaseModel):
    """One run of a way: its swept values and what it reached."""

    config: dict[str, Any] = Field(description="The swept parameters only.")
    val_accuracy: float
    test_accuracy: float | None
    train_seconds: float = Field(description="The run's own wall seconds (TrainResult).")


class WayResult(BaseModel):
    """One way of running the sweep, timed as a whole."""

    way: str
    wall_seconds: float
    trials: list[Trial]

    @property
    def distinct(self) -> int:
        return len({config_key(t.config) for t in self.trials})

    @property
    def best(self) -> Trial:
        return max(self.trials, key=lambda t: t.val_accuracy)

    @property
    def overhead_per_run(self) -> float:
        training = sum(t.train_seconds for t in self.trials)
        return (self.wall_seconds - training) / len(self.trials)


class Setup(BaseModel):
    """The sweep every way runs: its fixed settings, its swept space and its run count."""

    fixed: dict[str, Any] = Field(description="Trainer settings every run shares.")
    space: dict[str, list[Any]] = Field(description="Swept parameter -> its values.")
    runs: int

    def spec(self) -> dict[str, Any]:
        """The seeds' sweep YAML with the fixed settings replaced and run_cap = runs."""
        spec = yaml.safe_load(HEAD_SPEC.read_text())
        spec["run_cap"] = self.runs
        spec["parameters"] = {
            **{name: {"value": value} for name, value in self.fixed.items()},
            **{name: {"values": values} for name, values in self.space.items()},
        }
        return spec


def _trial(config: dict[str, Any], result: TrainResult) -> Trial:
    return Trial(
        config=config,
        val_accuracy=result.best_val_accuracy,
        test_accuracy=result.test_accuracy,
        train_seconds=result.wall_seconds,
    )


def head_space() -> dict[str, list[Any]]:
    """The seeds' swept parameters and their values, read from sweeps/head_bayes.yaml."""
    spec = yaml.safe_load(HEAD_SPEC.read_text())
    return {n: p["values"] for n, p in spec["parameters"].items() if "values" in p}


def copied_target(target: Path, data: DemoDataSpec, copies: int) -> Path:
    """`target` with `copies` renders of each training digit (see the module docstring).

    Built once next to `target` as `target-x{copies}`; the val (test) folder is linked.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    out = target.with_name(f"{target.name}-x{copies}")
    if (out / "val").exists():
        return out
    staging = target.with_name(f".{out.name}.tmp")
    digits = load_digits().images
    for original in sorted((target / "train").glob("*/*_0.png")):
        folder = staging / "train" / original.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        index = int(original.name.split("_")[0])
        for copy in range(copies):
            rng = np.random.default_rng([data.seed, 1, index, copy])
            image = render_digit(digits[index], rng, data.image_size)
            Image.fromarray(image).save(folder / f"{index:04d}_{copy}.png")
    (staging / "val").symlink_to((target / "val").resolve())
    staging.rename(out)
    return out


def prepare(
    workdir: Path,
    data: DemoDataSpec,
    pretrain: PretrainSpec,
    runs: int,
    device: str = "auto",
    target_copies: int = 1,
) -> Setup:
    """Build the demo data and backbone under `workdir` (reused when up to date) and the setup."""
    built = build_demo_data(workdir / "data", data)
    backbone = pretrain_backbone(built.root, workdir / "backbone.pt", pretrain)
    target = (
        built.target if target_copies == 1 else copied_target(built.target, data, target_copies)
    )
    # The demo's Part B settings (sweeps/demo_part_b.yaml) in place of iNaturalist's.
    fixed = {
        "data_dir": str(target),
        "val_fraction": 0.5,
        "model": pretrain.model,
        "weights": str(backbone.path),
        "image_size": data.image_size,
        "augment": "none",
        "num_workers": 0,
        "mode": "head",
        "device": device,
    }
    return Setup(fixed=fixed, space=head_space(), runs=runs)


def seed_loop(setup: Setup, home: Path) -> WayResult:
    """wandb's engine proposes, a fresh process trains each run from the images, no caches."""
    import sweeps

    spec = setup.spec()
    history: list[sweeps.SweepRun] = []
    trials: list[Trial] = []
    started = time.perf_counter()
    for number in range(setup.runs):
        proposal = sweeps.next_run(spec, history)
        if proposal is None:
            break
        config = {name: value["value"] for name, value in proposal.config.items()}
        out = home / f"seed-{number}.json"
        train_config = TrainConfig(**config, feature_cache=False, cache_dir=str(home / "cache"))
        subprocess.run(
            [sys.executable, "-c", SEED_SCRIPT, train_config.model_dump_json(), str(out)],
            check=True,
            env=_env(),
        )
        result = TrainResult.model_validate_json(out.read_text())
        history.append(
            sweeps.SweepRun(
                name=f"seed-{number}",
                state=sweeps.RunState.finished,
                config=proposal.config,
                summary_metrics={"val_accuracy": result.best_val_accuracy},
            )
        )
        trials.append(_trial({n: config[n] for n in setup.space}, result))
    return WayResult(way="seed loop", wall_seconds=time.perf_counter() - started, trials=trials)


def optuna_way(setup: Setup, home: Path) -> WayResult:
    """Optuna's TPE on SQLite, `trainer.train` in one process (bench/optuna_loop.py) with
    sweeper's caches; the whole process timed, its imports included."""
    setup_file, out = home / "setup.json", home / "trials.json"
    setup_file.write_text(setup.model_dump_json())
    loop = [sys.executable, str(OPTUNA_LOOP), str(setup_file), str(home), str(out), str(SEED)]
    started = time.perf_counter()
    subprocess.run(loop, check=True, env=_env())
    wall = time.perf_counter() - started
    trials = [Trial.model_validate(trial) for trial in json.loads(out.read_text())]
    return WayResult(way="Optuna", wall_seconds=wall, trials=trials)


def sweeper_way(
    setup: Setup, home: Path, gpus: str = "none", per_gpu: int = 1, wandb: str = "offline"
) -> WayResult:
    """`sweeper create` + `sweeper agent` as subprocesses; the runs read back from the store."""
    from sweeper.locate import open_backend
    from sweeper.paths import Home

    spec_file = home / "head_bayes.yaml"
    spec_file.write_text(yaml.safe_dump(setup.spec(), sort_keys=False))
    env = _env(SWEEPER_HOME=str(home / "sweeper"), WANDB_MODE=wandb, WANDB_SILENT="true")
    log = home / "agent.out"
    sweeper = [sys.executable, "-m", "sweeper"]
    started = time.perf_counter()
    created = subprocess.run(
        [*sweeper, "create", str(spec_file), "--backend", "local", "--json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    sweep_id = json.loads(created.stdout)["id"]
    with log.open("w") as out:
        agent = [*sweeper, "agent", sweep_id, "--gpus", gpus, "--per-gpu", str(per_gpu)]
        code = subprocess.run(agent, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    if code != 0:
        sys.exit(f"sweeper agent exited with {code}; see {log}")
    backend = open_backend("local", Home(home / "sweeper"))
    try:
        runs = backend.list_runs(sweep_id, with_history=False)
    finally:
        backend.close()
    trials = [
        Trial(
            config={n: r.config[n] for n in setup.space},
            val_accuracy=r.summary["best_val_accuracy"],
            test_accuracy=r.summary.get("test_accuracy"),
            train_seconds=r.summary["wall_seconds"],
        )
        for r in runs
        if "best_val_accuracy" in r.summary
    ]
    return WayResult(way="sweeper", wall_seconds=wall, trials=trials)


def _env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on the path, so children run this code."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def table(results: Sequence[WayResult], reference: str = "sweeper") -> str:
    """The Markdown table of the ways, with each way's wall time over the reference's."""
    base = next((r.wall_seconds for r in results if r.way == reference), None)
    lines = [
        f"| way | runs | wall | distinct configs | best val / test | overhead per run | wall / {reference}'s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        test = "n/a" if r.best.test_accuracy is None else f"{r.best.test_accuracy:.2f}"
        ratio = "" if base is None else f"{r.wall_seconds / base:.2f}x"
        lines.append(
            f"| {r.way} | {len(r.trials)} | {r.wall_seconds:.1f} s | {r.distinct} | "
            f"{r.best.val_accuracy:.2f} / {test} | {r.overhead_per_run:.2f} s | {ratio} |"
        )
    return "\n".join(lines)


#: The ways, in the order they run.
WAYS = ("seed", "optuna", "sweeper")


def race(
    ways: Sequence[str], rounds: int, run: Callable[[str, int], WayResult]
) -> dict[str, list[WayResult]]:
    """Run every way `rounds` times, in turn within a round and in reverse order every other
    round (A B, B A, A B, ...), so that a machine whose load drifts during the bench weighs
    on every way alike; `run(way, round)` runs one. Returns each way's results, in order.
    """
    results: dict[str, list[WayResult]] = {way: [] for way in ways}
    for number in range(rounds):
        for way in ways if number % 2 == 0 else list(reversed(ways)):
            results[way].append(run(way, number))
    return results


def median_result(results: Sequence[WayResult]) -> WayResult:
    """The round whose wall is the median (the lower middle one for an even count)."""
    ordered = sorted(results, key=lambda r: r.wall_seconds)
    return ordered[(len(ordered) - 1) // 2]


def ratios(results: dict[str, list[WayResult]], way: str, reference: str) -> list[float]:
    """`way`'s wall over `reference`'s, round by round."""
    return [
        mine.wall_seconds / theirs.wall_seconds
        for mine, theirs in zip(results[way], results[reference], strict=True)
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data, pretrain = DemoDataSpec(), PretrainSpec()
    parser.add_argument("--quick", action="store_true", help="6 runs, 1 pretraining epoch.")
    parser.add_argument("--runs", type=int, default=None, help="Runs per way (default 22).")
    parser.add_argument(
        "--ways", default=",".join(WAYS), help="Comma-separated: seed, optuna, sweeper."
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Keeps data and backbone.")
    parser.add_argument("--json", type=Path, default=None, help="Also write every trial here.")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Run the ways this many times, alternating their order; the table shows each"
        " way's median round and every round's sweeper / Optuna ratio is printed.",
    )
    parser.add_argument("--wandb", default="offline", help="sweeper's WANDB_MODE.")
    parser.add_argument("--gpus", default="none", help="sweeper agent's --gpus.")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads of every way (1 on a shared CPU).",
    )
    demo = parser.add_argument_group("data and backbone (demo/dataset.py, demo/pretrain.py)")
    demo.add_argument("--image-size", type=int, default=data.image_size)
    demo.add_argument("--target-per-class", type=int, default=data.target_train_per_class)
    demo.add_argument("--max-per-class", type=int, default=None, help="Original digits per class.")
    demo.add_argument(
        "--target-copies", type=int, default=1, help="Renders per labelled target digit."
    )
    demo.add_argument("--source-copies", type=int, default=data.source_copies)
    demo.add_argument("--letters", default=data.source_letters)
    demo.add_argument("--letter-images", type=int, default=data.letter_images)
    demo.add_argument("--pretrain-epochs", type=int, default=None, help="Default 3 (--quick 1).")
    args = parser.parse_args(argv)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    if unknown := set(ways) - set(WAYS):
        parser.error(f"--ways takes {', '.join(WAYS)}; got {', '.join(sorted(unknown))}")
    runs = args.runs or (6 if args.quick else 22)
    epochs = args.pretrain_epochs or (1 if args.quick else pretrain.epochs)

    if args.threads:
        # OMP_NUM_THREADS for every way's processes, set_num_threads for this one's pretraining.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    random.seed(SEED)
    np.random.seed(SEED)  # wandb's engine draws from numpy's global generator
    with tempfile.TemporaryDirectory(prefix="sweeper-peers-") as temp:
        root = Path(temp)
        workdir = args.workdir or root / "demo"
        began = time.perf_counter()
        setup = prepare(
            workdir,
            DemoDataSpec(
                image_size=args.image_size,
                target_train_per_class=args.target_per_class,
                max_per_class=args.max_per_class,
                source_copies=args.source_copies,
                source_letters=args.letters,
                letter_images=args.letter_images,
            ),
            PretrainSpec(epochs=epochs, image_size=args.image_size),
            runs,
            args.device,
            args.target_copies,
        )
        images = sum(1 for _ in Path(setup.fixed["data_dir"]).rglob("*.png"))
        print(
            f"peers: {runs} runs per way, the demo target task ({images} images at "
            f"{args.image_size} px), {setup.fixed['model']} backbone; data and backbone "
            f"{time.perf_counter() - began:.0f} s; {os.cpu_count()} CPUs, "
            f"{torch.get_num_threads()} torch threads, load average "
            f"{os.getloadavg()[0]:.1f} at start",
            flush=True,
        )
        run_way: dict[str, Callable[[Setup, Path], WayResult]] = {
            "seed": seed_loop,
            "optuna": optuna_way,
            "sweeper": partial(sweeper_way, gpus=args.gpus, wandb=args.wandb),
        }

        def one(way: str, number: int) -> WayResult:
            home = root / f"{way}-{number}"
            home.mkdir()
            result = run_way[way](setup, home)
            print(f"  round {number + 1}: {result.way}: {result.wall_seconds:.1f} s", flush=True)
            return result

        rounds = race(ways, args.rounds, one)
    results = [median_result(rounds[way]) for way in ways]
    print()
    print(table(results))
    if args.rounds > 1 and {"optuna", "sweeper"} <= set(ways):
        each = ratios(rounds, "sweeper", "optuna")
        print(
            f"\nsweeper / Optuna, wall, round by round: {', '.join(f'{r:.3f}' for r in each)};"
            f" median {statistics.median(each):.3f}; load average at the end"
            f" {os.getloadavg()[0]:.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps([r.model_dump() for r in results], indent=2))


if __name__ == "__main__":
    main()
