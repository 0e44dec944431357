"""`sweeper pause`, `resume` and `cancel` (sweeper/cli/control.py), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sweeper.cli_testkit import invoke


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
