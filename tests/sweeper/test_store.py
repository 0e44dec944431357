"""The SQLite store: schema versioning, permissions, transactions, busy waits, fork safety;
and a write batch (`Store.write_batch`) on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeper.backends.local import LocalBackend
from sweeper.errors import StoreError
from sweeper.paths import Home
from sweeper.store import SCHEMA_VERSION, SQLiteStore, open_store
from sweeper.store import sqlite as store_module
from sweeper.store.base import SCHEMA, Store

from .conftest import MakeSpec, capped_sweep_with_a_retry, check_first_tries_counted


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return Home(tmp_path / "home").store_path


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, store_path: Path) -> Iterator[Store]:
    """A new store on SQLite, then on PostgreSQL (a throwaway server)."""
    if request.param == "sqlite":
        opened: Store = SQLiteStore(store_path)
    else:
        opened = open_store(request.getfixturevalue("pg_url"))
    yield opened
    opened.close()


def meta(store: Store) -> dict[str, str]:
    """The store's meta rows but its schema version."""
    with store.transaction() as conn:
        rows = conn.execute("SELECT key, value FROM meta WHERE key <> 'schema_version'")
        return {row["key"]: row["value"] for row in rows}


def test_new_store_has_private_permissions_and_wal(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    store.set_current("abc12345")
    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    wal = store_path.with_name(store_path.name + "-wal")
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    with store.transaction() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version == SCHEMA_VERSION
    store.close()


def test_current_sweep_round_trips_across_instances(store_path: Path) -> None:
    first = SQLiteStore(store_path)
    assert first.get_current() is None
    first.set_current("one11111")
    first.set_current("two22222")
    assert SQLiteStore(store_path).get_current() == "two22222"


def test_newer_schema_is_refused_and_left_untouched(store_path: Path) -> None:
    SQLiteStore(store_path).set_current("abc12345")
    with sqlite3.connect(store_path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    before = store_path.read_bytes()
    with pytest.raises(StoreError, match="newer sweeper"):
        SQLiteStore(store_path).get_current()
    assert store_path.read_bytes() == before


def as_version_4(path: Path) -> None:
    """Turn the store at `path` into what sweeper wrote at schema version 4: no count of
    a sweep's first tries, no trigger keeping it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER runs_count_first_tries")
    conn.execute("ALTER TABLE sweeps DROP COLUMN started")
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.close()


def as_version_3(path: Path) -> None:
    """Turn the store at `path` into what sweeper wrote at schema version 3, when every
    sweep had a metric: sweeps.metric_name NOT NULL."""
    as_version_4(path)
    (create,) = [s for s in SCHEMA.format(rowid="", float="REAL").split(";") if " sweeps (" in s]
    old = (
        create.replace(" sweeps (", " sweeps_v3 (")
        .replace("metric_name TEXT,", "metric_name TEXT NOT NULL,")
        .replace(",\n    started INTEGER NOT NULL DEFAULT 0", "")
    )
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(old)
    conn.execute("INSERT INTO sweeps_v3 SELECT * FROM sweeps ORDER BY rowid")
    conn.execute("DROP TABLE sweeps")
    conn.execute("ALTER TABLE sweeps_v3 RENAME TO sweeps")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.close()


def test_a_version_3_store_gains_sweeps_without_a_metric(
    store_path: Path, make_spec: MakeSpec
) -> None:
    grid = {"a": {"values": [1, 2]}}
    before = LocalBackend(Home(store_path.parent, store=f"sqlite:///{store_path}"))
    first = before.create_sweep(make_spec(grid, name="first"))
    before.create_sweep(make_spec(grid, name="second"))
    run = before.claim_run(first.id, "w1").run
    assert run is not None
    before.close()
    as_version_3(store_path)
    with sqlite3.connect(store_path) as conn:
        columns = conn.execute("PRAGMA table_info(sweeps)").fetchall()
        assert [c[3] for c in columns if c[1] == "metric_name"] == [1]

    after = LocalBackend(Home(store_path.parent, store=f"sqlite:///{store_path}"))
    assert after.store.schema_version == SCHEMA_VERSION
    no_metric = after.create_sweep(make_spec(grid, metric=False, name="third"))
    assert [(s.name, s.metric_name) for s in after.list_sweeps()] == [
        ("third", None),
        ("second", "val_accuracy"),
        ("first", "val_accuracy"),
    ]
    assert after.get_sweep(no_metric.id).metric_name is None
    assert [r.id for r in after.list_runs(first.id)] == [run.id]
    with after.store.transaction() as conn:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    after.close()


def test_a_version_4_store_counts_each_sweeps_first_tries(
    store_path: Path, make_spec: MakeSpec
) -> None:
    before = LocalBackend(Home(store_path.parent, store=f"sqlite:///{store_path}"))
    capped = capped_sweep_with_a_retry(before, make_spec)
    empty = before.create_sweep(make_spec({"a": {"values": [1]}}, name="empty")).id
    before.close()
    as_version_4(store_path)

    check_first_tries_counted(
        Home(store_path.parent, store=f"sqlite:///{store_path}"), capped, empty
    )


@pytest.mark.parametrize(
    "content", [b"this is not a database at all, just text\n" * 50, os.urandom(4096)]
)
def test_corrupt_file_is_refused_and_left_untouched(store_path: Path, content: bytes) -> None:
    store_path.parent.mkdir(parents=True)
    store_path.write_bytes(content)
    with pytest.raises(StoreError, match="not a sweeper store"):
        SQLiteStore(store_path).get_current()
    assert store_path.read_bytes() == content
    assert sorted(p.name for p in store_path.parent.iterdir()) == ["store.db"]


def test_damaged_sqlite_file_is_a_store_error(store_path: Path) -> None:
    writer = SQLiteStore(store_path)
    writer.set_current("abc12345")
    # Closed first: SQLite shares a live connection's WAL index with later connections
    # of the same process, which would serve the old pages instead of the damaged ones.
    writer.close()
    # Keep the SQLite header, wreck the pages after it.
    data = bytearray(store_path.read_bytes())
    for sidecar in ("-wal", "-shm"):
        store_path.with_name(store_path.name + sidecar).unlink(missing_ok=True)
    data[100:] = b"\xff" * (len(data) - 100)
    store_path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=str(store_path)):
        SQLiteStore(store_path).get_current()


def test_home_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the store"):
        SQLiteStore(blocker / "home" / "store.db").get_current()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_read_only_home_is_a_store_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    try:
        with pytest.raises(StoreError):
            SQLiteStore(home / "store.db").set_current("abc12345")
    finally:
        home.chmod(0o700)


def test_transaction_rolls_back_on_error(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    store.set_current("kept1111")
    with pytest.raises(RuntimeError), store.transaction(immediate=True) as conn:
        conn.execute("UPDATE meta SET value = 'lost2222' WHERE key = 'current_sweep'")
        raise RuntimeError("boom")
    assert store.get_current() == "kept1111"


def test_sqlite_errors_become_store_errors_with_cause(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    with pytest.raises(StoreError, match="no such table") as info, store.transaction() as conn:
        conn.execute("SELECT * FROM no_such_table")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_nested_transaction_joins_the_outer_one(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    with pytest.raises(RuntimeError), store.transaction(immediate=True):
        store.set_current("inner111")
        raise RuntimeError("undo both")
    assert store.get_current() is None


def test_waits_for_another_writer_instead_of_failing(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short busy_timeout makes the jittered BEGIN IMMEDIATE retry do the waiting.
    monkeypatch.setattr(store_module, "_BUSY_TIMEOUT_MS", 20)
    SQLiteStore(store_path).set_current("first111")
    blocker = sqlite3.connect(store_path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    released.start()
    try:
        SQLiteStore(store_path).set_current("second22")
    finally:
        released.join()
        blocker.close()
    assert SQLiteStore(store_path).get_current() == "second22"


def test_store_locked_for_too_long_gives_a_clear_error(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_BUSY_TIMEOUT_MS", 10)
    monkeypatch.setattr(store_module, "_LOCK_PATIENCE_S", 0.2)
    SQLiteStore(store_path).set_current("first111")
    blocker = sqlite3.connect(store_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="stayed locked"):
            SQLiteStore(store_path).set_current("second22")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_forked_child_opens_its_own_connection(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    store.set_current("parent11")
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        code = 1
        try:
            store.set_current("child222")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_current() == "child222"


def test_each_thread_gets_its_own_connection(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    store.set_current("main1111")
    seen: list[str | None] = []
    worker = threading.Thread(target=lambda: seen.append(store.get_current()))
    worker.start()
    worker.join()
    assert seen == ["main1111"]
    store.close()


def test_a_second_connection_in_the_process_keeps_writes_visible(store_path: Path) -> None:
    # Regression: opening the db file by hand on every connect dropped this process's
    # POSIX locks, so later writes of the first connection went unseen by other processes.
    import subprocess
    import sys

    main = SQLiteStore(store_path)
    main.set_current("aaa")
    thread = threading.Thread(target=lambda: SQLiteStore(store_path).set_current("bbb"))
    thread.start()
    thread.join()
    main.set_current("ccc")
    code = f"from sweeper.store import SQLiteStore; print(SQLiteStore({str(store_path)!r}).get_current())"
    seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "ccc"


def test_a_write_batch_runs_in_order_and_returns_the_last_statements_rows(
    any_store: Store,
) -> None:
    rows = any_store.write_batch(
        [
            ("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1")),
            ("UPDATE meta SET value = ? WHERE key = ?", ("2", "a")),
            ("INSERT INTO meta (key, value) VALUES (?, ?) RETURNING key, value", ("b", "3")),
        ],
        scope="abc12345",
    )
    assert [(row["key"], row["value"]) for row in rows] == [("b", "3")]
    assert meta(any_store) == {"a": "2", "b": "3"}


@pytest.mark.parametrize(
    "value", ["it's 100% done; COMMIT; --", "?", "%s", "\\x00 \\", "ünïcode ✓", ""]
)
def test_a_write_batch_keeps_text_as_it_is(any_store: Store, value: str) -> None:
    rows = any_store.write_batch(
        [("INSERT INTO meta (key, value) VALUES (?, ?) RETURNING value", ("k", value))]
    )
    assert [row["value"] for row in rows] == [value] and meta(any_store) == {"k": value}


def test_a_write_batch_keeps_numbers_and_nulls_exactly(any_store: Store) -> None:
    numbers = (0.1 + 0.2, 1e-300, 1733094000.123456, 7)
    any_store.write_batch([("INSERT INTO meta (key, value) VALUES ('k', 'v')", ())])
    rows = any_store.write_batch(
        [
            (
                "UPDATE meta SET value = value WHERE key = ? AND ? IS NULL"
                " RETURNING CAST(? AS DOUBLE PRECISION) AS a, CAST(? AS DOUBLE PRECISION) AS b,"
                " CAST(? AS DOUBLE PRECISION) AS c, CAST(? AS INTEGER) AS d",
                ("k", None, *numbers),
            )
        ]
    )
    assert [tuple(row) for row in rows] == [numbers]


def test_a_write_batch_that_fails_leaves_nothing_written(any_store: Store) -> None:
    with pytest.raises(StoreError, match="no_such_table"):
        any_store.write_batch(
            [
                ("INSERT INTO meta (key, value) VALUES (?, ?)", ("lost", "1")),
                ("SELECT * FROM no_such_table", ()),
            ]
        )
    assert meta(any_store) == {}
    any_store.write_batch([("INSERT INTO meta (key, value) VALUES (?, ?)", ("kept", "1"))])
    assert meta(any_store) == {"kept": "1"}


def test_a_write_batch_inside_a_transaction_joins_it(any_store: Store) -> None:
    with pytest.raises(RuntimeError), any_store.transaction(immediate=True):
        any_store.write_batch([("INSERT INTO meta (key, value) VALUES (?, ?)", ("inner", "1"))])
        raise RuntimeError("undo both")
    assert meta(any_store) == {}
