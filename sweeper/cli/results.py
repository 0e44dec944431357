"""The commands that take a sweep's results out: `report` writes them as files, `sync`
uploads the runs that local sweeps logged offline to W&B."""

# No `from __future__ import annotations` here: see sweeper/cli/__init__.py.
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sweeper.cli.app import home_of, out, print_json
from sweeper.errors import SweeperError
from sweeper.locate import locate_all


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
            help="Part A of a trainer report: a sweep id, or a JSON file of published numbers "
            "(default: scratch runs).",
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
    """Write the sweep report (with Part A vs Part B for trainer sweeps): Markdown, HTML, JSON.

    Example: sweeper report abc12345 def67890 --baseline published.json -o out/
    """
    from reports import build_report

    chosen = {f.strip() for f in formats.split(",") if f.strip()}
    unknown = chosen - {"md", "html", "json"}
    if unknown or not chosen:
        raise SweeperError(f"--format takes md, html and json, comma-separated; got {formats!r}.")
    backend, found = locate_all(home_of(ctx), sweeps or [])
    ids = [s.id for s in found]
    out_dir = output or home_of(ctx).report_dir("-".join(ids))
    result = build_report(backend, ids, baseline=baseline, out_dir=out_dir, formats=chosen)
    if as_json:
        print_json(result.report)
    else:
        for fmt, path in sorted(result.paths.items()):
            out.print(f"{fmt:>5}: {path}", highlight=False)
    if open_report and "html" in result.paths:
        import webbrowser

        webbrowser.open(result.paths["html"].resolve().as_uri())


def sync(
    ctx: typer.Context,
    sweep: Annotated[
        str | None,
        typer.Argument(help="Sweep id or name (default: every local sweep's runs)."),
    ] = None,
    entity: Annotated[
        str | None,
        typer.Option("--entity", help="W&B entity to upload to \\[env: WANDB_ENTITY]."),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="W&B project to upload to \\[env: WANDB_PROJECT]."),
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
        home_of(ctx), sweep=sweep, entity=entity, project=project, dry_run=dry_run
    )
    if as_json:
        print_json(result.model_dump(mode="json"))
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
