"""The typer app every command hangs on: its root options (--home, --store, --version), the
consoles, the SweeperError handler, and the helpers the commands share (the chosen home,
JSON output).

Library code raises `SweeperError`; the app's group catches it, prints it as one paragraph
on stderr and exits with its code (2), never with a traceback. Off a terminal (a pipe, a CI
log) nothing is hard-wrapped, so a message stays one greppable line.

Help texts are rich markup: a literal bracket is written `\\[`, or `--help` would take
`[env: SWEEPER_HOME]` for a style tag and drop it.
"""

# No `from __future__ import annotations` here: see sweeper/cli/__init__.py.
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from sweeper import __version__
from sweeper.errors import SweeperError
from sweeper.paths import Home

if TYPE_CHECKING:
    from sweeper.models import Sweep

#: The optional sweep argument of the commands that act on one sweep (`status`, `agent`,
#: `launch`): one declaration, so its help reads the same in each.
SweepArgument = Annotated[
    str | None, typer.Argument(help="Sweep id or name (default: the current sweep).")
]


#: Set by `leave_quickly`; read by the console entry point, `sweeper.cli.main`.
_quick_exit = False


def leave_quickly() -> None:
    """Have the console entry point end this process without interpreter teardown once the
    command has returned (in-process callers such as tests are unaffected).

    For a command that imported much and has nothing left to write but its output: the
    agent's supervisor holds wandb's sweep engine, scipy, scikit-learn and pydantic, whose
    teardown took ~0.5 s of CPU after a sweep's last run (strace of `sweeper agent`, 2-core
    dev CPU), time a script waiting on the agent would wait for.
    """
    global _quick_exit
    _quick_exit = True


def leaving_quickly() -> bool:
    """Whether the command asked to `leave_quickly`."""
    return _quick_exit


def _console(stderr: bool = False) -> Console:
    """A rich console that hard-wraps only on a terminal: in a pipe, rich would break lines
    at 80 columns ("did you \\nmean"), which defeats grep and CI logs. No emoji codes: a
    sweep named ":fire:" is printed as typed."""
    console = Console(stderr=stderr, emoji=False)
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
            help="Where sweeper keeps its store, logs and checkpoints \\[env: SWEEPER_HOME; default: ./.sweeper].",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Store URL for local sweeps: sqlite:///path or postgresql://user@host:port/db "
            "\\[env: SWEEPER_STORE; default: sqlite under the home].",
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


def home_of(ctx: typer.Context) -> Home:
    """The home the root options chose (`--home`, `--store`), kept on the root context."""
    home = ctx.find_root().obj
    return home if isinstance(home, Home) else Home()


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout, for scripts (`--json`)."""
    # Plain write: rich would wrap long lines and break the JSON for scripts.
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def sweep_json(sweep: "Sweep") -> dict[str, Any]:
    """The keys every command's `--json` gives for a sweep."""
    return {
        "id": sweep.id,
        "name": sweep.name,
        "backend": sweep.backend,
        "state": sweep.state.value,
    }
