"""Gathering from a real local store, baseline files, and the environment block."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reports.data import environment_info, gather, load_reference, sweep_kind
from sweeper.backends.local import LocalBackend
from sweeper.errors import NotFoundError, SweeperError
from sweeper.paths import Home
from sweeper.spec import parse_spec
from tests.reports.programs import PROGRAM_SPEC

PARAMETERS = {
    "data_dir": {"value": "data"},
    "lr": {"values": [0.1, 0.01]},
    "mode": {"value": "head"},
}


@pytest.fixture
def backend(isolated_env: Path) -> LocalBackend:
    return LocalBackend(Home(isolated_env))


def test_gather_reads_sweeps_by_id_or_name_once(
    backend: LocalBackend, spec_of: Callable[..., Any]
) -> None:
    first = backend.create_sweep(spec_of("first", PARAMETERS))
    second = backend.create_sweep(spec_of("second", PARAMETERS))
    claim = backend.claim_run(first.id, "w")
    assert claim.run is not None
    backend.fail_run(claim.run.id, "w", "boom")
    data = gather(backend, [first.id, "second", "first"])
    assert [s.id for s in data.sweeps] == [first.id, second.id]
    assert [r.id for r in data.runs] == [claim.run.id]
    assert data.runs[0].reason == "boom"
    assert data.baseline_sweep is None and data.reference is None


def test_gather_unknown_sweep_is_not_found(backend: LocalBackend) -> None:
    with pytest.raises(NotFoundError):
        gather(backend, ["nosuchsweep"])


def test_gather_baseline_sweep(backend: LocalBackend, spec_of: Callable[..., Any]) -> None:
    main = backend.create_sweep(spec_of("main", PARAMETERS))
    older = backend.create_sweep(spec_of("older", PARAMETERS))
    claim = backend.claim_run(older.id, "w")
    assert claim.run is not None
    data = gather(backend, [main.id], baseline="older")
    assert data.baseline_sweep is not None and data.baseline_sweep.id == older.id
    assert [s.id for s in data.sweeps] == [main.id]
    assert [r.id for r in data.runs] == [claim.run.id]  # the baseline's runs are read too


def test_gather_baseline_that_is_one_of_the_sweeps_reads_it_once(
    backend: LocalBackend, spec_of: Callable[..., Any]
) -> None:
    main = backend.create_sweep(spec_of("main", PARAMETERS))
    backend.claim_run(main.id, "w")
    data = gather(backend, [main.id], baseline=main.id)
    assert len(data.runs) == 1


def test_gather_baseline_file(
    backend: LocalBackend, spec_of: Callable[..., Any], tmp_path: Path
) -> None:
    main = backend.create_sweep(spec_of("main", PARAMETERS))
    path = tmp_path / "published"  # no .json suffix: an existing file is still read as a file
    path.write_text(json.dumps({"name": "Paper", "test_accuracy": 0.78, "trainable_params": 20490}))
    data = gather(backend, [main.id], baseline=str(path))
    assert data.reference is not None
    assert (data.reference.name, data.reference.test_accuracy, data.reference.val_accuracy) == (
        "Paper",
        0.78,
        None,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[0.78]", "must hold a JSON object"),
        (
            '{"name": "x", "test_acuracy": 0.78}',
            "unknown key 'test_acuracy' (did you mean \"test_accuracy\"?)",
        ),
        ('{"test_accuracy": 78}', "test_accuracy: Input should be less than or equal to 1"),
        ('{"val_accuracy": "high"}', "val_accuracy"),
    ],
)
def test_bad_baseline_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(SweeperError) as caught:
        load_reference(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_environment_info_has_versions_and_caller_extras() -> None:
    info = environment_info({"device": "2 x H100", "git": "abc123"})
    assert {"python", "torch", "torchvision", "sweeper", "cpu_count"} <= set(info)
    assert info["device"] == "2 x H100"  # the caller knows better than the report process
    assert info["git"] == "abc123"
    assert info["cpu_count"] >= 1


def _program(backend: LocalBackend, folder: Path, name: str, metric: str) -> str:
    (folder / "train.py").write_text("import wandb\n")
    text = PROGRAM_SPEC.replace("name: user-sweep", f"name: {name}").replace(
        "{name: val_loss, goal: minimize}", metric
    )
    return backend.create_sweep(parse_spec(text, "sweep.yaml", cwd=folder)).id


def test_gather_program_sweeps_with_one_metric_together(
    backend: LocalBackend, tmp_path: Path
) -> None:
    first = _program(backend, tmp_path, "first", "{name: val_loss, goal: minimize}")
    second = _program(backend, tmp_path, "second", "{name: val_loss}")  # W&B's default goal
    data = gather(backend, [first, second])
    assert data.kind == "program" and sweep_kind(data.sweeps[1]) == "program"


@pytest.mark.parametrize(
    ("kinds", "baseline", "message"),
    [
        (
            ("prog", "trainer"),
            None,
            "prog ({prog}) runs a program of your own and trainer ({trainer}) the built-in "
            "trainer: one report ranks its runs on one metric and compares Part A with Part B "
            "for the trainer only, so report each kind on its own: `sweeper report {prog}` and "
            "`sweeper report {trainer}`.",
        ),
        (
            ("prog", "other"),
            None,
            "The program sweeps optimise different metrics (prog ({prog}) val_loss (minimize); "
            "other ({other}) score (maximize))",
        ),
        (("prog",), "trainer", "--baseline chooses Part A of the built-in trainer's"),
        (("prog",), "file", "prog ({prog}) runs a program of your own, whose report has no Part A"),
        (
            ("trainer",),
            "prog",
            "--baseline prog ({prog}) is a program sweep (a script of your own)",
        ),
    ],
)
def test_gather_refuses_sweeps_one_report_cannot_rank_together(
    backend: LocalBackend,
    spec_of: Callable[..., Any],
    tmp_path: Path,
    kinds: tuple[str, ...],
    baseline: str | None,
    message: str,
) -> None:
    ids = {
        "prog": _program(backend, tmp_path, "prog", "{name: val_loss, goal: minimize}"),
        "other": _program(backend, tmp_path, "other", "{name: score, goal: maximize}"),
        "trainer": backend.create_sweep(spec_of("trainer", PARAMETERS)).id,
    }
    chosen = ids.get(baseline or "")
    if baseline == "file":
        chosen = str(tmp_path / "published.json")
        Path(chosen).write_text(json.dumps({"test_accuracy": 0.78}))
    with pytest.raises(SweeperError) as caught:
        gather(backend, [ids[kind] for kind in kinds], baseline=chosen)
    assert message.format(**ids) in str(caught.value)
