"""User stories through the CLI: validate, create, ls, status, pause/resume/cancel; what a
command imports, and errors in a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeper.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
#: Modules a command that neither trains, reports nor talks to W&B must not import.
HEAVY = ("torch", "wandb", "scipy", "sklearn", "sweeps", "pandas", "jinja2", "reports", "agent")

GRID = """\
name: tiny-grid
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  data_dir: {value: data/tiny}
  model: {value: resnet18}
  mode: {value: head}
  lr: {values: [0.001, 0.0001]}
  dropout: {values: [0.0, 0.3]}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    return path


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(GRID.replace("dropout:", "dropuot:"))
    return path


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


def test_ls_json_counts_runs_by_state(spec_file: Path) -> None:
    invoke("create", str(spec_file))
    listed = json.loads(invoke("ls", "--json")[1])
    assert len(listed) == 1
    assert set(listed[0]) == {"id", "name", "backend", "state", "runs"}
    assert isinstance(listed[0]["runs"], dict)


def test_ls_table_marks_the_current_sweep(spec_file: Path) -> None:
    invoke("create", str(spec_file), "--name", "a")
    code, stdout, _ = invoke("ls")
    assert code == 0
    assert "tiny-grid" not in stdout and " a " in stdout and "*" in stdout


def test_status_lists_runs_with_their_keys(spec_file: Path) -> None:
    from sweeper.locate import open_backend
    from sweeper.paths import Home

    sweep_id = json.loads(invoke("create", str(spec_file), "--json")[1])["id"]
    backend = open_backend("local", Home())
    claim = backend.claim_run(sweep_id, "w1")
    assert claim.run is not None
    backend.log_epoch(claim.run.id, "w1", {"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0})
    status = json.loads(invoke("status", sweep_id, "--json")[1])
    assert status["id"] == sweep_id
    (run,) = status["runs"]
    assert {"id", "state", "config", "metric", "epochs", "started_at", "ended_at"} <= set(run)
    assert run["state"] == "running" and run["metric"] == 0.5 and run["epochs"] == 1
    code, stdout, _ = invoke("status")
    assert code == 0 and claim.run.id in stdout


@pytest.mark.parametrize(
    ("command", "state"),
    [("pause", "paused"), ("cancel", "canceled")],
)
def test_pause_and_cancel_change_the_state(spec_file: Path, command: str, state: str) -> None:
    invoke("create", str(spec_file))
    code, stdout, _ = invoke(command)
    assert code == 0 and state in stdout
    assert json.loads(invoke("status", "--json")[1])["state"] == state


def test_resume_after_pause_and_not_after_cancel(spec_file: Path) -> None:
    invoke("create", str(spec_file))
    invoke("pause")
    assert invoke("resume")[0] == 0
    invoke("cancel")
    code, _, stderr = invoke("resume")
    assert code == 2 and "Traceback" not in stderr


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "nosuchsweep"],
        ["pause", "nosuchsweep"],
        ["create", "missing.yaml"],
        ["create", "--backend", "mlflow", "x.yaml"],
        ["report", "nosuchsweep"],
        ["agent", "nosuchsweep", "--gpus", "none"],
    ],
)
def test_user_errors_are_one_paragraph_and_exit_2(args: list[str], spec_file: Path) -> None:
    code, stdout, stderr = invoke(*args)
    assert code == 2, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "error:" in stderr


@pytest.mark.parametrize(
    "command",
    ["validate", "create", "ls", "status", "pause", "resume", "cancel", "agent", "report"],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, stdout, _ = invoke(command, "--help")
    assert code == 0
    assert "Example" in stdout


def test_version_and_python_dash_m() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "sweeper", "--version"], capture_output=True, text=True, check=True
    )
    assert completed.stdout.startswith("sweeper ")


def test_home_option_moves_the_store(spec_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    code, _, _ = invoke("--home", str(home), "create", str(spec_file))
    assert code == 0
    assert (home / "store.db").exists()


def run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m sweeper ARGS` (or `python -c CODE ARGS`) as a user runs it: a fresh process
    whose output is a pipe, this worktree first on the path, no COLUMNS."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    argv = ["-c", code, *args] if code else ["-m", "sweeper", *args]
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env)


_IMPORTED = """
import json, sys
from sweeper.cli import main
sys.argv = ["sweeper", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["ls"], ["status"], ["validate", "SPEC"]])
def test_light_commands_import_no_heavy_module(args: list[str], spec_file: Path) -> None:
    invoke("create", str(spec_file))
    argv = [str(spec_file) if a == "SPEC" else a for a in args]
    completed = run_cli(*argv, code=_IMPORTED.format(heavy=HEAVY))
    assert json.loads(completed.stderr.splitlines()[-1]) == [], completed.stderr


@pytest.mark.parametrize("command", ["validate", "create"])
def test_errors_are_not_hard_wrapped_in_a_pipe(command: str, bad_spec: Path) -> None:
    completed = run_cli(command, str(bad_spec))
    assert completed.returncode == 2
    problem = (
        "parameters.dropuot: 'dropuot' is not a trainer setting (did you mean \"dropout\"?); "
        "parameter names are TrainConfig fields (trainer/config.py)"
    )
    assert len(problem) > 80
    assert problem in completed.stderr.splitlines()[-1], completed.stderr
