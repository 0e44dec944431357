"""bench/peers.py's Optuna way, as the whole process a notebook user's loop would be.

    python bench/optuna_loop.py SETUP_JSON HOME OUT_JSON SEED

SETUP_JSON is bench/peers.py's `Setup` (the fixed trainer settings, the swept space, the
run count). A TPE sampler (seeded with SEED) with RDB storage on SQLite under HOME proposes each
trial, and `trainer.train` trains it in this process with sweeper's caches (under HOME,
cold at the start). OUT_JSON gets one object per trial with bench/peers.py's `Trial`
fields. peers.py times this process from its start to its exit, so torch, the trainer and
Optuna's imports count, as they do in sweeper's `create` + `agent`.

Only what the loop needs is imported here (not bench/peers.py, which imports the demo's
data builders): the clock would otherwise count imports Optuna's user does not make.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna

from trainer import TrainConfig, train


def optimize(setup: dict[str, Any], home: Path, seed: int) -> list[dict[str, Any]]:
    """Run `setup["runs"]` trials; return each trial's swept config, accuracies and seconds."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="head",
        storage=optuna.storages.RDBStorage(f"sqlite:///{home / 'optuna.db'}"),
        sampler=optuna.samplers.TPESampler(seed=seed),
        direction="maximize",
    )
    trials: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        config = {n: trial.suggest_categorical(n, v) for n, v in setup["space"].items()}
        result = train(TrainConfig(**setup["fixed"], **config, cache_dir=str(home / "cache")))
        trials.append(
            {
                "config": config,
                "val_accuracy": result.best_val_accuracy,
                "test_accuracy": result.test_accuracy,
                "train_seconds": result.wall_seconds,
            }
        )
        return result.best_val_accuracy

    study.optimize(objective, n_trials=setup["runs"])
    return trials


def main(argv: list[str] | None = None) -> int:
    setup_file, home, out, seed = sys.argv[1:] if argv is None else argv
    trials = optimize(json.loads(Path(setup_file).read_text()), Path(home), int(seed))
    Path(out).write_text(json.dumps(trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
