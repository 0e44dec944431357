"""The W&B sweeps a home records: kept with their validated spec, read back without
validation (a program sweep's script need not be here), references resolved by id, name or
prefix. Real SQLite store; no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeper.errors import NotFoundError
from sweeper.paths import Home
from sweeper.spec import parse_spec
from sweeper.store import SQLiteStore
from sweeper.wandb import references
from sweeper.wandb.client import SweepRef
from tests.specs import WANDB_GRID


@pytest.fixture
def store() -> SQLiteStore:
    return SQLiteStore(Home().store_path)


def keep(store: SQLiteStore, sweep_id: str, text: str = WANDB_GRID, now: float = 1.0) -> None:
    ref = SweepRef(entity="team", project="p", id=sweep_id)
    references.record(store, ref, f"https://w/{sweep_id}", parse_spec(text), now)


def test_a_program_sweeps_spec_reads_back_without_its_script(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "train.py").write_text("import wandb\n")
    spec = "program: train.py\n" + WANDB_GRID.replace(
        "data_dir: {value: data/tiny}", "depth: {value: 2}"
    )
    keep(store, "abc123", spec)
    monkeypatch.chdir(tmp_path.parent)  # train.py is not in this working directory
    kept = references.spec_of(references.find(store, "abc123"))
    assert (kept.kind, kept.raw["program"], kept.metric_name) == (
        "program",
        "train.py",
        "val_accuracy",
    )


def test_a_reference_recorded_with_w_and_bs_raw_config_is_parsed(store: SQLiteStore) -> None:
    config = {**json.loads(json.dumps(parse_spec(WANDB_GRID).raw)), "controller": {"type": "cloud"}}
    with store.transaction(immediate=True) as conn:
        conn.execute(
            "INSERT INTO wandb_sweeps (id, entity, project, url, name, spec, created_at)"
            " VALUES ('old001', 'team', 'p', NULL, 'grid', ?, 0)",
            (json.dumps(config),),
        )
    spec = references.spec_of(references.find(store, "old001"))
    assert (spec.kind, spec.method, "controller" in spec.raw) == ("trainer", "grid", False)


def test_recording_again_replaces_unless_told_to_keep(store: SQLiteStore) -> None:
    keep(store, "abc123")
    ref = SweepRef(entity="other", project="q", id="abc123")
    references.record(store, ref, "u", parse_spec(WANDB_GRID), 2.0, replace=False)
    assert references.find(store, "abc123")["entity"] == "team"
    references.record(store, ref, "u", parse_spec(WANDB_GRID), 2.0)
    assert references.find(store, "abc123")["entity"] == "other"


def test_references_resolve_by_id_name_or_prefix_and_say_how_to_name_one(
    store: SQLiteStore,
) -> None:
    keep(store, "abc123", now=1.0)
    keep(store, "abd456", WANDB_GRID.replace("name: grid", "name: other"), now=2.0)
    assert [r["id"] for r in references.newest_first(store)] == ["abd456", "abc123"]
    assert references.resolve(store, "other")["id"] == "abd456"
    assert references.resolve(store, "abc")["id"] == "abc123"
    keep(store, "abe789", now=3.0)  # a second sweep named grid
    with pytest.raises(NotFoundError, match="matches 2 W&B sweeps"):
        references.resolve(store, "grid")
    with pytest.raises(NotFoundError, match="entity/project/sweep_id"):
        references.resolve(store, "nope")
    with pytest.raises(NotFoundError, match="no W&B sweep with id"):
        references.find(store, "nope")
