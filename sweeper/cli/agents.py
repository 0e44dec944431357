"""The commands that start agents on a sweep: `agent` here, `launch` as submitit jobs (on
SLURM or as local processes)."""

# No `from __future__ import annotations` here: see sweeper/cli/__init__.py.
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from sweeper.cli.app import SweepArgument, err, home_of, leave_quickly, out, print_json
from sweeper.errors import SweeperError
from sweeper.locate import locate
from sweeper.paths import STORE_ENV

if TYPE_CHECKING:
    from sweeper.models import Sweep


def agent(
    ctx: typer.Context,
    sweep: SweepArgument = None,
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

    leave_quickly()
    home = home_of(ctx)
    if home.store:
        # Workers are started with --home only: a --store URL reaches them by the environment.
        os.environ[STORE_ENV] = home.store
    _, found = locate(home, sweep)
    _check_runnable(found)
    summary = run_agent(
        found.id,
        home=home,
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


def launch(
    ctx: typer.Context,
    sweep: SweepArgument = None,
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
    backend, found = locate(home_of(ctx), sweep)
    _check_runnable(found)
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
    launched = launch_jobs(found.id, home_of(ctx), options)
    if as_json:
        print_json({"sweep": found.id, "jobs": launched.job_ids, "folder": str(launched.folder)})
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


def _check_runnable(sweep: "Sweep") -> None:
    """Refuse a sweep made for a function before any process starts for it."""
    if sweep.for_function:
        raise SweeperError(
            f"Sweep {sweep.id!r} names no program: it was made by sweeper.sweep(config) for a "
            "function. Run it from Python: sweeper.agent(sweep_id, function=train)."
        )
