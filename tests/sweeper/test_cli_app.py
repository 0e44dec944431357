"""The app every command hangs on (sweeper/cli/app.py): root options, user errors as one
paragraph with exit 2, no hard wrap in a pipe, names printed as typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweeper.cli_testkit import invoke, run_cli


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


def test_home_option_moves_the_store(spec_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    code, _, _ = invoke("--home", str(home), "create", str(spec_file))
    assert code == 0
    assert (home / "store.db").exists()


def test_names_are_printed_as_typed(spec_file: Path) -> None:
    code, stdout, _ = invoke("create", str(spec_file), "--name", ":fire:[b]")
    assert code == 0 and "(:fire:[b])" in stdout
    assert ":fire:[b]" in invoke("ls")[1]
