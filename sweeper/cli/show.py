"""The commands that show sweeps: `ls` lists them, `status` shows one with its runs."""

# No `from __future__ import annotations` here: see sweeper/cli/__init__.py.
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from sweeper.cli.app import SweepArgument, home_of, out, print_json, sweep_json
from sweeper.locate import current_id, list_all, locate

if TYPE_CHECKING:
    from sweeper.models import Run


def list_sweeps(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a list of sweep objects with run counts.")
    ] = False,
) -> None:
    """List every sweep, newest first: local ones and the W&B sweeps recorded here.

    Example: sweeper ls --json
    """
    sweeps = list_all(home_of(ctx))
    current = current_id(home_of(ctx))
    if as_json:
        print_json([{**sweep_json(s), "runs": s.run_counts} for s in sweeps])
        return
    if not sweeps:
        out.print("No sweeps yet: run `sweeper create sweeps/head_bayes.yaml`.")
        return
    from rich.table import Table

    table = Table(title="Sweeps")
    table.add_column("")
    table.add_column("id", no_wrap=True)
    for column in ("name", "backend", "method", "state", "runs", "created"):
        table.add_column(column)
    for s in sweeps:
        counts = (
            ", ".join(f"{n} {state}" for state, n in sorted(s.run_counts.items()) if n) or "none"
        )
        table.add_row(
            "*" if s.id == current else "",
            s.id,
            escape(s.name),
            s.backend,
            s.method,
            s.state.value,
            counts,
            s.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


def _run_json(run: "Run") -> dict[str, Any]:
    return {
        "id": run.id,
        "state": run.state.value,
        "config": run.config,
        "metric": run.metric,
        "epochs": run.epochs,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "reason": run.reason,
        "host": run.host,
        "test_accuracy": run.summary.get("test_accuracy"),
    }


def _duration(run: "Run") -> str:
    if run.started_at is None:
        return ""
    end = run.ended_at or datetime.now(run.started_at.tzinfo)
    return f"{(end - run.started_at).total_seconds():.0f}s"


def status(
    ctx: typer.Context,
    sweep: SweepArgument = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the sweep object plus its runs.")
    ] = False,
) -> None:
    """Show a sweep and its runs: state, config, best metric, epochs, timings.

    Example: sweeper status --json
    """
    backend, found = locate(home_of(ctx), sweep)
    runs = backend.list_runs(found.id, with_history=False)
    if as_json:
        print_json({**sweep_json(found), "runs": [_run_json(r) for r in runs]})
        return
    counts = (
        ", ".join(f"{n} {state}" for state, n in sorted(found.run_counts.items()) if n)
        or "no runs yet"
    )
    # Grid and random search need no metric.
    metric = [found.metric_name] if found.metric_name else []
    aim = f"on {found.metric_name} ({found.metric_goal})" if metric else "without a metric"
    out.print(
        f"Sweep [bold]{found.id}[/bold] ({escape(found.name)}): {found.method} {aim}, "
        f"{found.state.value}; {counts}",
        highlight=False,
    )
    if not runs:
        return
    from rich.table import Table

    swept = found.swept_parameters()
    # Optional columns only when some run has a value, so the table fits an 80-column terminal.
    has_test = any(r.summary.get("test_accuracy") is not None for r in runs)
    has_reason = any(r.reason for r in runs)
    has_host = any(r.host for r in runs)
    table = Table()
    table.add_column("run", no_wrap=True)
    table.add_column("state", no_wrap=True)
    if has_host:
        table.add_column("host", no_wrap=True)
    for column in (*swept, *metric):
        table.add_column(column, min_width=min(len(column), 16))  # the user's names, whole
    if has_test:
        table.add_column("test acc")
    # A program's history rows are the steps its script logged, not epochs.
    table.add_column("epochs" if found.kind == "trainer" else "steps")
    table.add_column("time")
    if has_reason:
        table.add_column("reason")
    styles = {
        "finished": "green",
        "failed": "red",
        "crashed": "red",
        "running": "cyan",
    }
    for r in runs:
        test = r.summary.get("test_accuracy")
        cells = [
            r.id,
            f"[{styles.get(r.state.value, 'white')}]{r.state.value}[/]",
            *([escape(r.host or "")] if has_host else []),
            *(escape(str(r.config.get(p, ""))) for p in swept),
            *(["" if r.metric is None else f"{r.metric:.4f}"] if metric else []),
        ]
        if has_test:
            cells.append("" if test is None else f"{test:.4f}")
        cells += [str(r.epochs), _duration(r)]
        if has_reason:
            # A failed program's reason is the tail of its output: its last line says why.
            cells.append(escape((r.reason or "").strip().splitlines()[-1] if r.reason else ""))
        table.add_row(*cells)
    out.print(table)
