"""The runs W&B's controller issued to this host's agents, kept in the local store.

W&B hands out runs only through its agent API: each worker slot registers one W&B agent
(`wandb_agents`, CreateAgent on first use), and a heartbeat of that agent answers with the
controller's commands. `IssuedRuns` keeps what this host was issued in `wandb_runs` (the
same bookkeeping as the local backend's runs, `sweeper.backends.ledger`): a `run` or
`resume` command becomes a pending row of that agent, which only a worker of that agent
claims (compare-and-set between the processes of this host). A crashed or preempted run
is handed back: its row waits without an agent until the controller issues it again.

>>> stop_reason([{"type": "stop", "run_id": "r1"}], "r1", "hyperband")
"stopped by W&B's hyperband"
>>> stop_reason([{"type": "run", "run_id": "r2"}], "r1", "hyperband") is None
True
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sweeper.backends.ledger import Ended, RunLedger, dumps
from sweeper.models import MAX_CRASH_RETRIES, Run, RunState
from sweeper.run_config import flatten_config
from sweeper.store import SQLiteStore
from sweeper.wandb.client import RealClient, SweepRef
from sweeper.wandb.retry import Retry


def _issued_by_w_and_b() -> str:
    """The ledger's id maker, never called: on W&B every run id comes from its controller."""
    raise AssertionError("sweeper makes no run ids for W&B sweeps")


#: The bookkeeping of this host's claims in `wandb_runs`.
RUNS = RunLedger("wandb_runs", "claimed on this host", _issued_by_w_and_b)


def stop_reason(commands: Iterable[Mapping[str, Any]], run_id: str, rule: str) -> str | None:
    """Why W&B's commands stop `run_id` now (`exit`, or a `stop` for it from `rule`), if they do."""
    commands = list(commands)
    if any(c.get("type") == "exit" for c in commands):
        return "W&B's controller told the agent to exit"
    if any(c.get("type") == "stop" and c.get("run_id") == run_id for c in commands):
        return f"stopped by W&B's {rule}"
    return None


class IssuedRuns:
    """This host's W&B agents and the runs their controller issued (see the module docstring).

    Args:
        store: the home's store (`wandb_agents`, `wandb_runs`).
        client, retry: the wandb calls, and how they are retried.
        now: the time in epoch seconds.
    """

    def __init__(
        self, store: SQLiteStore, client: RealClient, retry: Retry, now: Callable[[], float]
    ) -> None:
        self.store, self.client, self.retry, self.now = store, client, retry, now

    def agent(self, ref: SweepRef, worker: str) -> str:
        """The W&B agent id of `worker` on the sweep, registered on first use."""
        with self.store.transaction() as conn:
            found = conn.execute(
                "SELECT agent_id FROM wandb_agents WHERE sweep_id = ? AND worker = ?",
                (ref.id, worker),
            ).fetchone()
        if found is not None:
            return str(found["agent_id"])
        host = socket.gethostname()
        agent_id = self.retry("register an agent", self.client.register_agent, ref, host)
        with self.store.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO wandb_agents (sweep_id, worker, agent_id) VALUES (?, ?, ?)",
                (ref.id, worker, agent_id),
            )
            kept = conn.execute(
                "SELECT agent_id FROM wandb_agents WHERE sweep_id = ? AND worker = ?",
                (ref.id, worker),
            ).fetchone()
        return str(kept["agent_id"])

    def queue(
        self, sweep_id: str, commands: Iterable[Mapping[str, Any]], agent_id: str
    ) -> str | None:
        """Queue W&B's run/resume commands as pending runs of `agent_id`; return why W&B
        says exit, if it does.

        A `resume` of a run handed back here (preempted: pending without an agent; crashed)
        revives its row: cleared, for this agent, a crashed one with attempt + 1.
        """
        exit_reason = None
        now = self.now()
        with self.store.transaction(immediate=True) as conn:
            for command in commands:
                kind = command.get("type")
                run_id = command.get("run_id")
                if kind in ("run", "resume") and run_id:
                    config = dumps(flatten_config(command.get("args") or {}))
                    conn.execute(
                        "INSERT OR IGNORE INTO wandb_runs (id, sweep_id, state, config, agent_id, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (str(run_id), sweep_id, RunState.pending.value, config, agent_id, now),
                    )
                    conn.execute(
                        "UPDATE wandb_runs SET state = ?, agent_id = ?, worker = NULL,"
                        " metric = NULL, epochs = 0, summary = '{}', started_at = NULL,"
                        " ended_at = NULL, heartbeat_at = NULL,"
                        " attempt = attempt + (state = ?)"
                        " WHERE id = ? AND ((state = ? AND agent_id IS NULL) OR state = ?)",
                        (
                            RunState.pending.value,
                            agent_id,
                            RunState.crashed.value,
                            str(run_id),
                            RunState.pending.value,
                            RunState.crashed.value,
                        ),
                    )
                elif kind == "exit":
                    exit_reason = "W&B's controller has no more runs for this sweep"
        return exit_reason

    def claim(self, sweep_id: str, worker: str, lease_s: float, agent_id: str) -> Run | None:
        """Claim the oldest pending run W&B issued to `agent_id`, in one transaction."""
        with self.store.transaction(immediate=True) as conn:
            own = conn.execute(
                "SELECT 1 FROM wandb_runs WHERE sweep_id = ? AND state = ? AND agent_id = ?",
                (sweep_id, RunState.pending.value, agent_id),
            ).fetchone()
            if own is None:
                return None
            # `prefer` puts this agent's runs first, so the one claimed is its own.
            run_id = RUNS.claim_pending(
                conn, sweep_id, worker, lease_s, self.now(), prefer=("agent_id", agent_id)
            )
            assert run_id is not None
            row = RUNS.row(conn, run_id)
        return RUNS.to_run(row, [])

    @staticmethod
    def crash(conn: sqlite3.Connection, row: sqlite3.Row, error: str, now: float) -> Ended:
        """Mark a run crashed, to be resumed when W&B issues it again; after
        `MAX_CRASH_RETRIES` resumes it fails (the ledger's rule and message)."""
        if row["attempt"] >= MAX_CRASH_RETRIES:
            return RUNS.crash(conn, row, error, now)
        conn.execute(
            "UPDATE wandb_runs SET state = ?, reason = ?, ended_at = ?, agent_id = NULL WHERE id = ?",
            (RunState.crashed.value, error, now, row["id"]),
        )
        return Ended(row, RunState.crashed, error)

    @staticmethod
    def hand_back(conn: sqlite3.Connection, run_id: str) -> None:
        """Leave a re-queued run pending without an agent: only W&B's `resume` revives it."""
        conn.execute("UPDATE wandb_runs SET agent_id = NULL WHERE id = ?", (run_id,))

    def stale(self, conn: sqlite3.Connection, now: float) -> list[sqlite3.Row]:
        """This host's running runs whose heartbeat is older than their lease."""
        return conn.execute(
            "SELECT * FROM wandb_runs WHERE state = ? AND heartbeat_at + lease_s < ? ORDER BY rowid",
            (RunState.running.value, now),
        ).fetchall()

    def rows(self, sweep_id: str) -> dict[str, sqlite3.Row]:
        """This host's rows of the sweep by run id, oldest first."""
        with self.store.transaction() as conn:
            return {
                r["id"]: r
                for r in conn.execute(
                    "SELECT * FROM wandb_runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,)
                )
            }

    def find(self, run_id: str) -> sqlite3.Row | None:
        """This host's row of the run, if it has one."""
        with self.store.transaction() as conn:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM wandb_runs WHERE id = ?", (run_id,)
            ).fetchone()
        return row
