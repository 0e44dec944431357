"""`sweeper sync`: upload the offline wandb runs that local sweeps logged, grouped by sweep.

The agent logs every run of a local sweep with wandb, offline when no API key is
configured, under `<home>/wandb/` with `group=<sweep id>`; a program sweep's script logs
there too, offline, under `WANDB_SWEEP_ID=<sweep id>`. This module finds those run folders,
reads each one's run record (its id, group and sweep id) from the `.wandb` transaction
log, and uploads the ones not yet uploaded with wandb's own `wandb sync` code, one call
per sweep. W&B refuses a run of a sweep it does not have, so a program's run goes up as
a copy whose sweep id is its group (`sweeper.wandb.upload_copy`). A run counts as uploaded only when wandb-core wrote its `.wandb.synced` marker
(it does after the server accepted the run); those are recorded in the store
(`wandb_synced`), and a run without the marker is retried by the next sync.

>>> SyncResult(groups=[], already_synced=0, dry_run=True).model_dump()["groups"]
[]
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from sweeper.backends.local import LocalBackend
from sweeper.errors import BackendError, SweeperError
from sweeper.paths import Home
from sweeper.wandb.backend import DEFAULT_PROJECT
from sweeper.wandb.credentials import redact, require_credentials
from sweeper.wandb.runfile import run_record
from sweeper.wandb.upload_copy import copy_without_sweep

Upload = Callable[[list[Path], str | None, str], None]


class OfflineRun(BaseModel):
    """One wandb run folder under the home."""

    run_dir: Path
    wandb_file: Path
    run_id: str
    group: str | None = Field(description="The sweep id the agent logged the run under.")
    in_sweep: bool = Field(
        False, description="Logged under WANDB_SWEEP_ID (a program's run): uploaded as a copy."
    )

    @property
    def marker(self) -> Path:
        """The file `wandb sync` leaves next to a run it uploaded."""
        return self.wandb_file.with_name(self.wandb_file.name + ".synced")


class SyncGroup(BaseModel):
    """The runs of one sweep uploaded (or, in a dry run, to upload) by one call."""

    sweep_id: str
    run_ids: list[str]
    run_dirs: list[str]


class SyncResult(BaseModel):
    """What `sync_offline_runs` did."""

    groups: list[SyncGroup]
    already_synced: int = Field(description="Runs skipped because they were uploaded before.")
    dry_run: bool


def read_run_record(wandb_file: Path) -> tuple[str, str | None] | None:
    """(run id, sweep id) from a `.wandb` transaction log: the sweep is the run's group (the
    agent's runs) or sweep id (a program's); None if it has no readable run record."""
    run = run_record(wandb_file)
    return None if run is None else (run.run_id, run.run_group or run.sweep_id or None)


def offline_runs(home: Home) -> list[OfflineRun]:
    """Every offline wandb run folder under `home`'s wandb folder, oldest first."""
    root = home.wandb_dir
    found: list[OfflineRun] = []
    for run_dir in sorted([*root.glob("offline-run-*"), *root.glob("wandb/offline-run-*")]):
        files = sorted(run_dir.glob("*.wandb"))
        if not run_dir.is_dir() or not files:
            continue
        run = run_record(files[0])
        if run is None:
            continue
        found.append(
            OfflineRun(
                run_dir=run_dir,
                wandb_file=files[0],
                run_id=run.run_id,
                group=run.run_group or run.sweep_id or None,
                in_sweep=bool(run.sweep_id),
            )
        )
    return found


def wandb_sync_upload(paths: list[Path], entity: str | None, project: str) -> None:
    """Upload run folders with wandb's own `wandb sync` code (no confirmation prompt)."""
    from wandb.cli import beta_sync

    beta_sync.sync(
        paths,
        live=False,
        entity=entity or "",
        project=project,
        run_id="",
        job_type="",
        replace_tags="",
        dry_run=False,
        skip_confirmation=True,
        skip_synced=True,
        skip_online=True,
        verbose=False,
        parallelism=4,
    )


def sync_offline_runs(
    home: Home,
    sweep: str | None = None,
    entity: str | None = None,
    project: str | None = None,
    dry_run: bool = False,
    upload: Upload | None = None,
    verify_login: Callable[[Home], None] | None = None,
) -> SyncResult:
    """Upload the offline runs of local sweeps (all, or `sweep`'s), one upload per sweep,
    with `upload` (default: `wandb_sync_upload`).

    A run counts as uploaded only when wandb-core left its `.wandb.synced` marker, which it
    writes after the server accepted the run; only those are recorded, so the next sync
    retries the rest. The credentials are checked with the server first (`verify_login`,
    default: `wandb.Api()`'s login check, retried as every W&B call), so a refused key is
    reported as such.

    Raises:
        BackendError: no W&B credentials, the server refused them or could not be reached
            (unless `dry_run`), or some runs were not uploaded; the uploaded ones stay recorded.
        NotFoundError: `sweep` names no local sweep.
    """
    local = LocalBackend(home)
    try:
        known = {s.id for s in local.list_sweeps()}
        wanted = local.get_sweep(sweep).id if sweep else None
        with local.store.transaction() as conn:
            synced = {r["run_dir"] for r in conn.execute("SELECT run_dir FROM wandb_synced")}
        by_sweep: dict[str, list[OfflineRun]] = {}
        already = 0
        for run in offline_runs(home):
            if run.group not in known or (wanted is not None and run.group != wanted):
                continue
            if str(run.run_dir) in synced:
                already += 1
                continue
            by_sweep.setdefault(run.group, []).append(run)
        groups = [
            SyncGroup(
                sweep_id=sweep_id,
                run_ids=[r.run_id for r in runs],
                run_dirs=[str(r.run_dir) for r in runs],
            )
            for sweep_id, runs in by_sweep.items()
        ]
        if not dry_run:
            require_credentials()
            if by_sweep:
                (verify_login or _verify_login)(home)
            target = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
            chosen = upload or wandb_sync_upload
            for sweep_id, runs in by_sweep.items():
                _upload_group(
                    local, sweep_id, runs, entity or os.environ.get("WANDB_ENTITY"), target, chosen
                )
        return SyncResult(groups=groups, already_synced=already, dry_run=dry_run)
    finally:
        local.close()


def _verify_login(home: Home) -> None:
    """Check the credentials with the server, as `wandb.Api()` does, retried until
    SWEEPER_WANDB_TIMEOUT: a 401 becomes a BackendError naming the login."""
    from sweeper.wandb.client import RealClient
    from sweeper.wandb.credentials import base_url
    from sweeper.wandb.retry import Retry, timeout_s

    limit = timeout_s()
    client = RealClient(home.wandb_dir, limit)
    Retry(limit, base_url())("verify the credentials", client.verify_login)


def _upload_group(
    local: LocalBackend,
    sweep_id: str,
    runs: list[OfflineRun],
    entity: str | None,
    project: str,
    upload: Upload,
) -> None:
    """Upload one sweep's runs; record those wandb marked uploaded; raise for the rest."""
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="sync-", dir=local.home.wandb_dir) as copies:
        sent = {
            r.run_dir: copy_without_sweep(r.run_dir, r.wandb_file, Path(copies))
            for r in runs
            if r.in_sweep
        }
        try:
            upload(
                [sent[r.run_dir].parent if r.in_sweep else r.run_dir for r in runs], entity, project
            )
        except SweeperError:
            raise
        except (Exception, SystemExit) as exc:  # click's exit and wandb's errors alike
            failure = redact(f"{type(exc).__name__}: {exc}")
        for r in runs:  # a copy's marker is its run's: `wandb sync` then skips the run too
            if r.in_sweep and sent[r.run_dir].with_name(r.marker.name).exists():
                r.marker.touch()
    done = [r for r in runs if r.marker.exists()]
    now = time.time()
    with local.store.transaction(immediate=True) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO wandb_synced (run_dir, run_id, sweep_id, synced_at) VALUES (?, ?, ?, ?)",
            [(str(r.run_dir), r.run_id, sweep_id, now) for r in done],
        )
    missing = [r.run_id for r in runs if not r.marker.exists()]
    if missing:
        cause = failure or "wandb sync finished without marking them uploaded (its output says why)"
        raise BackendError(
            f"{len(missing)} of {len(runs)} run(s) of sweep {sweep_id} were not uploaded "
            f"({', '.join(missing)}): {cause}. The {len(done)} uploaded are remembered; run "
            "`sweeper sync` again to retry the rest."
        )
