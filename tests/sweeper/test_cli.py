"""The command line as a whole (sweeper/cli/__init__.py): every command is there with its
help, the entry points work, and the light commands import nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.agent_testkit import FAKE, make_sweep
from tests.sweeper.cli_testkit import invoke, run_cli

#: Modules a command that neither trains, reports nor talks to W&B must not import.
HEAVY = (
    "torch",
    "wandb",
    "scipy",
    "sklearn",
    "sweeps",
    "pandas",
    "jinja2",
    "reports",
    "agent",
    "jsonschema",  # a valid spec is checked without it (sweeper/spec/draft7.py)
)


@pytest.mark.parametrize(
    "command",
    [
        "validate",
        "create",
        "ls",
        "status",
        "pause",
        "resume",
        "cancel",
        "agent",
        "report",
        "launch",
        "sync",
    ],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, stdout, _ = invoke(command, "--help")
    assert code == 0
    assert "Example" in stdout


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        ([], "[env: SWEEPER_HOME; default: ./.sweeper]"),
        ([], "[env: SWEEPER_STORE; default: sqlite under the home]"),
        (["create"], "[env: WANDB_ENTITY; default: yours]"),
        (["sync"], "[env: WANDB_PROJECT]"),
    ],
)
def test_help_shows_the_environment_variables(command: list[str], hint: str) -> None:
    code, stdout, _ = invoke(*command, "--help")
    assert code == 0
    assert hint in " ".join(stdout.replace("│", " ").split())


def test_version_and_python_dash_m() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "sweeper", "--version"], capture_output=True, text=True, check=True
    )
    assert completed.stdout.startswith("sweeper ")


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


_TEARDOWN_MARKED = """
import atexit, sys
from sweeper.cli import main
atexit.register(lambda: print("interpreter teardown", file=sys.stderr))
sys.argv = ["sweeper", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    ("args", "code", "printed", "teardown"),
    [
        (["agent", "SWEEP", "--gpus", "none", "--trainer", FAKE], 0, "agent done: ", False),
        (["agent", "nosuchsweep", "--gpus", "none"], 2, "nosuchsweep", False),
        (["ls"], 0, "SWEEP", True),
    ],
)
def test_the_agent_leaves_its_process_without_interpreter_teardown(
    agent_env: Path, args: list[str], code: int, printed: str, teardown: bool
) -> None:
    """`sweeper agent` ends with its output flushed and its exit code, skipping the teardown
    of what its supervisor imported; the other commands exit as usual."""
    sweep_id = make_sweep({"lr": [1e-3, 1e-4]})
    completed = run_cli(*(sweep_id if a == "SWEEP" else a for a in args), code=_TEARDOWN_MARKED)
    assert completed.returncode == code, completed.stderr
    assert printed.replace("SWEEP", sweep_id) in completed.stdout + completed.stderr
    assert ("interpreter teardown" in completed.stderr) == teardown
