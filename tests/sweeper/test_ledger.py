"""The run ledger on a real SQLite and a real PostgreSQL store, for both tables the backends keep: ownership,
claiming, finishing and its reason rule, crash retries, re-queueing, reaping."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sweeper.backends.ledger import RunLedger
from sweeper.errors import NotFoundError
from sweeper.models import MAX_CRASH_RETRIES, RunState, SweepState
from sweeper.store import SQLiteStore, Store, open_store
from sweeper.store.base import ROWS_ONLY

SWEEP = "sweep001"
NOW = 1_000_000.0
#: What the local backend's retries carry besides the config.
ENGINE_COLUMNS = {"engine_config": '{"lr": {"value": 0.1}}', "config_key": '{"lr":0.1}'}


@dataclass
class Book:
    """A store, the ledger of one of its runs tables, and helpers to put runs in it."""

    store: Store
    ledger: RunLedger

    def add(self, run_id: str, state: RunState = RunState.running, **columns: Any) -> str:
        """Insert a run of SWEEP, running for w1 since NOW unless `columns` say otherwise."""
        values: dict[str, Any] = {
            "id": run_id,
            "sweep_id": SWEEP,
            "state": state.value,
            "config": json.dumps({"lr": 0.1}),
            "created_at": NOW,
            **(
                {"worker": "w1", "lease_s": 60.0, "started_at": NOW, "heartbeat_at": NOW}
                if state == RunState.running
                else {}
            ),
            **(ENGINE_COLUMNS if self.ledger.table == "runs" else {}),
            **columns,
        }
        with self.store.transaction(immediate=True) as conn:
            conn.execute(
                f"INSERT INTO {self.ledger.table} ({', '.join(values)})"
                f" VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
        return run_id

    def get(self, run_id: str) -> sqlite3.Row:
        with self.store.transaction() as conn:
            return self.ledger.row(conn, run_id)

    def rows(self) -> list[sqlite3.Row]:
        with self.store.transaction() as conn:
            return conn.execute(f"SELECT * FROM {self.ledger.table} ORDER BY rowid").fetchall()


def open_book(store: Store, table: str) -> Book:
    """`store` with one sweep, and the ledger of the local or the W&B runs table,
    drawing retry ids retry001, retry002, ..."""
    ids = (f"retry{n:03d}" for n in itertools.count(1))
    ledger = (
        RunLedger("runs", "in the local store", ids.__next__, carried=tuple(ENGINE_COLUMNS))
        if table == "runs"
        else RunLedger("wandb_runs", "claimed on this host", ids.__next__)
    )
    with store.transaction(immediate=True) as conn:
        conn.execute(
            "INSERT INTO sweeps (id, name, state, method, metric_name, metric_goal, spec,"
            " created_at, updated_at) VALUES (?, 'n', 'running', 'grid', 'val_accuracy',"
            " 'maximize', '{}', ?, ?)",
            (SWEEP, NOW, NOW),
        )
        conn.execute(
            "INSERT INTO wandb_sweeps (id, entity, project, name, spec, created_at)"
            " VALUES (?, 'team', 'p', 'n', '{}', ?)",
            (SWEEP, NOW),
        )
    return Book(store, ledger)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind: a SQLite file, a schema on the session's PostgreSQL."""
    opened = (
        SQLiteStore(tmp_path / "store.db")
        if request.param == "sqlite"
        else open_store(request.getfixturevalue("pg_url"))
    )
    yield opened
    opened.close()


@pytest.fixture(params=["runs", "wandb_runs"])
def book(request: pytest.FixtureRequest, store: Store) -> Book:
    """The ledger of each backend's table on a fresh store."""
    return open_book(store, request.param)


@pytest.fixture
def wandb_book(store: Store) -> Book:
    """The ledger of the W&B backend's table on a fresh store."""
    return open_book(store, "wandb_runs")


# --- reading and ownership ---------------------------------------------------------------


def test_an_unknown_run_is_not_found_where_the_table_is(book: Book) -> None:
    with pytest.raises(NotFoundError, match=f"no run with id 'nope' {book.ledger.place}$"):
        book.get("nope")


@pytest.mark.parametrize(
    ("state", "worker", "owned"),
    [
        (RunState.running, "w1", True),
        (RunState.running, "w2", False),
        (RunState.pending, None, False),
        (RunState.finished, "w1", False),
        (RunState.crashed, "w1", False),
    ],
)
def test_only_the_worker_running_a_run_owns_it(
    book: Book, state: RunState, worker: str | None, owned: bool
) -> None:
    book.add("run1", state, worker=worker)
    # owned locks the row it returns: a write transaction's work.
    with book.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
        row = book.ledger.owned(conn, "run1", "w1")
    assert (row is not None) == owned
    assert row is None or row["id"] == "run1"


@pytest.mark.parametrize(("worker", "beats"), [("w1", True), ("w2", False)])
def test_a_heartbeat_counts_only_from_the_owner(book: Book, worker: str, beats: bool) -> None:
    book.add("run1")
    with book.store.transaction(immediate=True) as conn:
        row = book.ledger.beat(conn, "run1", worker, NOW + 5)
    assert (row is not None) == beats
    assert book.get("run1")["heartbeat_at"] == (NOW + 5 if beats else NOW)


def test_unused_id_draws_again_while_the_id_is_taken(book: Book) -> None:
    book.add("retry001")
    with book.store.transaction() as conn:
        assert book.ledger.unused_id(conn) == "retry002"


def test_to_run_reads_the_bookkeeping_columns(book: Book) -> None:
    book.add("run1", metric=0.5, epochs=2, summary='{"test_accuracy": 0.4}', reason="r")
    run = book.ledger.to_run(book.get("run1"), [{"epoch": 1}], search_info={"why": "grid"})
    assert (run.id, run.sweep_id, run.state, run.worker, run.config) == (
        "run1",
        SWEEP,
        RunState.running,
        "w1",
        {"lr": 0.1},
    )
    assert (run.metric, run.epochs, run.summary, run.reason) == (
        0.5,
        2,
        {"test_accuracy": 0.4},
        "r",
    )
    assert (run.history, run.search_info, run.ended_at) == ([{"epoch": 1}], {"why": "grid"}, None)
    assert run.started_at is not None and run.started_at.timestamp() == NOW


# --- claiming ----------------------------------------------------------------------------


def test_claim_takes_the_oldest_pending_run_with_a_fresh_lease(book: Book) -> None:
    book.add("busy")
    book.add("old", RunState.pending, reason="SIGTERM")
    book.add("new", RunState.pending)
    with book.store.transaction(immediate=True) as conn:
        claimed = book.ledger.claim_pending(conn, SWEEP, "w2", 30.0, NOW + 1)
    assert claimed == "old"
    row = book.get("old")
    assert (row["state"], row["worker"], row["lease_s"], row["reason"]) == (
        RunState.running.value,
        "w2",
        30.0,
        None,
    )
    assert row["started_at"] == row["heartbeat_at"] == NOW + 1
    assert book.get("new")["state"] == RunState.pending.value


def test_claim_without_a_pending_run_is_none(book: Book) -> None:
    book.add("busy")
    with book.store.transaction(immediate=True) as conn:
        assert book.ledger.claim_pending(conn, SWEEP, "w2", 30.0, NOW) is None


@pytest.mark.parametrize(("agent", "claimed"), [("a2", "mine"), ("a9", "theirs"), (None, "theirs")])
def test_claim_can_prefer_one_agents_runs(
    wandb_book: Book, agent: str | None, claimed: str
) -> None:
    wandb_book.add("theirs", RunState.pending, agent_id="a1")
    wandb_book.add("mine", RunState.pending, agent_id="a2")
    with wandb_book.store.transaction(immediate=True) as conn:
        run_id = wandb_book.ledger.claim_pending(
            conn, SWEEP, "w", 30.0, NOW, prefer=("agent_id", agent)
        )
    assert run_id == claimed


@pytest.mark.parametrize(("worker", "kept"), [("w1", True), ("w2", False)])
def test_a_stop_reason_is_recorded_only_for_the_owner(book: Book, worker: str, kept: bool) -> None:
    book.add("run1")
    with book.store.transaction(immediate=True) as conn:
        assert book.ledger.mark_stopping(conn, "run1", worker, "hyperband: below") == kept
    assert book.get("run1")["reason"] == ("hyperband: below" if kept else None)


# --- finishing ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", [RunState.finished, RunState.stopped, "stopped"])
def test_finish_state_accepts_finished_and_stopped(state: RunState | str) -> None:
    assert RunLedger.finish_state(state) == RunState(state)


@pytest.mark.parametrize(
    "state", [RunState.failed, RunState.crashed, RunState.pending, RunState.running]
)
def test_finish_state_refuses_the_others(state: RunState) -> None:
    with pytest.raises(ValueError, match=f"as finished or stopped, not {state.value}$"):
        RunLedger.finish_state(state)


@pytest.mark.parametrize(
    ("state", "stored", "given", "kept"),
    [
        (RunState.stopped, "hyperband: below the cut", None, "hyperband: below the cut"),
        (RunState.stopped, "hyperband: below the cut", "sweep canceled", "sweep canceled"),
        (RunState.stopped, None, None, None),
        (RunState.finished, "hyperband: below the cut", None, None),
        (RunState.finished, None, "all epochs", "all epochs"),
    ],
)
def test_a_stopped_run_keeps_its_stored_reason_unless_given_one(
    book: Book, state: RunState, stored: str | None, given: str | None, kept: str | None
) -> None:
    book.add("run1", reason=stored)
    with book.store.transaction(immediate=True) as conn:
        row = book.ledger.owned(conn, "run1", "w1")
        assert row is not None
        ended = book.ledger.finish(
            conn, row, {"test_accuracy": 0.5}, state, given, ("val_accuracy", "maximize"), NOW + 9
        )
    assert (ended.state, ended.reason, ended.row["id"]) == (state, kept, "run1")
    row = book.get("run1")
    assert (row["state"], row["reason"], json.loads(row["summary"])) == (
        state.value,
        kept,
        {"test_accuracy": 0.5},
    )
    assert row["ended_at"] == row["heartbeat_at"] == NOW + 9


@pytest.mark.parametrize(
    ("stored", "summary", "goal", "metric"),
    [
        (0.7, {"val_accuracy": 0.9}, "maximize", 0.7),
        (None, {"val_accuracy": 0.9}, "maximize", 0.9),
        (None, {"val_accuracy": float("nan")}, "minimize", None),
        (None, {}, "maximize", None),
    ],
)
def test_a_run_without_epochs_takes_its_metric_from_the_summary(
    book: Book, stored: float | None, summary: dict[str, Any], goal: str, metric: float | None
) -> None:
    book.add("run1", metric=stored)
    with book.store.transaction(immediate=True) as conn:
        row = book.ledger.owned(conn, "run1", "w1")
        assert row is not None
        book.ledger.finish(conn, row, summary, RunState.finished, None, ("val_accuracy", goal), NOW)
    assert book.get("run1")["metric"] == metric


@pytest.mark.parametrize(
    ("metric", "summary", "kept"),
    [
        (("val_accuracy", "maximize"), {"val_accuracy": 0.5}, 0.5),
        (("val_accuracy", "maximize"), {}, 0.7),
        ((None, "minimize"), {"val_accuracy": 0.5}, 0.7),
    ],
)
def test_a_program_run_takes_its_metric_from_the_summary(
    book: Book, metric: tuple[str | None, str], summary: dict[str, Any], kept: float
) -> None:
    book.add("run1", metric=0.7)
    with book.store.transaction(immediate=True) as conn:
        row = book.ledger.owned(conn, "run1", "w1")
        assert row is not None
        book.ledger.finish(conn, row, summary, RunState.finished, None, metric, NOW, program=True)
    assert book.get("run1")["metric"] == kept


def test_a_failed_run_is_not_retried(book: Book) -> None:
    book.add("run1")
    with book.store.transaction(immediate=True) as conn:
        ended = book.ledger.fail(conn, book.ledger.row(conn, "run1"), "ValueError: bad lr", NOW)
    assert (ended.state, ended.reason) == (RunState.failed, "ValueError: bad lr")
    assert [(r["id"], r["state"], r["reason"], r["ended_at"]) for r in book.rows()] == [
        ("run1", RunState.failed.value, "ValueError: bad lr", NOW)
    ]


@pytest.mark.parametrize("attempt", range(MAX_CRASH_RETRIES))
def test_a_crash_queues_the_config_again_as_a_new_run(book: Book, attempt: int) -> None:
    book.add("run1", attempt=attempt)
    with book.store.transaction(immediate=True) as conn:
        row = book.ledger.row(conn, "run1")
        ended = book.ledger.fail(conn, row, "worker died (signal 9)", NOW + 1, crashed=True)
    assert (ended.state, ended.reason) == (RunState.crashed, "worker died (signal 9)")
    crashed, retry = book.rows()
    assert (crashed["state"], crashed["reason"], crashed["ended_at"]) == (
        RunState.crashed.value,
        "worker died (signal 9)",
        NOW + 1,
    )
    assert (retry["id"], retry["state"], retry["attempt"], retry["retry_of"]) == (
        "retry001",
        RunState.pending.value,
        attempt + 1,
        "run1",
    )
    assert (retry["config"], retry["created_at"], retry["worker"]) == (row["config"], NOW + 1, None)
    carried = {column: retry[column] for column in book.ledger.carried}
    assert carried == (ENGINE_COLUMNS if book.ledger.table == "runs" else {})


def test_the_last_crash_fails_the_run_without_a_retry(book: Book) -> None:
    book.add("run1", attempt=MAX_CRASH_RETRIES)
    with book.store.transaction(immediate=True) as conn:
        ended = book.ledger.crash(conn, book.ledger.row(conn, "run1"), "OOM killer", NOW)
    reason = f"crashed {MAX_CRASH_RETRIES + 1} times, not retried again; last: OOM killer"
    assert (ended.state, ended.reason) == (RunState.failed, reason)
    assert [(r["id"], r["state"], r["reason"]) for r in book.rows()] == [
        ("run1", RunState.failed.value, reason)
    ]


# --- re-queueing and stopping ------------------------------------------------------------


@pytest.mark.parametrize("sweep_state", [SweepState.running, SweepState.paused])
def test_requeue_clears_the_run_for_a_fresh_start(book: Book, sweep_state: SweepState) -> None:
    book.add("run1", metric=0.8, epochs=3, summary='{"test_accuracy": 0.7}')
    with book.store.transaction(immediate=True) as conn:
        row = book.ledger.row(conn, "run1")
        ended = book.ledger.requeue(conn, row, "agent stopped (SIGTERM)", sweep_state, NOW)
    assert (ended.state, ended.reason) == (RunState.pending, "agent stopped (SIGTERM)")
    row = book.get("run1")
    assert (row["state"], row["reason"], row["worker"], row["metric"], row["epochs"]) == (
        RunState.pending.value,
        "agent stopped (SIGTERM)",
        None,
        None,
        0,
    )
    assert (row["summary"], row["started_at"], row["heartbeat_at"], row["ended_at"]) == (
        "{}",
        None,
        None,
        None,
    )


@pytest.mark.parametrize("sweep_state", [SweepState.canceled, SweepState.finished])
def test_requeue_in_a_final_sweep_stops_the_run(book: Book, sweep_state: SweepState) -> None:
    book.add("run1", metric=0.8, epochs=3)
    with book.store.transaction(immediate=True) as conn:
        ended = book.ledger.requeue(
            conn, book.ledger.row(conn, "run1"), "SIGTERM", sweep_state, NOW
        )
    reason = f"SIGTERM (sweep {sweep_state.value})"
    assert (ended.state, ended.reason) == (RunState.stopped, reason)
    row = book.get("run1")
    assert (row["state"], row["reason"], row["ended_at"], row["metric"]) == (
        RunState.stopped.value,
        reason,
        NOW,
        0.8,
    )


def test_a_final_sweep_stops_its_pending_runs_only(book: Book) -> None:
    book.add("busy")
    book.add("queued", RunState.pending)
    with book.store.transaction(immediate=True) as conn:
        book.ledger.stop_pending(conn, SWEEP, SweepState.canceled, NOW)
    assert [(r["id"], r["state"], r["reason"]) for r in book.rows()] == [
        ("busy", RunState.running.value, None),
        ("queued", RunState.stopped.value, "sweep canceled"),
    ]


# --- reaping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "silent_s", "lease_s", "stale"),
    [
        (RunState.running, 61.0, 60.0, True),
        (RunState.running, 59.0, 60.0, False),
        (RunState.running, 60.0, 60.0, False),  # a lease runs out after, not at, its length
        (RunState.running, 0.5, 0.01, True),
        (RunState.pending, 600.0, 60.0, False),
        (RunState.finished, 600.0, 60.0, False),
    ],
)
def test_reap_crashes_runs_silent_for_longer_than_their_lease(
    book: Book, state: RunState, silent_s: float, lease_s: float, stale: bool
) -> None:
    book.add("run1", state, lease_s=lease_s, heartbeat_at=NOW - silent_s)
    with book.store.transaction(immediate=True) as conn:
        reaped = book.ledger.reap(conn, NOW)
    assert [ended.row["id"] for ended in reaped] == (["run1"] if stale else [])
    assert book.get("run1")["state"] == (RunState.crashed.value if stale else state.value)


def test_reap_says_why_and_queues_retries_oldest_first(book: Book) -> None:
    book.add("first", heartbeat_at=NOW - 5, lease_s=2.0)
    book.add("alive", heartbeat_at=NOW)
    book.add("last", heartbeat_at=NOW - 90, lease_s=60.0, worker="w2", attempt=MAX_CRASH_RETRIES)
    with book.store.transaction(immediate=True) as conn:
        reaped = book.ledger.reap(conn, NOW)
    assert [(e.row["id"], e.state, e.reason) for e in reaped] == [
        ("first", RunState.crashed, "no heartbeat from worker w1 for 5.0 s (lease 2 s)"),
        (
            "last",
            RunState.failed,
            f"crashed {MAX_CRASH_RETRIES + 1} times, not retried again; "
            "last: no heartbeat from worker w2 for 90.0 s (lease 60 s)",
        ),
    ]
    assert [(r["id"], r["state"], r["retry_of"]) for r in book.rows()] == [
        ("first", RunState.crashed.value, None),
        ("alive", RunState.running.value, None),
        ("last", RunState.failed.value, None),
        ("retry001", RunState.pending.value, "first"),
    ]
