"""The Python API, the offline twin of `wandb.sweep` and `wandb.agent`.

    import sweeper, wandb

    def train():
        run = wandb.init()                      # gets this run's config, as under W&B
        for epoch in range(3):
            run.log({"loss": run.config.lr / (epoch + 1)})

    sweep_id = sweeper.sweep({"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                              "parameters": {"lr": {"values": [0.1, 0.01]}}})
    sweeper.agent(sweep_id, function=train, count=2)

The same calls as W&B's (`wandb.sweep(config) -> id`, `wandb.agent(sweep_id,
function=f, count=n)`), on sweeper's local backend: the home and store are the CLI's
(`SWEEPER_HOME`, `SWEEPER_STORE`, else `./.sweeper`), so `sweeper status`, `report` and
`sync` see these sweeps, and `sweeper agent` processes can work on them at the same time.
No account, no network: runs log with wandb offline under the home.

This module is an entry point like the command line (`sweeper.cli`): it drives the agent
(`agent.function` for a function, `agent.run_agent` for the sweep's program), which the
sweeper core never imports. `import sweeper` stays light: `sweeper.sweep` and
`sweeper.agent` load this module on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sweeper.errors import SweeperError
from sweeper.paths import Home

if TYPE_CHECKING:
    from agent.supervisor import AgentSummary
    from sweeper.models import Sweep

#: `source` of a spec given as a Python mapping (not stored as a spec file).
SOURCE = "<sweeper.sweep>"


def sweep(
    sweep: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    entity: str | None = None,
    project: str | None = None,
    *,
    name: str | None = None,
    home: str | os.PathLike[str] | None = None,
) -> str:
    """Validate a W&B sweep config, store it as a new sweep (the current one), return its id.

    As `wandb.sweep`: `sweep` is the config or a function returning it; `project` (else
    the config's `project`) and `entity` go to the environment (WANDB_PROJECT,
    WANDB_ENTITY) for the runs' `wandb.init()`, so `sweeper sync` uploads them there. A
    config without `program` or `command` is for `agent(function=...)`: its parameters
    are the user's. Raises `SpecError` listing every problem; nothing is stored then.
    """
    from wandb import env as wandb_env

    from sweeper.locate import open_backend
    from sweeper.spec import spec_from_data

    config = sweep() if callable(sweep) else sweep
    data = dict(config)
    function_sweep = "program" not in data and "command" not in data
    spec = spec_from_data(data, SOURCE, kind="program" if function_sweep else None)
    project = project or data.get("project")
    if entity:
        wandb_env.set_entity(entity)
    if project:
        wandb_env.set_project(project)
    backend = open_backend("local", Home(home))
    try:
        return backend.create_sweep(spec, name=name).id
    finally:
        backend.close()


def agent(
    sweep_id: str,
    function: Callable[[], Any] | None = None,
    entity: str | None = None,
    project: str | None = None,
    count: int | None = None,
    max_consecutive_failed_runs: int | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    gpus: str | None = None,
) -> AgentSummary:
    """Run the sweep `sweep_id` (id, name or unique prefix; a local sweep) in this process.

    As `wandb.agent`: with `function`, each run calls `function()`, which reads its config
    with a bare `wandb.init()` and logs with `wandb.log()`; an exception in it fails that
    run, with the exception as the reason, and the agent goes on (`agent.function`).
    Without one, the sweep's program runs as `sweeper agent` runs it, one worker per
    slot of `gpus` (default: every visible GPU, else the CPU). `count` stops after that
    many runs; `max_consecutive_failed_runs` after that many failures in a row.
    `entity` and `project` go to the runs' environment, as in `sweep`. Returns what the
    agent did.
    """
    from wandb import env as wandb_env

    from agent import run_agent
    from agent.function import run_function_agent
    from agent.slots import default_gpus
    from sweeper.locate import locate

    if count is not None and count < 1:
        raise SweeperError(f"count must be at least 1, got {count}.")
    if max_consecutive_failed_runs is not None and max_consecutive_failed_runs < 1:
        raise SweeperError(
            f"max_consecutive_failed_runs must be at least 1, got {max_consecutive_failed_runs}."
        )
    if function is not None and not callable(function):
        raise SweeperError(f"function must be callable, got {type(function).__name__}.")
    where = Home(home)
    backend, found = locate(where, sweep_id)
    backend.close()
    if found.backend != "local":
        raise SweeperError(
            f"Sweep {sweep_id!r} is a W&B sweep; run it with wandb.agent, or `sweeper agent`."
        )
    if entity:
        wandb_env.set_entity(entity)
    if project:
        wandb_env.set_project(project)
    if function is not None:
        return run_function_agent(
            found.id,
            function,
            home=where,
            count=count,
            max_consecutive_failed_runs=max_consecutive_failed_runs,
        )
    _check_runnable(found)
    return run_agent(
        found.id,
        home=where,
        gpus=gpus or default_gpus(),
        count=count,
        max_failures=max_consecutive_failed_runs or 3,
    )


def _check_runnable(sweep: Sweep) -> None:
    """A sweep made by `sweep(config)` without `program` or `command` is a program sweep
    with nothing to start: it runs only as `agent(function=...)`."""
    if sweep.for_function:
        raise SweeperError(
            f"Sweep {sweep.id!r} names no program (its config was made for a function): "
            "pass function=, the function that trains one run."
        )
