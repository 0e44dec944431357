"""`sweeper validate` and `sweeper create` (sweeper/cli/specs.py), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sweeper.cli_testkit import GRID, invoke


def test_validate_accepts_the_shipped_specs() -> None:
    shipped = sorted(str(p) for p in (Path(__file__).parents[2] / "sweeps").glob("*.yaml"))
    code, stdout, _ = invoke("validate", *shipped)
    assert code == 0, stdout
    assert stdout.count("✓") == len(shipped)


def test_validate_rejects_with_exit_2_and_did_you_mean(bad_spec: Path) -> None:
    code, _, stderr = invoke("validate", str(bad_spec))
    assert code == 2
    assert "dropuot" in stderr and "dropout" in stderr
    assert "Traceback" not in stderr


def test_validate_json_lists_problems(spec_file: Path, bad_spec: Path) -> None:
    code, stdout, _ = invoke("validate", "--json", str(spec_file), str(bad_spec))
    assert code == 2
    results = json.loads(stdout)
    assert [r["valid"] for r in results] == [True, False]
    assert any("dropuot" in p for p in results[1]["problems"])


def test_validate_says_which_kind_it_judged(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").touch()
    program = tmp_path / "program.yaml"
    program.write_text(
        GRID.replace("parameters:", "program: train.py\nparameters:\n  epochs_x: {value: 1}")
    )
    code, stdout, _ = invoke("validate", "--json", str(spec_file), str(program))
    assert code == 0
    assert [r["kind"] for r in json.loads(stdout)] == ["trainer", "program"]
    code, stdout, _ = invoke("validate", str(program))
    assert "program grid sweep on val_accuracy" in stdout


def test_create_prints_id_and_next_command(spec_file: Path) -> None:
    code, stdout, _ = invoke("create", str(spec_file))
    assert code == 0, stdout
    assert "local backend" in stdout
    assert "sweeper agent" in stdout


def test_create_json_and_it_becomes_current(spec_file: Path) -> None:
    code, stdout, _ = invoke("create", str(spec_file), "--json", "--name", "first")
    assert code == 0
    first = json.loads(stdout)
    assert set(first) == {"id", "name", "backend", "state"}
    assert first == {"id": first["id"], "name": "first", "backend": "local", "state": "running"}
    second = json.loads(invoke("create", str(spec_file), "--json")[1])
    assert second["name"] == "tiny-grid"
    status = json.loads(invoke("status", "--json")[1])
    assert status["id"] == second["id"]


def test_invalid_spec_leaves_the_store_unchanged(spec_file: Path, bad_spec: Path) -> None:
    invoke("create", str(spec_file))
    before = invoke("ls", "--json")[1]
    code, _, stderr = invoke("create", str(bad_spec))
    assert code == 2 and "Traceback" not in stderr
    assert invoke("ls", "--json")[1] == before
