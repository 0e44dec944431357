"""When a local sweep ends: finishing it once it hands out no more runs and its last run
has ended, exact under any number of agents reporting at once.

The one decision that spans runs, finishing a sweep once it is done and its last run has
ended, stays exact without a sweep lock in the reports: a claim that records why the
sweep is done first locks the sweep's running runs (waiting for reports in flight, whose
ends it then sees), and a report that ends a run reads the done reason only once it
holds its run's row, then locks the sweep's row to check for runs left (so the last two
runs ending at once cannot both miss the other). Locks are taken in one order
everywhere (store, sweep, run rows, sweep row), so no two transactions wait on each
other in a cycle. Setting a sweep final locks its running runs the same way, so a run
re-queued at that moment is stopped, not left pending.

The functions run inside the caller's write transaction (`sweeper.backends.local`).
"""

from __future__ import annotations

from sweeper.models import RunState, SweepState
from sweeper.store.base import LOCK_ROWS, Connection

#: What the UPDATE ending a run returns for `finish_run`: whether its sweep is running and
#: done (`finish_if_last` then has more to check), read after the run's row was locked.
SWEEP_DONE = (
    "EXISTS (SELECT 1 FROM sweeps WHERE sweeps.id = runs.sweep_id"
    f" AND state = '{SweepState.running.value}' AND done_reason IS NOT NULL) AS sweep_done"
)


def lock_running(conn: Connection, sweep_id: str) -> None:
    """Lock the sweep's running runs, waiting for the reports that hold them (a run
    ending, a heartbeat): the statements after this one see those that ended, and a
    report that comes later waits for this transaction and sees what it wrote."""
    conn.execute(
        f"SELECT id FROM runs WHERE sweep_id = ? AND state = ?{LOCK_ROWS}",
        (sweep_id, RunState.running.value),
    ).fetchall()


def finish_if_last(conn: Connection, sweep_id: str, now: float) -> None:
    """After a run of the sweep ended, in the transaction holding its row: finish the
    sweep if it is done and nothing is left to end.

    The done reason is read only now, under the run's lock (a claim recording it either
    committed first, or waits for this run to end: `lock_running`), and with the sweep's
    row locked while it has one, so that of the last runs ending at once the one that
    commits last sees the others ended."""
    done = conn.execute(
        "SELECT 1 FROM sweeps WHERE id = ? AND state = ? AND done_reason IS NOT NULL" + LOCK_ROWS,
        (sweep_id, SweepState.running.value),
    ).fetchone()
    if done is not None:
        finish_if_drained(conn, sweep_id, now)


def finish_if_drained(conn: Connection, sweep_id: str, now: float) -> bool:
    """A sweep with nothing more to hand out is finished once its last run has ended.

    Returns:
        Whether it was finished now.
    """
    return bool(
        conn.execute(
            "UPDATE sweeps SET state = ?, updated_at = ? WHERE id = ? AND state = ? AND done_reason IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM runs WHERE sweep_id = ? AND state IN (?, ?))",
            (
                SweepState.finished.value,
                now,
                sweep_id,
                SweepState.running.value,
                sweep_id,
                RunState.pending.value,
                RunState.running.value,
            ),
        ).rowcount
    )
