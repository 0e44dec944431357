"""The `sweeper` command line: thin commands that parse, call one library function, render.

    app.py       the typer app: root options, consoles, errors as one paragraph, JSON output
    specs.py     validate, create: the commands that read a sweep spec
    show.py      ls, status: the commands that show sweeps and runs
    control.py   pause, resume, cancel: the commands that change a sweep's state
    agents.py    agent, launch: the commands that start agents
    results.py   report, sync: the commands that take results out (files, W&B)

This module registers the commands in the order `sweeper --help` lists them. A command
imports its heavy modules when it runs, so `sweeper --help`, `ls`, `status` and `validate`
start without torch, wandb, the sweep engine or the report builder.

The modules that declare typer signatures (app.py and the commands) do without
`from __future__ import annotations`: typer reads every command's annotations on each
start, and each one held as a string costs a compile and an eval there (building the
commands took 22 ms of CPU with string annotations, 7 ms without).
"""

from __future__ import annotations

import sys

from sweeper.cli import agents, control, results, show, specs
from sweeper.cli.app import app, leaving_quickly

__all__ = ["app", "main"]

app.command()(specs.validate)
app.command()(specs.create)
app.command("ls")(show.list_sweeps)
app.command()(show.status)
app.command()(control.pause)
app.command()(control.resume)
app.command()(control.cancel)
app.command()(agents.agent)
app.command()(results.report)
app.command()(agents.launch)
app.command()(results.sync)


def main() -> None:
    """Console-script entry point."""
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        if leaving_quickly() and "wandb" not in sys.modules and not isinstance(code, str):
            from sweeper.wandb.service import exit_now

            exit_now(code or 0)
        raise
    finally:
        if "wandb" in sys.modules:
            _leave_wandb(code)


def _leave_wandb(code: int | str | None) -> None:
    """Shut wandb-core down, bounded: wandb's own exit handler waits for it forever."""
    from sweeper.wandb.service import exit_now, teardown_within

    if not teardown_within():
        exit_now(code if isinstance(code, int) else 1)
