"""The W&B sweeps a home knows: references (entity, project, id, url, name, and the spec
as validated) kept in the local store's `wandb_sweeps` table, and how a user's reference
(id, name or id prefix) picks one. Reads only the local store, so `sweeper` can tell which
backend holds a sweep offline.

The spec is kept as `SweepSpec` JSON, as the local backend keeps it: reading it back needs
no validation, so a program sweep's status does not depend on its script being in the
working directory. References recorded before kept W&B's raw config; those are parsed.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sweeper.backends.naming import matching, resolve_among
from sweeper.errors import NotFoundError
from sweeper.spec import SweepSpec, parse_spec
from sweeper.store import Store
from sweeper.wandb.client import SweepRef

#: Keys W&B adds to a sweep's config on the server; not part of the user's spec.
SERVER_KEYS = ("controller", "scheduler")


def sweep_ref(row: Any) -> SweepRef:
    """Where a recorded sweep lives on W&B."""
    return SweepRef(entity=row["entity"], project=row["project"], id=row["id"])


def recorded(store: Store, ref: str | None = None) -> bool:
    """Whether the store holds W&B sweep references: any at all, or one that `ref` names
    (as `WandbBackend.get_sweep` resolves it)."""
    with store.transaction() as conn:
        rows = conn.execute("SELECT id, name FROM wandb_sweeps").fetchall()
    if ref is None:
        return bool(rows)
    return bool(matching(rows, ref))


def record(
    store: Store, ref: SweepRef, url: str, spec: SweepSpec, now: float, replace: bool = True
) -> None:
    """Record the sweep `ref` with its validated spec (`replace=False`: keep an existing one)."""
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    with store.transaction(immediate=True) as conn:
        conn.execute(
            f"{verb} INTO wandb_sweeps (id, entity, project, url, name, spec, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ref.id, ref.entity, ref.project, url, spec.name, spec.model_dump_json(), now),
        )


def server_spec(config: dict[str, Any], source: str) -> SweepSpec:
    """The spec of a sweep as W&B holds it (its config, less the keys the server adds)."""
    kept = {k: v for k, v in config.items() if k not in SERVER_KEYS}
    return parse_spec(json.dumps(kept), source=source)


def spec_of(row: Any) -> SweepSpec:
    """The spec a recorded sweep was registered with."""
    data = json.loads(row["spec"])
    if "raw" in data:  # a W&B config never has a `raw` key: its schema forbids unknown keys
        return SweepSpec.model_validate(data)
    return server_spec(data, f"W&B sweep {row['id']}")


def find(store: Store, sweep_id: str) -> sqlite3.Row:
    """The recorded sweep with id `sweep_id`.

    Raises:
        NotFoundError: none is recorded here.
    """
    # Inside another transaction this joins it (same thread, same connection).
    with store.transaction() as conn:
        row = conn.execute("SELECT * FROM wandb_sweeps WHERE id = ?", (sweep_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no W&B sweep with id {sweep_id!r} recorded here")
    return row


def newest_first(store: Store) -> list[sqlite3.Row]:
    """Every recorded sweep, newest first."""
    with store.transaction() as conn:
        rows: list[sqlite3.Row] = conn.execute(
            "SELECT * FROM wandb_sweeps ORDER BY created_at DESC, rowid DESC"
        ).fetchall()
    return rows


def resolve(store: Store, ref: str) -> sqlite3.Row:
    """The recorded sweep whose id, unique name or id prefix is `ref`.

    Raises:
        NotFoundError: none or several match; the message says how to name one.
    """
    return resolve_among(
        newest_first(store)[::-1],
        ref,
        "W&B sweep",
        "recorded here",
        tail="; give it as entity/project/sweep_id to use a sweep created on another host",
    )
