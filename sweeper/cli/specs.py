"""The commands that read a sweep spec: `validate` checks specs, `create` stores one as a
new sweep."""

# No `from __future__ import annotations` here: see sweeper/cli/__init__.py.
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sweeper.cli.app import err, home_of, out, print_json, sweep_json
from sweeper.errors import SpecError, SweeperError
from sweeper.locate import BACKEND_NAMES, open_backend, pick_backend


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
                    f"{f'on {spec.metric_name}' if spec.metric_name else 'without a metric'}",
                    highlight=False,
                )
    if as_json:
        print_json(results)
    if not all(r["valid"] for r in results):
        raise typer.Exit(code=2)


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
            help="W&B entity (user or team) for the sweep \\[env: WANDB_ENTITY; default: yours].",
            rich_help_panel="W&B",
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            help="W&B project for the sweep \\[env: WANDB_PROJECT; default: the spec's or 'sweeper'].",
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
    opened = open_backend(chosen, home_of(ctx), entity=entity, project=project)
    sweep = opened.create_sweep(spec, name=name or spec.name or file.stem)
    if as_json:
        print_json(sweep_json(sweep))
        return
    out.print(
        f"Created sweep [bold]{sweep.id}[/bold] ({escape(sweep.name)}) on the {chosen} backend ({why}).",
        highlight=False,
    )
    if sweep.url:
        out.print(f"W&B: {sweep.url}")
    out.print(f"Next: [bold]sweeper agent {sweep.id} --gpus all[/bold]  (or --gpus none on a CPU)")
