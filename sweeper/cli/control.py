"""The commands that change a sweep's state: `pause`, `resume`, `cancel`."""

# No `from __future__ import annotations` here: see sweeper/cli/__init__.py.
from typing import Annotated

import typer

from sweeper.cli.app import home_of, out
from sweeper.locate import locate

#: The sweep argument of pause, resume and cancel.
_Sweep = Annotated[str | None, typer.Argument(help="Sweep id or name (default: current).")]


def _set_state(ctx: typer.Context, sweep: str | None, state: str, verb: str) -> None:
    from sweeper.models import SweepState

    backend, current = locate(home_of(ctx), sweep)
    found = backend.set_sweep_state(current.id, SweepState(state))
    out.print(f"Sweep [bold]{found.id}[/bold] {verb}: now {found.state.value}.", highlight=False)


def pause(
    ctx: typer.Context,
    sweep: _Sweep = None,
) -> None:
    """Pause a sweep: agents re-queue their runs within one heartbeat and exit.

    Example: sweeper pause
    """
    _set_state(ctx, sweep, "paused", "paused")


def resume(
    ctx: typer.Context,
    sweep: _Sweep = None,
) -> None:
    """Resume a paused sweep; start agents again to continue it.

    Example: sweeper resume && sweeper agent --gpus all
    """
    _set_state(ctx, sweep, "running", "resumed")


def cancel(
    ctx: typer.Context,
    sweep: _Sweep = None,
) -> None:
    """Cancel a sweep for good: running runs stop, pending runs are dropped.

    Example: sweeper cancel abc12345
    """
    _set_state(ctx, sweep, "canceled", "canceled")
