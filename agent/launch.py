"""Launch agents as cluster jobs with submitit: `sweeper launch --slurm` submits one
`sweeper agent` job per node, each training on the GPUs SLURM gives it, all claiming from
one store; `--local` runs the same jobs with submitit's local executor.

submitit does the submission, the job folders and the logs; this module only says what
a job runs. Agents on many nodes must share a store every node reaches, so a SLURM launch
refuses the host-local SQLite default and asks for a PostgreSQL URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sweeper.errors import SweeperError
from sweeper.paths import STORE_ENV, Home, private_dir


class LaunchOptions(BaseModel):
    """How many agent jobs, where, and with what resources."""

    slurm: bool = Field(default=False, description="Submit to SLURM (else: local processes).")
    nodes: int = Field(default=1, ge=1, description="Agent jobs, one node each.")
    gpus_per_node: int = Field(default=0, ge=0, description="GPUs each job asks for and uses.")
    partition: str | None = None
    account: str | None = None
    time_min: int = Field(default=24 * 60, ge=1, description="Job time limit in minutes.")
    mem_gb: float | None = Field(default=None, gt=0)
    cpus_per_node: int | None = Field(default=None, ge=1)
    agent_home: Path | None = Field(
        default=None, description="SWEEPER_HOME of the agents (default: the launcher's)."
    )
    agent_args: list[str] = Field(default_factory=list, description="Extra `agent` options.")


@dataclass(frozen=True)
class AgentJob:
    """What one job runs: `sweeper agent SWEEP` with its home, store and GPUs.

    Called on the node: the agent's exit code, or CalledProcessError so submitit marks
    the job failed.
    """

    sweep_id: str
    home: str
    store: str
    gpus: str
    agent_args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        """The agent's command line.

        >>> AgentJob("abc12345", "/scratch/h", "postgresql://db/s", "all").command()[1:]
        ['-m', 'sweeper', '--home', '/scratch/h', 'agent', 'abc12345', '--gpus', 'all']
        """
        return [
            sys.executable,
            "-m",
            "sweeper",
            "--home",
            self.home,
            "agent",
            self.sweep_id,
            "--gpus",
            self.gpus,
            *self.agent_args,
        ]

    def __call__(self) -> int:
        env = {**os.environ, STORE_ENV: self.store}
        subprocess.run(self.command(), env=env, check=True)
        return 0


@dataclass
class Launched:
    """The submitted jobs and the folder submitit keeps their logs in."""

    folder: Path
    jobs: list[Any] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        return [str(job.job_id) for job in self.jobs]

    def wait(self) -> dict[str, str]:
        """Block until every job ends; the failed ones' ids with submitit's reason."""
        failed: dict[str, str] = {}
        for job in self.jobs:
            error = job.exception()  # waits for the job
            if error is not None:
                failed[str(job.job_id)] = " ".join(str(error).split())[-500:]
        return failed


def launch(sweep_id: str, home: Home, options: LaunchOptions) -> Launched:
    """Submit `options.nodes` agent jobs for `sweep_id`, claiming from `home`'s store.

    Raises:
        SweeperError: a SLURM launch on the host-local SQLite store, or submitit refused.
    """
    import submitit

    store = home.store_url
    if options.slurm and store.startswith("sqlite:"):
        raise SweeperError(
            "agents on SLURM nodes need a store every node reaches, and the default store is "
            "a SQLite file on this host: give --store postgresql://user@host:port/db (or set "
            "SWEEPER_STORE); `sweeper launch --local` runs the jobs here on SQLite."
        )
    folder = private_dir(home.launch_dir(sweep_id))
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if options.slurm else "local")
    parameters: dict[str, Any] = {
        "name": f"sweeper-{sweep_id}",
        "timeout_min": options.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": options.gpus_per_node,
    }
    if options.cpus_per_node is not None:
        parameters["cpus_per_task"] = options.cpus_per_node
    if options.mem_gb is not None:
        parameters["mem_gb"] = options.mem_gb
    if options.partition is not None:
        parameters["slurm_partition"] = options.partition
    if options.account is not None:
        parameters["slurm_account"] = options.account
    executor.update_parameters(**parameters)
    job = AgentJob(
        sweep_id=sweep_id,
        home=str(options.agent_home or home.root),
        store=store,
        # The job's GPUs are the ones SLURM (or the local executor) made visible to it.
        gpus="all" if options.gpus_per_node else "none",
        agent_args=tuple(options.agent_args),
    )
    try:
        jobs = [executor.submit(job) for _ in range(options.nodes)]
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
        raise SweeperError(f"submitting the agent jobs failed: {e}") from e
    return Launched(folder=folder, jobs=jobs)
