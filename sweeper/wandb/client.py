"""`RealClient`: every call sweeper makes into wandb, in one place.

Public API: `wandb.sweep` (create), `wandb.Api()` (sweep and run reads, paged; its cache of
Run objects flushed before each read so a long-lived client never reads stale state),
`wandb.init(id=..., settings=Settings(sweep_id=...))` per run (epochs, summary, exit code,
`mark_preempting`), `wandb.Artifact` (checkpoints).

Private helpers of `wandb.apis.public.sweeps` (0.31), the agent API that `wandb.agent`
itself uses; their signatures are tested (tests/sweeper/test_wandb_client.py) so a wandb
upgrade that changes them fails there first: `_register_agent` (CreateAgent),
`_agent_heartbeat` (Heartbeat: the controller's run/stop/exit/resume commands) and
`_set_sweep_state` (pause, resume, cancel, finish).

`_agent_heartbeat` logs and swallows every transport error except 404 and returns `[]`, which
reads as "no run yet". `_ErrorKeepingApi` hands it the Api with a ServiceApi that keeps the
error, and `agent_heartbeat` raises it, so an outage is retried and then reported.
"""

from __future__ import annotations

import contextlib
import io
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sweeper.environ import scoped_environ
from sweeper.wandb.credentials import app_url, redact


class SweepRecord(BaseModel):
    """A sweep as the W&B server describes it."""

    id: str
    name: str | None = None
    state: str = Field(description="RUNNING, PAUSED, CANCELED, FINISHED, ...")
    config: dict[str, Any]
    created_at: datetime | None = None


class RunRecord(BaseModel):
    """A run as the W&B server describes it."""

    id: str
    state: str = Field(description="running, finished, crashed, failed, killed, preempted, ...")
    config: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime | None = None


class SweepRef(BaseModel):
    """Where a sweep lives on W&B."""

    entity: str
    project: str
    id: str

    @property
    def path(self) -> str:
        """'entity/project/id', as `wandb.Api().sweep` takes it."""
        return f"{self.entity}/{self.project}/{self.id}"


@contextlib.contextmanager
def _one_retry_in_wandb_core() -> Iterator[None]:
    """Build wandb's Api with wandb-core retrying a GraphQL request once, not for minutes.

    `Retry` owns retrying: it is bounded by SWEEPER_WANDB_TIMEOUT and needs the status
    (429, 5xx, 401), which it sees only once wandb-core gives up. `wandb.Api()` copies
    wandb's global settings when it is built, so they are changed only meanwhile.
    """
    from wandb.sdk import wandb_setup

    settings = wandb_setup.singleton().settings
    saved = settings.x_graphql_retry_max
    settings.x_graphql_retry_max = 1
    try:
        yield
    finally:
        settings.x_graphql_retry_max = saved


class _KeptErrorServiceApi:
    """A wandb ServiceApi that remembers the last error `execute_graphql` raised."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.error: BaseException | None = None

    def execute_graphql(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._inner.execute_graphql(*args, **kwargs)
        except Exception as exc:
            self.error = exc
            # wandb logs what it catches here, traceback and all: only a redacted copy.
            raise RuntimeError(redact(f"{type(exc).__name__}: {exc}")) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ErrorKeepingApi:
    """A wandb Api whose ServiceApi keeps errors (see the module docstring)."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self._service_api = _KeptErrorServiceApi(api._service_api)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


class RealClient:
    """The wandb calls of the W&B backend, on the real wandb package.

    Args:
        wandb_dir: where `wandb.init` writes run folders.
        timeout: seconds for one request (wandb's per-request timeout; `Retry` bounds the total).
    """

    def __init__(self, wandb_dir: Path, timeout: float) -> None:
        import wandb

        self._wandb = wandb
        self.wandb_dir = wandb_dir
        self.timeout = timeout
        self._api: Any = None
        self._runs: dict[str, Any] = {}

    @property
    def api(self) -> Any:
        """One `wandb.Api()` for this client's life (it verifies the key once)."""
        if self._api is None:
            with _one_retry_in_wandb_core():
                self._api = self._wandb.Api(timeout=max(1, int(min(self.timeout, 30))))
        return self._api

    def verify_login(self) -> None:
        """Check the credentials with the server now (`wandb.Api()` does on creation)."""
        self._api = None
        self.api  # noqa: B018 - creating the Api is the check

    def default_entity(self) -> str:
        """The entity sweeps go to when none is given: the logged-in user's default."""
        return str(self.api.default_entity)

    def sweep_url(self, ref: SweepRef) -> str:
        """The sweep's page in W&B's web UI."""
        quote = urllib.parse.quote
        return f"{app_url()}/{quote(ref.entity)}/{quote(ref.project)}/sweeps/{quote(ref.id)}"

    def create_sweep(self, config: dict[str, Any], entity: str, project: str) -> str:
        """Register the sweep with `wandb.sweep`; returns its id."""
        # wandb.sweep prints the id and URL, and sets WANDB_ENTITY/WANDB_PROJECT in this
        # process (for a `wandb.agent` that follows); neither is wanted here.
        with (
            scoped_environ({}, restored=("WANDB_ENTITY", "WANDB_PROJECT")),
            contextlib.redirect_stdout(io.StringIO()),
            _one_retry_in_wandb_core(),
        ):
            return str(self._wandb.sweep(config, entity=entity, project=project))

    def get_sweep(self, ref: SweepRef) -> SweepRecord:
        """The sweep as the server has it now."""
        sweep = self.api.sweep(ref.path)
        sweep.load(force=True)
        attrs = getattr(sweep, "_attrs", {})
        return SweepRecord(
            id=ref.id,
            name=attrs.get("displayName") or sweep.config.get("name"),
            state=str(sweep.state),
            config=dict(sweep.config),
            created_at=_parse_time(attrs.get("createdAt")),
        )

    def set_sweep_state(self, ref: SweepRef, state: str) -> None:
        """Pause (PAUSED), resume (RUNNING), cancel (CANCELED) or finish (FINISHED) the sweep."""
        from wandb.apis.public.sweeps import _set_sweep_state

        _set_sweep_state(self.api, ref.id, state, entity=ref.entity, project=ref.project)  # type: ignore[arg-type]

    def list_runs(self, ref: SweepRef, with_history: bool) -> list[RunRecord]:
        """Every run of the sweep, oldest first, read fresh (paged)."""
        self.api.flush()
        runs = self.api.runs(
            f"{ref.entity}/{ref.project}",
            filters={"sweep": ref.id},
            order="+created_at",
            per_page=100,
            lazy=False,
        )
        return [self._record(run, with_history) for run in runs]

    def get_run(self, ref: SweepRef, run_id: str) -> RunRecord | None:
        """The run, read fresh, or None when the server has no such run."""
        from sweeper.wandb.retry import http_status

        self.api.flush()
        try:
            run = self.api.run(f"{ref.entity}/{ref.project}/{run_id}")
        except Exception as exc:
            if http_status(exc) == 404 or "not found" in str(exc).lower():
                return None
            raise
        return self._record(run, with_history=True)

    @staticmethod
    def _record(run: Any, with_history: bool) -> RunRecord:
        history = list(run.scan_history(page_size=1000, use_cache=False)) if with_history else []
        return RunRecord(
            id=run.id,
            state=str(run.state),
            config=dict(run.config),
            summary=dict(run.summary_metrics or {}),
            history=history,
            created_at=_parse_time(getattr(run, "created_at", None)),
        )

    def register_agent(self, ref: SweepRef, host: str) -> str:
        """Register a W&B agent on the sweep (CreateAgent); returns its id."""
        from wandb.apis.public.sweeps import _register_agent

        agent = _register_agent(
            self.api, host, sweep_id=ref.id, entity=ref.entity, project=ref.project
        )
        return str(agent["id"])

    def agent_heartbeat(self, agent_id: str, running: list[str]) -> list[dict[str, Any]]:
        """Tell W&B the agent is alive with these runs; returns the controller's commands.

        Raises:
            Exception: wandb's transport error (wandb itself would log it and return []).
        """
        from wandb.apis.public.sweeps import _agent_heartbeat

        api = _ErrorKeepingApi(self.api)
        commands = _agent_heartbeat(
            api,  # type: ignore[arg-type]
            agent_id,
            {},
            {run_id: True for run_id in running},
        )
        if api._service_api.error is not None:
            raise api._service_api.error
        return [dict(c) for c in commands if isinstance(c, Mapping)]

    def _open(self, ref: SweepRef, run_id: str, config: dict[str, Any]) -> Any:
        """The W&B run `run_id`, opened in this process (resumed if it exists)."""
        run = self._runs.get(run_id)
        if run is None:
            self.wandb_dir.mkdir(parents=True, exist_ok=True)
            run = self._wandb.init(
                id=run_id,
                entity=ref.entity,
                project=ref.project,
                group=ref.id,
                job_type="sweep",
                config=config,
                resume="allow",
                reinit="create_new",
                dir=str(self.wandb_dir),
                settings=self._wandb.Settings(sweep_id=ref.id, silent=True),
            )
            self._runs[run_id] = run
        return run

    def log_epoch(
        self, ref: SweepRef, run_id: str, config: dict[str, Any], metrics: dict[str, Any]
    ) -> None:
        """Log one epoch's metrics to the run."""
        # No explicit step: a resumed run logs its epochs again; the backend keeps the last
        # row per epoch.
        self._open(ref, run_id, config).log(metrics)

    def end_run(
        self,
        ref: SweepRef,
        run_id: str,
        config: dict[str, Any],
        summary: dict[str, Any],
        exit_code: int,
        preempted: bool = False,
    ) -> None:
        """Write the summary and finish the run; `preempted` marks it preempting first, which
        tells W&B's controller to hand it out again (a `resume` command, same run id)."""
        run = self._open(ref, run_id, config)
        run.summary.update(summary)
        if preempted:
            run.mark_preempting()
        self._runs.pop(run_id, None)
        run.finish(exit_code=exit_code)

    def log_checkpoint(
        self,
        ref: SweepRef,
        run_id: str,
        config: dict[str, Any],
        path: Path,
        base: Path | None = None,
    ) -> None:
        """Upload a checkpoint file as the run's model artifact, with the weights file it
        completes itself from (`base`: a head run's backbone) beside it."""
        artifact = self._wandb.Artifact(f"model-{run_id}", type="model")
        artifact.add_file(str(path), name=path.name)
        if base is not None:
            artifact.add_file(str(base), name=base.name)
        self._open(ref, run_id, config).log_artifact(artifact)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
