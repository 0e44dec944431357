"""The local store's `epochs` table: what each run logged, one row per epoch (or, for a
program run, per logged step), as JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sweeper.backends.ledger import dumps
from sweeper.store.base import Connection


def record(conn: Connection, run_id: str, epoch: int, metrics: dict[str, Any]) -> int:
    """Store (or replace) the run's row for `epoch`; return how many epochs it has."""
    conn.execute(
        "INSERT INTO epochs (run_id, epoch, metrics) VALUES (?, ?, ?)"
        " ON CONFLICT (run_id, epoch) DO UPDATE SET metrics = excluded.metrics",
        (run_id, epoch, dumps(metrics)),
    )
    (count,) = conn.execute("SELECT COUNT(*) FROM epochs WHERE run_id = ?", (run_id,)).fetchone()
    return int(count)


def clear(conn: Connection, run_id: str) -> None:
    """Forget what the run logged (it is trained again from its start)."""
    conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))


def history(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """The run's rows, oldest first."""
    return [
        json.loads(r["metrics"])
        for r in conn.execute(
            "SELECT metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
        )
    ]


def histories(conn: Connection, sweep_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every run's rows of the sweep, by run id, in one query."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in conn.execute(
        "SELECT e.run_id, e.metrics FROM epochs e JOIN runs r ON r.id = e.run_id"
        " WHERE r.sweep_id = ? ORDER BY e.run_id, e.epoch",
        (sweep_id,),
    ):
        found[r["run_id"]].append(json.loads(r["metrics"]))
    return found
