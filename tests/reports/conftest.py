"""Report fixtures: sweeps and runs with realistic numbers, built as plain backend models.

The numbers follow the reference workload: a scratch CNN near 35 % and ResNet50 fine-tuning
near 75-80 %, with the per-epoch history keys the agent logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pytest

from reports import ReportData
from sweeper.backends.local import LocalBackend
from sweeper.models import Run, RunState, Sweep, SweepState
from sweeper.paths import Home
from sweeper.spec import SweepSpec
from tests.imagefolder import write_image_folder
from tests.reports.programs import PROGRAM_SPEC, run_program_sweep
from tests.specs import parsed_spec

CLASSES = ["amphibia", "aves", "fungi"]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

HEAD_SPEC: dict[str, Any] = {
    "name": "head_bayes",
    "method": "bayes",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {
        "mode": {"values": ["head", "full"]},
        "dropout": {"values": [0.0, 0.2, 0.3]},
        "lr": {"values": [1e-3, 1e-4]},
        "batch_size": {"value": 64},
        "model": {"value": "resnet50"},
    },
    "early_terminate": {"type": "hyperband", "min_iter": 2},
}
SCRATCH_SPEC: dict[str, Any] = {
    "name": "scratch_cnn",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {
        "mode": {"value": "scratch"},
        "model": {"value": "cnn"},
        "weights": {"value": "none"},
        "filters": {"values": [16, 32]},
    },
}


def make_sweep(sweep_id: str, spec: dict[str, Any], name: str | None = None) -> Sweep:
    """A sweep as a backend returns it."""
    return Sweep(
        id=sweep_id,
        name=name or spec["name"],
        backend="local",
        state=SweepState.running,
        method=spec["method"],
        metric_name=spec["metric"]["name"],
        metric_goal=spec["metric"]["goal"],
        spec=spec,
        spec_path=f"sweeps/{spec['name']}.yaml",
        created_at=T0,
    )


def make_run(
    sweep_id: str,
    run_id: str,
    config: dict[str, Any],
    curve: list[float],
    *,
    test: float | None = None,
    state: RunState = RunState.finished,
    trainable: int = 20_490,
    total: int = 23_528_522,
    reason: str | None = None,
    stopped_early: bool = False,
) -> Run:
    """A run whose history is `curve` (val accuracy per epoch) and whose summary follows from it."""
    history = [
        {
            "epoch": i + 1,
            "epochs": len(curve),
            "val_accuracy": acc,
            "val_loss": 2.0 * (1 - acc),
            "train_accuracy": min(1.0, acc + 0.05),
            "train_loss": 1.8 * (1 - acc),
            "lr": config.get("lr", 1e-3),
            "seconds": 12.5,
            "images_per_second": 640.0,
            "best_val_accuracy": max(curve[: i + 1]),
        }
        for i, acc in enumerate(curve)
    ]
    summary: dict[str, Any] = {}
    if state in (RunState.finished, RunState.stopped) and curve:
        best = max(curve)
        per_class = {
            c: min(1.0, max(0.0, (test or best) + d))
            for c, d in zip(CLASSES, (0.1, -0.05, -0.05), strict=True)
        }
        summary = {
            "best_val_accuracy": best,
            "best_epoch": curve.index(best) + 1,
            "test_accuracy": test,
            "per_class_accuracy": per_class,
            "confusion_matrix": [[8, 1, 1], [1, 6, 3], [2, 1, 7]],
            "class_names": CLASSES,
            "epochs_run": len(curve),
            "stopped_early": stopped_early,
            "stop_reason": reason if stopped_early else None,
            "trainable_params": trainable,
            "total_params": total,
            "wall_seconds": 12.5 * len(curve),
            "images_per_second": 640.0,
            "checkpoint_path": None,
            "skipped_files": [],
        }
    metric = max(curve) if curve else None
    return Run(
        id=run_id,
        sweep_id=sweep_id,
        state=state,
        config=config,
        metric=metric,
        epochs=len(curve),
        history=history,
        summary=summary,
        reason=reason,
        created_at=T0 + timedelta(minutes=len(run_id)),
    )


def head_runs(sweep_id: str = "headsw01") -> list[Run]:
    """Five Part B runs: head and full fine-tuning, one stopped by hyperband, one failed."""
    base = {"batch_size": 64, "model": "resnet50", "weights": "imagenet"}
    return [
        make_run(
            sweep_id,
            "run-b1",
            {**base, "mode": "head", "dropout": 0.3, "lr": 1e-4},
            [0.70, 0.76, 0.79],
            test=0.78,
        ),
        make_run(
            sweep_id,
            "run-b2",
            {**base, "mode": "head", "dropout": 0.0, "lr": 1e-3},
            [0.68, 0.72, 0.74],
            test=0.73,
        ),
        make_run(
            sweep_id,
            "run-b3",
            {**base, "mode": "full", "dropout": 0.2, "lr": 1e-3},
            [0.40, 0.45],
            test=0.44,
            state=RunState.stopped,
            trainable=23_528_522,
            reason="hyperband: below the 2-epoch bracket",
        ),
        make_run(
            sweep_id,
            "run-b4",
            {**base, "mode": "full", "dropout": 0.3, "lr": 1e-4},
            [0.72, 0.77, 0.78],
            test=0.77,
            trainable=23_528_522,
        ),
        make_run(
            sweep_id,
            "run-b5",
            {**base, "mode": "full", "dropout": 0.0, "lr": 1e-3},
            [],
            state=RunState.failed,
            reason="CUDA out of memory: lower batch_size below 64",
        ),
    ]


def scratch_runs(sweep_id: str = "scratch01") -> list[Run]:
    """Two Part A runs of the scratch CNN."""
    base = {"mode": "scratch", "model": "cnn", "weights": "none"}
    return [
        make_run(
            sweep_id,
            "run-a1",
            {**base, "filters": 16},
            [0.25, 0.31, 0.33],
            test=0.34,
            trainable=411_000,
            total=411_000,
        ),
        make_run(
            sweep_id,
            "run-a2",
            {**base, "filters": 32},
            [0.27, 0.34, 0.36],
            test=0.37,
            trainable=1_200_000,
            total=1_200_000,
        ),
    ]


@pytest.fixture
def mixed_data() -> ReportData:
    """One sweep holding both scratch and fine-tuning runs (Part A found automatically)."""
    sweep = make_sweep(
        "mixed001",
        {
            **HEAD_SPEC,
            "name": "mixed",
            "parameters": {
                **HEAD_SPEC["parameters"],
                "mode": {"values": ["scratch", "head", "full"]},
            },
        },
    )
    runs = head_runs("mixed001") + scratch_runs("mixed001")
    return ReportData(sweeps=[sweep], runs=runs)


# -- a real store filled by real (tiny) trainings --------------------------------------

#: Trainer settings every stored run shares: a tiny CNN on 16 px images, on the CPU.
TINY: dict[str, Any] = {
    "model": {"value": "cnn"},
    "image_size": {"value": 16},
    "epochs": {"value": 2},
    "batch_size": {"value": 8},
    "filters": {"value": 4},
    "dense_units": {"value": 16},
    "lr": {"value": 0.01},
    "num_workers": {"value": 0},
    "device": {"value": "cpu"},
    "feature_cache": {"value": False},
    "patience": {"value": 0},
}
WORKER = "test-worker"


def sweep_spec(
    name: str, parameters: dict[str, Any], method: Literal["bayes", "random", "grid"] = "grid"
) -> SweepSpec:
    """The SweepSpec `load_spec` returns for the equivalent YAML (metric val_accuracy)."""
    raw = {
        "name": name,
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": parameters,
    }
    return parsed_spec(raw, f"sweeps/{name}.yaml")


def run_sweep(
    backend: LocalBackend,
    spec: SweepSpec,
    *,
    fail: dict[int, str] | None = None,
    stop_after_first_epoch: set[int] | None = None,
    limit: int | None = None,
) -> Sweep:
    """Create `spec` and train its runs the way an agent worker does: claim, `trainer.train`
    with each epoch sent to `log_epoch`, then `finish_run` (or `fail_run` for the run
    indices in `fail`, `stopped` for those in `stop_after_first_epoch`)."""
    from trainer import TrainConfig, train

    sweep = backend.create_sweep(spec)
    for index in range(limit if limit is not None else 1000):
        claim = backend.claim_run(sweep.id, WORKER)
        if claim.run is None:
            break
        run_id = claim.run.id
        if fail and index in fail:
            backend.fail_run(run_id, WORKER, fail[index])
            continue
        stopping = index in (stop_after_first_epoch or set())

        def on_epoch(metrics: Any, run_id: str = run_id, stopping: bool = stopping) -> bool:
            backend.log_epoch(run_id, WORKER, metrics.model_dump(mode="json"))
            return stopping

        result = train(TrainConfig(**claim.run.config), on_epoch=on_epoch)
        summary = result.model_dump(mode="json", exclude={"history"})
        if stopping:
            backend.finish_run(
                run_id,
                WORKER,
                summary,
                state=RunState.stopped,
                reason="stopped by hyperband at epoch 1",
            )
        else:
            backend.finish_run(run_id, WORKER, summary)
    return backend.get_sweep(sweep.id)


@dataclass(frozen=True)
class TrainedStore:
    """A store with a Part A sweep (scratch CNN) and a Part B sweep (CNN fine-tuned from a
    checkpoint of the scratch CNN), both trained for real."""

    home: Path
    part_a: str
    part_b: str

    def backend(self) -> LocalBackend:
        return LocalBackend(Home(self.home))


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """Built once per session (nine 2-epoch trainings of a tiny CNN, a few seconds).

    Its own 4-class folder (16 val images) gives accuracies finer than the shared fixture's;
    the Part B source checkpoint is trained for one epoch only, so the swept lr matters.
    """
    import torch

    from trainer import TrainConfig, train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("reports-store")
    folder = write_image_folder(
        root / "data",
        classes=("amphibia", "aves", "fungi", "insecta"),
        n_train=20,
        n_test=5,
        size=16,
    )
    data = {"data_dir": {"value": str(folder)}}
    fixed = {k: v["value"] for k, v in {**TINY, **data}.items()}
    source = train(
        TrainConfig(
            **{**fixed, "epochs": 1},
            mode="scratch",
            weights="none",
            checkpoint_dir=str(root / "source"),
        )
    )
    backend = LocalBackend(Home(root / "home"))
    part_a = run_sweep(
        backend,
        sweep_spec(
            "part-a",
            {
                **TINY,
                **data,
                "mode": {"value": "scratch"},
                "weights": {"value": "none"},
                "lr": {"value": 0.003},
                "filters": {"values": [4, 8]},
            },
        ),
    )
    part_b_parameters = {
        **TINY,
        **data,
        "mode": {"value": "full"},
        "weights": {"value": source.checkpoint_path},
        "lr": {"values": [0.01, 0.00001]},
        "optimizer": {"values": ["adam", "sgd", "adamw"]},
    }
    part_b = run_sweep(
        backend,
        sweep_spec("part-b", part_b_parameters),
        fail={5: "CUDA out of memory: lower batch_size <script>alert(1)</script> | try 4"},
        stop_after_first_epoch={4},
    )
    backend.close()
    return TrainedStore(home=root / "home", part_a=part_a.id, part_b=part_b.id)


# -- the helpers as fixtures (test modules cannot import conftest) ----------------------


@pytest.fixture
def new_sweep() -> Callable[..., Sweep]:
    """`make_sweep(sweep_id, spec, name=None)`: a sweep model built by hand."""
    return make_sweep


@pytest.fixture
def new_run() -> Callable[..., Run]:
    """`make_run(sweep_id, run_id, config, curve, ...)`: a run model built by hand."""
    return make_run


@pytest.fixture
def spec_of() -> Callable[..., SweepSpec]:
    """`sweep_spec(name, parameters, method="grid")`: a spec validated by the real parser."""
    return sweep_spec


@pytest.fixture
def train_sweep() -> Callable[..., Sweep]:
    """`run_sweep(backend, spec, fail=..., stop_after_first_epoch=..., limit=...)`."""
    return run_sweep


@pytest.fixture
def tiny_parameters(image_folder: Path) -> dict[str, Any]:
    """Fixed sweep parameters for a 2-epoch tiny CNN trained from scratch on the session's
    image folder."""
    return {
        **TINY,
        "data_dir": {"value": str(image_folder)},
        "mode": {"value": "scratch"},
        "weights": {"value": "none"},
    }


# -- program sweeps (tests.reports.programs) ----------------------------------------------


@pytest.fixture
def program_sweep(isolated_env: Path, tmp_path: Path) -> Iterator[tuple[LocalBackend, Sweep]]:
    """A stored, finished program sweep of `programs.PROGRAM_SPEC`: 4 runs finished, 2 failed."""
    backend = LocalBackend(Home(isolated_env))
    yield backend, run_program_sweep(backend, PROGRAM_SPEC, tmp_path)
    backend.close()
