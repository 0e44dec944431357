"""`sweeper sync`: upload the offline wandb runs that local sweeps logged, grouped by sweep.

The agent logs every run of a local sweep with wandb, offline when no API key is
configured, under `<home>/wandb/` with `group=<sweep id>`. This module finds those run
folders, reads each one's run record (its id and group) from the `.wandb` transaction
log, and uploads the ones not yet uploaded with wandb's own `wandb sync` code, one call
per sweep. What was uploaded is remembered twice: in the store (`wandb_synced`) and with
the `.wandb.synced` marker that `wandb sync` itself honours, so re-running uploads nothing
twice.

>>> SyncResult(groups=[], already_synced=0, dry_run=True).model_dump()["groups"]
[]
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from sweeper.backends.local import LocalBackend
from sweeper.backends.wandb import DEFAULT_PROJECT, redact, require_key
from sweeper.errors import BackendError, SweeperError
from sweeper.paths import Home

#: The `.wandb` file: a 7-byte header, then records in 32 KiB blocks (LevelDB's log format).
_HEADER = b":W&B"
_HEADER_SIZE = 7
_BLOCK = 32 * 1024
_RECORD_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
#: The run record comes second (after the header record); give up after this many.
_MAX_RECORDS = 64

Upload = Callable[[list[Path], str | None, str], None]


class OfflineRun(BaseModel):
    """One wandb run folder under the home."""

    run_dir: Path
    wandb_file: Path
    run_id: str
    group: str | None = Field(description="The sweep id the agent logged the run under.")

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
    """(run id, group) from a `.wandb` transaction log, or None if it has no readable run record."""
    from wandb.proto import wandb_internal_pb2

    for payload in _records(wandb_file):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        try:
            record.ParseFromString(payload)
        except Exception:  # a torn or foreign record: not a run we can sync
            return None
        if record.WhichOneof("record_type") == "run":
            return record.run.run_id, record.run.run_group or None
    return None


def _records(path: Path) -> Iterator[bytes]:
    """The first records of a LevelDB-format log, reassembled across block boundaries."""
    try:
        with path.open("rb") as f:
            data = f.read(_BLOCK * 4)
    except OSError:
        return
    if not data.startswith(_HEADER):
        return
    pos, pending, count = _HEADER_SIZE, b"", 0
    while count < _MAX_RECORDS:
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER.size:
            pos += left_in_block  # block trailer padding
            continue
        if pos + _RECORD_HEADER.size > len(data):
            return
        _, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        chunk = data[pos : pos + length]
        if len(chunk) < length:
            return
        pos += length
        if kind == _FULL:
            count += 1
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            count += 1
            yield pending + chunk
            pending = b""
        else:
            return


def offline_runs(home: Home) -> list[OfflineRun]:
    """Every offline wandb run folder under `home`'s wandb folder, oldest first."""
    root = home.wandb_dir
    found: list[OfflineRun] = []
    for run_dir in sorted([*root.glob("offline-run-*"), *root.glob("wandb/offline-run-*")]):
        files = sorted(run_dir.glob("*.wandb"))
        if not run_dir.is_dir() or not files:
            continue
        header = read_run_record(files[0])
        if header is None:
            continue
        run_id, group = header
        found.append(OfflineRun(run_dir=run_dir, wandb_file=files[0], run_id=run_id, group=group))
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
) -> SyncResult:
    """Upload the offline runs of local sweeps (all, or `sweep`'s), one upload per sweep,
    with `upload` (default: `wandb_sync_upload`).

    Raises:
        BackendError: no W&B API key (unless `dry_run`), or the upload failed; the runs
            uploaded before the failure stay recorded.
        NotFoundError: `sweep` names no local sweep.
    """
    if not dry_run:
        require_key()
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
            if str(run.run_dir) in synced or run.marker.exists():
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
            target = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
            chosen = upload or wandb_sync_upload
            for sweep_id, runs in by_sweep.items():
                _upload_group(
                    local, sweep_id, runs, entity or os.environ.get("WANDB_ENTITY"), target, chosen
                )
        return SyncResult(groups=groups, already_synced=already, dry_run=dry_run)
    finally:
        local.close()


def _upload_group(
    local: LocalBackend,
    sweep_id: str,
    runs: list[OfflineRun],
    entity: str | None,
    project: str,
    upload: Upload,
) -> None:
    try:
        upload([r.run_dir for r in runs], entity, project)
    except SweeperError:
        raise
    except (Exception, SystemExit) as exc:  # click's exit and wandb's errors alike
        raise BackendError(
            f"uploading the runs of sweep {sweep_id} failed: {redact(f'{type(exc).__name__}: {exc}')}. "
            "Runs uploaded before are remembered; run `sweeper sync` again to retry the rest."
        ) from None
    now = time.time()
    with local.store.transaction(immediate=True) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO wandb_synced (run_dir, run_id, sweep_id, synced_at) VALUES (?, ?, ?, ?)",
            [(str(r.run_dir), r.run_id, sweep_id, now) for r in runs],
        )
    for run in runs:
        _mark(run.marker)


def _mark(marker: Path) -> None:
    """Leave `wandb sync`'s marker (written whole: temp file, then rename) if it did not."""
    if marker.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=marker.parent, prefix=".synced-")
    os.close(fd)
    os.replace(tmp, marker)
