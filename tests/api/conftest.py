"""A user's folder where a script calls `sweeper.sweep` / `sweeper.agent`, run as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.program.conftest import Project


class ApiProject(Project):
    """A folder holding the user's script; it runs there with its own sweeper home."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.env.pop("WANDB_MODE", None)  # the agent makes the runs offline itself

    @classmethod
    def with_script(cls, path: Path) -> ApiProject:
        """A project in `path` holding the user's script, function_sweep.py."""
        shutil.copy(Path(__file__).parent / "function_sweep.py", path / "function_sweep.py")
        return cls(path)

    def sweep(self, config: dict[str, Any], count: int | None = None) -> dict[str, Any]:
        """Run the script on `config`; its last output line: the sweep id and agent summary."""
        args = [json.dumps(config)] + ([] if count is None else [str(count)])
        completed = self.python("function_sweep.py", *args)
        return dict(json.loads(completed.stdout.strip().splitlines()[-1]))

    def status(self, sweep_id: str | None = None) -> dict[str, Any]:
        """`sweeper status --json` (of the current sweep by default), as a user's tooling reads it."""
        completed = self.sweeper("status", *filter(None, [sweep_id]), "--json")
        return dict(json.loads(completed.stdout))

    def received(self) -> list[dict[str, Any]]:
        """The configs `train()` saw, one per call."""
        return [json.loads(line) for line in self.out.read_text().splitlines()]
