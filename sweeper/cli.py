"""The `sweeper` command line: thin commands that parse, call one library function, render.

Library code raises `SweeperError`; only `main` catches it, prints it as one paragraph on
stderr and exits with its code (2), never with a traceback. Off a terminal (a pipe, a CI
log) nothing is hard-wrapped, so a message stays one greppable line.

Every command module is imported on use, so `sweeper --help`, `ls` and `status` start
without torch, wandb, the sweep engine or the report builder.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from sweeper import __version__
from sweeper.errors import SpecError, SweeperError
from sweeper.locate import (
    BACKEND_NAMES,
    current_id,
    list_all,
    locate,
    locate_all,
    open_backend,
    pick_backend,
)
from sweeper.paths import STORE_ENV, Home

if TYPE_CHECKING:
    from sweeper.models import Run, Sweep


def _console(stderr: bool = False) -> Console:
    """A rich console that hard-wraps only on a terminal: in a pipe, rich would break lines
    at 80 columns ("did you \\nmean"), which defeats grep and CI logs."""
    console = Console(stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console


out = _console()
err = _console(stderr=True)


class _Group(TyperGroup):
    """Turns a SweeperError from any command into one paragraph on stderr and exit 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SweeperError as e:
            err.print(
                f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=e.exit_code) from None


app = typer.Typer(
    name="sweeper",
    cls=_Group,
    help=(
        "Hyperparameter sweeps for fine-tuning image classifiers.\n\n"
        "  sweeper create sweeps/head_bayes.yaml\n\n"
        "  sweeper agent --gpus 0,1\n\n"
        "  sweeper report"
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"sweeper {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Where sweeper keeps its store, logs and checkpoints [env: SWEEPER_HOME; default: ./.sweeper].",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Store URL for local sweeps: sqlite:///path or postgresql://user@host:port/db "
            "[env: SWEEPER_STORE; default: sqlite under the home].",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = Home(home, store=store)


def _home(ctx: typer.Context) -> Home:
    """The home the root options chose (`--home`), kept on the root context."""
    home = ctx.find_root().obj
    return home if isinstance(home, Home) else Home()


def _print_json(data: Any) -> None:
    # Plain print: rich would wrap long lines and break the JSON for scripts.
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _sweep_json(sweep: Sweep) -> dict[str, Any]:
    return {
        "id": sweep.id,
        "name": sweep.name,
        "backend": sweep.backend,
        "state": sweep.state.value,
    }


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Sweep YAML files.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one result object per file.")
    ] = False,
) -> None:
    """Check sweep specs without storing anything; exit 2 if any is invalid.

    Example: sweeper validate sweeps/*.yaml
    """
    from sweeper.spec import load_spec

    results: list[dict[str, Any]] = []
    for file in files:
        try:
            spec = load_spec(file)
        except SpecError as e:
            results.append(
                {"file": str(file), "valid": False, "problems": e.problems, "kind": None}
            )
            if not as_json:
                err.print(f"[red]✗[/red] {escape(str(e))}", highlight=False)
        else:
            results.append({"file": str(file), "valid": True, "problems": [], "kind": spec.kind})
            if not as_json:
                out.print(
                    f"[green]✓[/green] {escape(str(file))}: {spec.kind} {spec.method} sweep "
                    f"on {spec.metric_name}",
                    highlight=False,
                )
    if as_json:
        _print_json(results)
    if not all(r["valid"] for r in results):
        raise typer.Exit(code=2)


@app.command()
def create(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Sweep YAML file.", show_default=False)],
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Name of the sweep (default: the spec's name or the file name)."
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help=f"{' or '.join(BACKEND_NAMES)} (default: wandb when W&B credentials are configured, else local).",
        ),
    ] = None,
    entity: Annotated[
        str | None,
        typer.Option(
            "--entity",
            help="W&B entity (user or team) for the sweep [env: WANDB_ENTITY; default: yours].",
            rich_help_panel="W&B",
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            help="W&B project for the sweep [env: WANDB_PROJECT; default: the spec's or 'sweeper'].",
            rich_help_panel="W&B",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"id", "name", "backend", "state"}.')
    ] = False,
) -> None:
    """Validate a sweep spec, store it and make it the current sweep.

    Example: sweeper create sweeps/head_bayes.yaml --name head-r50
    """
    from sweeper.spec import load_spec

    spec = load_spec(file)
    chosen, why = pick_backend(backend)
    if chosen != "wandb" and (entity or project):
        raise SweeperError(
            "--entity and --project are for W&B sweeps; add --backend wandb (and log in with "
            "`wandb login` or WANDB_API_KEY)."
        )
    opened = open_backend(chosen, _home(ctx), entity=entity, project=project)
    sweep = opened.create_sweep(spec, name=name or spec.name or file.stem)
    if as_json:
        _print_json(_sweep_json(sweep))
        return
    out.print(
        f"Created sweep [bold]{sweep.id}[/bold] ({escape(sweep.name)}) on the {chosen} backend ({why}).",
        highlight=False,
    )
    if sweep.url:
        out.print(f"W&B: {sweep.url}")
    out.print(f"Next: [bold]sweeper agent {sweep.id} --gpus all[/bold]  (or --gpus none on a CPU)")


@app.command("ls")
def list_sweeps(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a list of sweep objects with run counts.")
    ] = False,
) -> None:
    """List every sweep, newest first: local ones and the W&B sweeps recorded here.

    Example: sweeper ls --json
    """
    sweeps = list_all(_home(ctx))
    current = current_id(_home(ctx))
    if as_json:
        _print_json([{**_sweep_json(s), "runs": s.run_counts} for s in sweeps])
        return
    if not sweeps:
        out.print("No sweeps yet: run `sweeper create sweeps/head_bayes.yaml`.")
        return
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


def _run_json(run: Run) -> dict[str, Any]:
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


def _duration(run: Run) -> str:
    if run.started_at is None:
        return ""
    end = run.ended_at or datetime.now(run.started_at.tzinfo)
    return f"{(end - run.started_at).total_seconds():.0f}s"


@app.command()
def status(
    ctx: typer.Context,
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep id or name (default: the current sweep).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the sweep object plus its runs.")
    ] = False,
) -> None:
    """Show a sweep and its runs: state, config, best metric, epochs, timings.

    Example: sweeper status --json
    """
    backend, found = locate(_home(ctx), sweep)
    runs = backend.list_runs(found.id, with_history=False)
    if as_json:
        _print_json({**_sweep_json(found), "runs": [_run_json(r) for r in runs]})
        return
    counts = (
        ", ".join(f"{n} {state}" for state, n in sorted(found.run_counts.items()) if n)
        or "no runs yet"
    )
    out.print(
        f"Sweep [bold]{found.id}[/bold] ({escape(found.name)}): {found.method} on "
        f"{found.metric_name} ({found.metric_goal}), {found.state.value}; {counts}",
        highlight=False,
    )
    if not runs:
        return
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
    for column in (*swept, found.metric_name):
        table.add_column(column)
    if has_test:
        table.add_column("test acc")
    table.add_column("epochs")
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
            "" if r.metric is None else f"{r.metric:.4f}",
        ]
        if has_test:
            cells.append("" if test is None else f"{test:.4f}")
        cells += [str(r.epochs), _duration(r)]
        if has_reason:
            cells.append(escape(r.reason or ""))
        table.add_row(*cells)
    out.print(table)


def _set_state(ctx: typer.Context, sweep: str | None, state: str, verb: str) -> None:
    from sweeper.models import SweepState

    backend, current = locate(_home(ctx), sweep)
    found = backend.set_sweep_state(current.id, SweepState(state))
    out.print(f"Sweep [bold]{found.id}[/bold] {verb}: now {found.state.value}.", highlight=False)


@app.command()
def pause(
    ctx: typer.Context,
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep id or name (default: current).")
    ] = None,
) -> None:
    """Pause a sweep: agents re-queue their runs within one heartbeat and exit.

    Example: sweeper pause
    """
    _set_state(ctx, sweep, "paused", "paused")


@app.command()
def resume(
    ctx: typer.Context,
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep id or name (default: current).")
    ] = None,
) -> None:
    """Resume a paused sweep; start agents again to continue it.

    Example: sweeper resume && sweeper agent --gpus all
    """
    _set_state(ctx, sweep, "running", "resumed")


@app.command()
def cancel(
    ctx: typer.Context,
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep id or name (default: current).")
    ] = None,
) -> None:
    """Cancel a sweep for good: running runs stop, pending runs are dropped.

    Example: sweeper cancel abc12345
    """
    _set_state(ctx, sweep, "canceled", "canceled")


@app.command()
def agent(
    ctx: typer.Context,
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep id or name (default: the current sweep).")
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            help="GPU ids like 0,1, or all, or none for the CPU (default: all when a GPU is visible, else none).",
        ),
    ] = None,
    per_gpu: Annotated[
        int,
        typer.Option("--per-gpu", min=1, help="Workers per GPU (or CPU workers with --gpus none)."),
    ] = 1,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many runs.")
    ] = None,
    max_failures: Annotated[
        int,
        typer.Option("--max-failures", min=1, help="Stop after this many consecutive failed runs."),
    ] = 3,
    heartbeat: Annotated[
        float,
        typer.Option(
            "--heartbeat",
            min=0.1,
            help="Seconds between heartbeats; a run silent for 3 beats is crashed.",
        ),
    ] = 10.0,
    trainer: Annotated[
        str,
        typer.Option(
            "--trainer",
            help="The training function as module:function (same signature as trainer.train).",
        ),
    ] = "trainer:train",
    fresh_process: Annotated[
        bool,
        typer.Option(
            "--fresh-process",
            help="A fresh worker process for every run, for trainers that leak state between runs.",
        ),
    ] = False,
) -> None:
    """Run a sweep: one worker process per GPU slot pulls configs and trains until done.

    Example: sweeper agent --gpus 0,1 --per-gpu 2
    """
    from agent import run_agent
    from agent.slots import default_gpus

    home = _home(ctx)
    if home.store:
        # Workers are started with --home only: a --store URL reaches them by the environment.
        os.environ[STORE_ENV] = home.store
    _, found = locate(home, sweep)
    summary = run_agent(
        found.id,
        home=_home(ctx),
        backend=found.backend,
        gpus=gpus or default_gpus(),
        per_gpu=per_gpu,
        count=count,
        max_failures=max_failures,
        heartbeat_s=heartbeat,
        trainer=trainer,
        console=out,
        fresh_process=fresh_process,
    )
    if summary.exit_code:
        raise typer.Exit(code=summary.exit_code)


@app.command()
def report(
    ctx: typer.Context,
    sweeps: Annotated[
        list[str] | None,
        typer.Argument(help="Sweep ids or names (default: the current sweep).", show_default=False),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="Part A: a sweep id, or a JSON file of published numbers (default: scratch runs).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Folder for the report (default: .sweeper/reports/<sweep>/)."
        ),
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", help="Comma-separated: md, html, json.")
    ] = "md,html,json",
    open_report: Annotated[
        bool, typer.Option("--open", help="Open report.html in a browser.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
) -> None:
    """Write the Part A vs Part B report as Markdown, self-contained HTML and JSON.

    Example: sweeper report abc12345 def67890 --baseline published.json -o out/
    """
    from reports import build_report

    chosen = {f.strip() for f in formats.split(",") if f.strip()}
    unknown = chosen - {"md", "html", "json"}
    if unknown or not chosen:
        raise SweeperError(f"--format takes md, html and json, comma-separated; got {formats!r}.")
    backend, found = locate_all(_home(ctx), sweeps or [])
    ids = [s.id for s in found]
    out_dir = output or _home(ctx).report_dir("-".join(ids))
    result = build_report(backend, ids, baseline=baseline, out_dir=out_dir, formats=chosen)
    if as_json:
        _print_json(result.report)
    else:
        for fmt, path in sorted(result.paths.items()):
            out.print(f"{fmt:>5}: {path}", highlight=False)
    if open_report and "html" in result.paths:
        import webbrowser

        webbrowser.open(result.paths["html"].resolve().as_uri())


@app.command()
def launch(
    ctx: typer.Context,
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep id or name (default: the current sweep).")
    ] = None,
    slurm: Annotated[
        bool, typer.Option("--slurm", help="Submit the agents as SLURM jobs.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Run the same jobs as local processes.")
    ] = False,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Agent jobs, one node each.")] = 1,
    gpus_per_node: Annotated[
        int, typer.Option("--gpus-per-node", min=0, help="GPUs per job; its agent uses them all.")
    ] = 0,
    partition: Annotated[
        str | None, typer.Option("--partition", help="SLURM partition.", rich_help_panel="SLURM")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="SLURM account.", rich_help_panel="SLURM")
    ] = None,
    time_min: Annotated[
        int,
        typer.Option("--time", min=1, help="Job time limit in minutes.", rich_help_panel="SLURM"),
    ] = 24 * 60,
    mem_gb: Annotated[
        float | None,
        typer.Option("--mem", help="Memory per job in GB.", rich_help_panel="SLURM"),
    ] = None,
    agent_home: Annotated[
        Path | None,
        typer.Option("--agent-home", help="The agents' SWEEPER_HOME (default: this one)."),
    ] = None,
    trainer: Annotated[
        str | None,
        typer.Option("--trainer", help="The agents' training function as module:function."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the jobs to end; exit 1 if one failed.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"sweep", "jobs", "folder"}.')
    ] = False,
) -> None:
    """Launch agents as jobs with submitit: on SLURM (--slurm) or as local processes (--local).

    Example: sweeper --store postgresql://me@db:5432/sweeps launch --slurm --nodes 4 --gpus-per-node 8 --partition gpu
    """
    from agent.launch import LaunchOptions
    from agent.launch import launch as launch_jobs

    if slurm == local:
        raise SweeperError("say where the agents run: --slurm or --local.")
    backend, found = locate(_home(ctx), sweep)
    if backend.name != "local":
        raise SweeperError(
            f"sweep {found.id} is on W&B: start `sweeper agent` on each host instead."
        )
    options = LaunchOptions(
        slurm=slurm,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        partition=partition,
        account=account,
        time_min=time_min,
        mem_gb=mem_gb,
        agent_home=agent_home,
        agent_args=["--trainer", trainer] if trainer else [],
    )
    launched = launch_jobs(found.id, _home(ctx), options)
    if as_json:
        _print_json({"sweep": found.id, "jobs": launched.job_ids, "folder": str(launched.folder)})
    else:
        out.print(
            f"Submitted {len(launched.jobs)} agent job(s) for sweep [bold]{found.id}[/bold]: "
            f"{', '.join(launched.job_ids)}\nLogs: {escape(str(launched.folder))}",
            highlight=False,
        )
    if wait:
        failed = launched.wait()
        for job_id, reason in failed.items():
            err.print(f"Job {job_id} failed: {escape(reason)}", highlight=False)
        if failed:
            raise typer.Exit(code=1)


@app.command()
def sync(
    ctx: typer.Context,
    sweep: Annotated[
        str | None,
        typer.Argument(help="Sweep id or name (default: every local sweep's runs)."),
    ] = None,
    entity: Annotated[
        str | None,
        typer.Option("--entity", help="W&B entity to upload to [env: WANDB_ENTITY]."),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="W&B project to upload to [env: WANDB_PROJECT]."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be uploaded; upload nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the uploaded and skipped runs as JSON.")
    ] = False,
) -> None:
    """Upload the offline wandb runs that local sweeps logged, grouped by sweep; safe to re-run.

    Example: sweeper sync --project inat-sweeps
    """
    from sweeper.wandb.sync import sync_offline_runs

    result = sync_offline_runs(
        _home(ctx), sweep=sweep, entity=entity, project=project, dry_run=dry_run
    )
    if as_json:
        _print_json(result.model_dump(mode="json"))
        return
    verb = "Would upload" if dry_run else "Uploaded"
    for group in result.groups:
        out.print(
            f"{verb} {len(group.run_ids)} run(s) of sweep [bold]{escape(group.sweep_id)}[/bold]: "
            f"{escape(', '.join(group.run_ids))}",
            highlight=False,
        )
    if result.already_synced:
        out.print(f"{result.already_synced} run(s) were uploaded before; skipped.")
    if not result.groups:
        out.print("Nothing to upload.")


def main() -> None:
    """Console-script entry point."""
    app()
