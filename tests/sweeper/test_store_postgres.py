"""The PostgreSQL store on a real server: schema versioning, reconnecting with backoff,
a lost transaction, a password that is never printed, the CLI on it, and which writer
waits for which (a sweep's claims, a run's reports, store-wide writes)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from sweeper.backends import sweep_end
from sweeper.backends.local import _RUNS, _SWEEP_OF_RUN, LocalBackend
from sweeper.cli import app
from sweeper.errors import StoreError
from sweeper.models import Claim, Control, RunState, SweepState
from sweeper.paths import Home
from sweeper.store import SCHEMA_VERSION, StoreDisconnected, open_store, retried
from sweeper.store.base import ROWS_ONLY
from sweeper.store.postgres import PostgresStore
from tests.pg_server import PgServer

from .conftest import MakeSpec, capped_sweep_with_a_retry, check_first_tries_counted

#: How a write that waited past the session's lock_timeout fails: the store failed (not
#: "cannot reach": the connection is fine, nothing is retried).
LOCK_TIMEOUT = r"store .* failed: canceling statement due to lock timeout"


def admin(server: PgServer, statement: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def kill_sessions(server: PgServer, user: str = "sweeper") -> None:
    """End every session of `user` but this one, as a server restart does."""
    admin(
        server,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE usename = '{user}' AND pid <> pg_backend_pid()",
    )


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = open_store(pg_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


def test_first_use_creates_the_schema_with_a_version_row(store: PostgresStore) -> None:
    store.set_current("abc12345")
    assert store.get_current() == "abc12345"
    assert store.schema_version == SCHEMA_VERSION


def test_an_older_store_is_migrated_on_first_use(pg_url: str) -> None:
    first = open_store(pg_url)
    first.set_current("abc12345")
    with first.transaction(immediate=True) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN host")
        conn.execute("ALTER TABLE sweeps ALTER COLUMN metric_name SET NOT NULL")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    first.close()
    again = open_store(pg_url)
    assert again.schema_version == SCHEMA_VERSION
    with again.transaction() as conn:
        assert conn.execute("SELECT host FROM runs").fetchall() == []
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'sweeps'"
            " AND column_name = 'metric_name'"
        ).fetchone()[0]
    assert nullable == "YES"
    assert again.get_current() == "abc12345"


def test_a_version_4_store_counts_each_sweeps_first_tries(
    pg_url: str, tmp_path: Path, make_spec: MakeSpec
) -> None:
    before = LocalBackend(Home(tmp_path, store=pg_url))
    capped = capped_sweep_with_a_retry(before, make_spec)
    empty = before.create_sweep(make_spec({"a": {"values": [1]}}, name="empty")).id
    with before.store.transaction(immediate=True) as conn:
        conn.execute("DROP TRIGGER runs_count_first_tries ON runs")
        conn.execute("DROP FUNCTION sweeper_count_first_try()")
        conn.execute("ALTER TABLE sweeps DROP COLUMN started")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    before.close()

    check_first_tries_counted(Home(tmp_path, store=pg_url), capped, empty)


def test_a_sweep_without_a_metric_is_stored(pg_url: str, make_spec: MakeSpec) -> None:
    backend = LocalBackend(Home(store=pg_url))
    sweep = backend.create_sweep(make_spec({"a": {"values": [1, 2]}}, metric=False))
    assert backend.get_sweep(sweep.id).metric_name is None
    backend.close()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    first = open_store(pg_url)
    with first.transaction(immediate=True) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    first.close()
    with pytest.raises(StoreError, match="newer sweeper"):
        open_store(pg_url).get_current()


def test_a_lost_connection_is_reopened_by_the_next_transaction(
    store: PostgresStore, pg_server: PgServer
) -> None:
    store.set_current("before00")
    kill_sessions(pg_server)
    store.set_current("after000")
    assert store.get_current() == "after000"


def test_a_connection_lost_inside_a_transaction_is_disconnected_and_retried(
    store: PostgresStore, pg_server: PgServer
) -> None:
    store.set_current("abc12345")
    calls: list[int] = []

    @retried
    def read_after_losing_the_first() -> str | None:
        calls.append(1)
        with store.transaction() as conn:
            if len(calls) == 1:
                conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            row = conn.execute("SELECT value FROM meta WHERE key = 'current_sweep'").fetchone()
        return None if row is None else str(row[0])

    assert read_after_losing_the_first() == "abc12345" and len(calls) == 2
    with pytest.raises(StoreDisconnected), store.transaction() as conn:
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def test_a_write_batch_on_a_lost_connection_is_disconnected_and_retried(
    store: PostgresStore, pg_server: PgServer
) -> None:
    """A batch cannot find its connection lost before it sends (BEGIN goes with it): it
    fails as lost mid-transaction, and `retried` runs it again on a new connection."""
    store.set_current("abc12345")
    kill_sessions(pg_server)
    insert = ("INSERT INTO meta (key, value) VALUES (?, ?)", ("batch", "1"))
    with pytest.raises(StoreDisconnected):
        store.write_batch([insert])
    assert store.get_current() == "abc12345"  # on a new connection
    kill_sessions(pg_server)
    calls: list[int] = []

    @retried
    def write() -> list[object]:
        calls.append(1)
        return store.write_batch([insert])

    assert write() == [] and len(calls) == 2
    with store.transaction() as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'batch'").fetchone()[0] == "1"


def prepared_batches(store: PostgresStore) -> list[str]:
    """The names of the write batches' statements prepared in this thread's session."""
    with store.transaction() as conn:
        rows = conn.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'sweeper%'")
        return [row[0] for row in rows]


def test_a_write_batch_prepares_its_statements_and_again_once_deallocated(
    store: PostgresStore,
) -> None:
    upsert = (
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value RETURNING value"
    )
    assert [row[0] for row in store.write_batch([(upsert, ("k", "1"))])] == ["1"]
    assert prepared_batches(store) == ["sweeper_batch_0"]
    # As psycopg does after a ROLLBACK (or a DROP, an ALTER) in a session where it prepared.
    with store.transaction() as conn:
        conn.execute("DEALLOCATE ALL")
    assert [row[0] for row in store.write_batch([(upsert, ("k", "2"))])] == ["2"]
    assert prepared_batches(store) == ["sweeper_batch_0"]


def test_a_server_that_stays_away_is_a_clear_error_after_backoff(
    pg_server: PgServer, pg_url: str
) -> None:
    role = f"r_{uuid.uuid4().hex[:8]}"
    admin(pg_server, f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'hunter2secret'")
    url = pg_url.replace("sweeper@", f"{role}:hunter2secret@")
    waits: list[float] = []
    store = PostgresStore(url, reconnect_s=0.5, sleep=waits.append)
    store.set_current("abc12345")
    admin(pg_server, f"ALTER ROLE {role} NOLOGIN")
    kill_sessions(pg_server, role)
    with pytest.raises(StoreError, match="cannot reach the PostgreSQL store") as raised:
        store.get_current()
    assert "for 0.5 s" in str(raised.value) and "hunter2secret" not in str(raised.value)
    assert len(waits) >= 2 and waits[-1] > waits[0]  # backed off


def test_the_password_is_never_printed(pg_url: str) -> None:
    url = pg_url.replace("sweeper@127.0.0.1:", "sweeper:hunter2secret@127.0.0.1:1")
    store = open_store(url)
    assert "hunter2secret" not in store.url
    with pytest.raises(StoreError) as raised:
        store.get_current()
    assert "hunter2secret" not in str(raised.value)
    result = CliRunner().invoke(app, ["--store", url, "status", "--json"])
    assert result.exit_code != 0
    assert "hunter2secret" not in result.output and "Traceback" not in result.output
    assert "cannot reach the PostgreSQL store" in result.output


def test_the_cli_runs_a_sweep_on_a_postgres_store(pg_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(
        "method: grid\nmetric: {name: val_accuracy, goal: maximize}\n"
        "parameters:\n  data_dir: {value: data}\n  lr: {values: [0.001, 0.0001]}\n"
    )
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["--store", pg_url, *args])
        assert result.exit_code == 0, result.output
        return result.output

    sweep_id = json.loads(cli("create", str(spec), "--backend", "local", "--json"))["id"]
    backend = LocalBackend(Home(store=pg_url), host="node-7")
    claim = backend.claim_run(sweep_id, "w1")
    assert claim.run is not None
    backend.finish_run(claim.run.id, "w1", {"val_accuracy": 0.5})
    assert [s["id"] for s in json.loads(cli("ls", "--json"))] == [sweep_id]
    (run,) = json.loads(cli("status", "--json"))["runs"]
    assert (run["state"], run["host"]) == ("finished", "node-7")
    assert "node-7" in cli("status")
    cli("pause")
    cli("resume")
    cli("cancel")
    assert backend.get_sweep(sweep_id).state == SweepState.canceled
    # The default SQLite store under the home knows nothing of it.
    assert LocalBackend(Home(store=f"sqlite:///{tmp_path}/other.db")).list_sweeps() == []


# -- the write locks: which writer waits for which ------------------------------------


def impatient(url: str) -> str:
    """`url` whose sessions give up waiting for a lock after 300 ms (SQLSTATE 55P03), so a
    write that would wait is an error rather than a hang."""
    return f"{url}%20-clock_timeout%3D300"


@pytest.fixture
def two_sweeps(pg_url: str, make_spec: MakeSpec) -> Iterator[tuple[LocalBackend, str, str]]:
    """A backend on an impatient store with two random-search sweeps."""
    backend = LocalBackend(Home(store=impatient(pg_url)))
    spec = make_spec({"a": {"distribution": "uniform", "min": 0, "max": 1}}, method="random")
    first, second = (backend.create_sweep(spec).id for _ in range(2))
    yield backend, first, second
    backend.close()


@pytest.mark.parametrize("spec_known", [False, True], ids=["first claims", "batched claims"])
def test_a_claim_waits_only_for_writers_of_its_own_sweep(
    two_sweeps: tuple[LocalBackend, str, str], pg_url: str, spec_known: bool
) -> None:
    backend, first, second = two_sweeps
    if spec_known:
        # Later claims of a random search on a continuous space are one write batch each.
        assert backend.claim_run(first, "w0").run and backend.claim_run(second, "w0").run
    holder = open_store(pg_url)
    with holder.transaction(immediate=True, scope=first):
        assert backend.claim_run(second, "w1").run is not None
        with pytest.raises(StoreError, match=LOCK_TIMEOUT):
            backend.claim_run(first, "w1")
    assert backend.claim_run(first, "w1").run is not None
    holder.close()


def test_a_run_reports_without_waiting_for_claims_of_its_sweep(
    two_sweeps: tuple[LocalBackend, str, str], pg_url: str
) -> None:
    backend, first, _ = two_sweeps
    running = [backend.claim_run(first, f"w{i}").run for i in range(3)]
    assert all(running)
    ids = [run.id for run in running if run is not None]
    holder = open_store(pg_url)
    with holder.transaction(immediate=True, scope=first):
        assert backend.heartbeat(ids[0], "w0") == Control.proceed
        assert backend.log_epoch(ids[0], "w0", {"epoch": 1, "val_accuracy": 0.5}) == Control.proceed
        assert backend.finish_run(ids[0], "w0", {"val_accuracy": 0.5})
        assert backend.fail_run(ids[1], "w1", "boom")
        assert backend.requeue_run(ids[2], "w2", "preempted")
        assert backend.reap_stale() == []
    holder.close()


def test_a_store_wide_writer_excludes_every_other(
    two_sweeps: tuple[LocalBackend, str, str], pg_url: str
) -> None:
    backend, first, second = two_sweeps
    run = backend.claim_run(first, "w1").run
    assert run is not None
    holder = open_store(pg_url)
    with holder.transaction(immediate=True):
        for write in (
            lambda: backend.claim_run(second, "w2"),
            lambda: backend.finish_run(run.id, "w1", {}),
            lambda: backend.set_sweep_state(second, SweepState.paused),
        ):
            with pytest.raises(StoreError, match=LOCK_TIMEOUT):
                write()
    assert backend.finish_run(run.id, "w1", {})
    holder.close()


def waiting_for_locks(server: PgServer) -> int:
    """How many lock requests are waiting on the server now."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    return int(row[0]) if row else 0


def test_the_last_run_ending_while_a_claim_waits_for_it_finishes_the_sweep(
    pg_url: str, pg_server: PgServer, make_spec: MakeSpec
) -> None:
    """A claim of a done sweep holds the sweep's lock and waits for its running runs'
    rows; the last run's end holds its row and then locks the sweep's row, never the
    sweep's lock (that order would be a deadlock, which PostgreSQL breaks by aborting one
    of them). Both commit, and the end finishes the sweep."""
    backend = LocalBackend(Home(store=pg_url))
    spec = make_spec(
        {"a": {"distribution": "uniform", "min": 0, "max": 1}}, method="random", run_cap=2
    )
    sweep = backend.create_sweep(spec).id
    first, last = (backend.claim_run(sweep, f"w{i}").run for i in range(2))
    assert first is not None and last is not None
    capped = backend.claim_run(sweep, "w2")
    assert (capped.run, capped.done, capped.reason) == (None, False, "run_cap 2 reached")
    assert backend.finish_run(first.id, "w0", {})
    claimed: list[Claim] = []
    ender = LocalBackend(Home(store=pg_url))
    with ender.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
        # finish_run, held open once it has locked the run's row.
        row = _RUNS.owned(conn, last.id, "w1", also=_SWEEP_OF_RUN)
        claimer = threading.Thread(target=lambda: claimed.append(backend.claim_run(sweep, "w2")))
        claimer.start()
        deadline = time.monotonic() + 30
        while waiting_for_locks(pg_server) == 0:
            assert claimer.is_alive() and time.monotonic() < deadline, "the claim never waited"
            time.sleep(0.01)
        _RUNS.finish(conn, row, {}, RunState.finished, None, ("val_accuracy", "maximize"), 1.0)
        sweep_end.finish_if_last(conn, sweep, 1.0)
    claimer.join()
    assert [(c.run, c.done) for c in claimed] == [(None, False)]
    assert backend.get_sweep(sweep).state == SweepState.finished
    assert backend.claim_run(sweep, "w2").done
    ender.close()
    backend.close()
