"""The PostgreSQL store: one database shared by agents on many hosts.

A thin dialect over psycopg 3 rather than SQLAlchemy Core: the backends' SQL is already
portable (qmark placeholders, `ON CONFLICT` upserts, `rowid` order), so what differs
between the two databases fits in this module (placeholder style, the write lock, the
float and rowid column types, error texts), and the SQLite path keeps running its
statements with no layer in between. SQLAlchemy would have meant rewriting every query
as expressions, or passing them through `text()` for nothing.

The write locks: an immediate transaction starts with transaction-scoped advisory locks,
PostgreSQL's counterpart of SQLite's `BEGIN IMMEDIATE`, taken in one round trip with its
`BEGIN`. A store-wide writer (creating a sweep, the W&B backend) takes the store key
exclusively and so runs alone, as on SQLite; every other writer takes it shared, and a
scoped one (a sweep's claims and state changes) also takes its scope's key exclusively,
so the claims of one sweep run one at a time and read what the previous one committed
(run_cap, dedupe on discrete spaces, no duplicate), while those of another sweep do not
wait for them. A `ROWS_ONLY` writer (ending a run, a heartbeat, a logged epoch) takes
no other advisory lock: it locks the run's row (`FOR NO KEY UPDATE`, the `LOCK_ROWS`
marker) and re-checks it under that lock, READ COMMITTED, so the agents of one sweep
report in parallel and their commits share the WAL flushes. The order every writer
takes its locks in (store key, scope key, run rows, sweep row) is what keeps them free
of deadlocks; `sweeper.backends.local` says where each guarantee is kept. Readers never
wait (`REPEATABLE READ` snapshots). Measured: BENCHMARKS.md, issue 19.

A connection lost between transactions (the server restarted, a network blip) is
re-opened with jittered backoff for `reconnect_s`, then reported as a `StoreError`; one
lost inside a transaction comes out as `StoreDisconnected` (see `sweeper.store.retried`).
The password of the URL never appears in a message: `url` masks it.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sweeper.errors import StoreError
from sweeper.store.base import (
    LOCK_ROWS,
    ROWS_ONLY,
    SCHEMA_VERSION,
    SKIP_LOCKED,
    Statement,
    Store,
    StoreDisconnected,
)

if TYPE_CHECKING:
    import psycopg

#: The advisory lock every writer takes, exclusively for a store-wide write and shared
#: for the others: "sweeper" in ASCII.
_WRITE_LOCK_KEY = 0x73776565706572
#: The first of the two int4 keys of a scope's advisory lock ("sw"); the second is a hash
#: of the scope. Two-key locks never collide with the one-key store lock.
_SCOPE_LOCK_CLASS = 0x7377
#: What the row-lock markers of `sweeper.store.base` become. NO KEY UPDATE: the rows'
#: keys never change, and inserts referring to them (FOREIGN KEY) need not wait.
_ROW_LOCKS = ((SKIP_LOCKED, " FOR NO KEY UPDATE SKIP LOCKED"), (LOCK_ROWS, " FOR NO KEY UPDATE"))
#: `sweeps.started` kept by the database (see `sweeper.store.base.FIRST_TRIES`): a row
#: trigger calls a function in PostgreSQL, which names the tables of the schema the
#: session's search path finds first, as every statement does.
_COUNT_FIRST_TRIES = (
    "CREATE OR REPLACE FUNCTION sweeper_count_first_try() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN UPDATE sweeps SET started = started + 1 WHERE id = NEW.sweep_id;"
    " RETURN NULL; END $$",
    # Dropped first (`_trigger_drops`), not CREATE OR REPLACE TRIGGER: servers before
    # PostgreSQL 14 lack it.
    "CREATE TRIGGER runs_count_first_tries AFTER INSERT ON runs FOR EACH ROW"
    " WHEN (NEW.retry_of IS NULL) EXECUTE FUNCTION sweeper_count_first_try()",
)
#: How long a lost connection is re-tried before the store is reported unreachable.
RECONNECT_S = 60.0
#: Longest sleep between reconnection attempts.
_MAX_BACKOFF_S = 2.0
#: A server that does not answer a new connection within this long is unreachable.
_CONNECT_TIMEOUT_S = 10


def masked_url(url: str) -> str:
    """`url` without its password, fit to print.

    >>> masked_url("postgresql://ada:s3cret@db.lab:5432/sweeps")
    'postgresql://ada@db.lab:5432/sweeps'
    >>> masked_url("postgresql://db.lab/sweeps?password=s3cret&sslmode=require")
    'postgresql://db.lab/sweeps?sslmode=require'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, where = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{where}"
    query = "&".join(
        item for item in parts.query.split("&") if item and not item.startswith("password=")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@functools.lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """A qmark statement in psycopg's placeholder style, its row-lock markers as clauses.

    >>> _pyformat("SELECT 1 FROM runs WHERE id = ? AND reason LIKE 'x%'")
    "SELECT 1 FROM runs WHERE id = %s AND reason LIKE 'x%%'"
    >>> _pyformat(f"SELECT id FROM runs WHERE state = ?{SKIP_LOCKED}")
    'SELECT id FROM runs WHERE state = %s FOR NO KEY UPDATE SKIP LOCKED'
    """
    return _row_locks(sql.replace("%", "%%").replace("?", "%s"))


@functools.lru_cache(maxsize=512)
def _row_locks(sql: str) -> str:
    """`sql` with the row-lock markers as PostgreSQL's locking clauses."""
    for marker, clause in _ROW_LOCKS:
        sql = sql.replace(marker, clause)
    return sql


def _write_locks(scope: str | None) -> list[str]:
    """The statements that take an immediate transaction's advisory locks (see the module
    docstring): constants, so they go with the BEGIN in one round trip.

    >>> _write_locks(None)
    ['SELECT pg_advisory_xact_lock(32500899698992498)']
    >>> _write_locks("abc12345")
    ['SELECT pg_advisory_xact_lock_shared(32500899698992498)', 'SELECT pg_advisory_xact_lock(29559, 1727894133)']
    """
    if scope is None:
        return [f"SELECT pg_advisory_xact_lock({_WRITE_LOCK_KEY})"]
    shared = f"SELECT pg_advisory_xact_lock_shared({_WRITE_LOCK_KEY})"
    if scope == ROWS_ONLY:
        return [shared]
    # crc32, not hash(): every process on every host must derive the same key.
    key = zlib.crc32(scope.encode()) - (1 << 31)
    return [shared, f"SELECT pg_advisory_xact_lock({_SCOPE_LOCK_CLASS}, {key})"]


class Row(tuple[Any, ...]):
    """A row that indexes by column name and by position, as `sqlite3.Row` does."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _rows(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    """psycopg's row factory for `Row`. The names come from the result itself: `description`
    builds a Column object per column and statement, ~5 % of a claim's client CPU."""
    result = cursor.pgresult
    count = 0 if result is None else result.nfields
    names = {result.fname(i).decode(): i for i in range(count)}
    return lambda values: Row(values, names)


class _Connection:
    """A psycopg connection that takes the backends' qmark statements."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        # The names of the write batches' statements prepared in this session, by SQL
        # (None: the server could not prepare it alone).
        self._prepared: dict[str, str | None] = {}

    def batch(self, statements: Sequence[Statement], locks: list[str]) -> list[Row]:
        """Run `statements` after the `locks` statements, with BEGIN and COMMIT, as one
        query string, and return the rows of the last one. The simple query protocol
        takes no parameters beside the text: psycopg's client-side cursor quotes them in,
        as the arguments of the statements' EXECUTE (`call`)."""
        from psycopg import ClientCursor, pq

        calls = [self.call(sql, len(parameters)) for sql, parameters in statements]
        cursor = ClientCursor(self.raw, row_factory=_rows)
        cursor.execute(
            "; ".join(["BEGIN", *locks, *calls, "COMMIT"]),
            [value for _, parameters in statements for value in parameters],
        )
        # A result per statement: the last one's is the one before COMMIT's.
        for _ in range(len(locks) + len(statements)):
            cursor.nextset()
        # A statement without RETURNING has no rows to fetch: asked of the result, as
        # `description` builds a Column object per column and call.
        result = cursor.pgresult
        returned = result is not None and result.status == pq.ExecStatus.TUPLES_OK
        return cursor.fetchall() if returned else []

    def forget_prepared(self) -> None:
        """Forget the statements `call` prepared: the server has deallocated them."""
        self._prepared.clear()

    def call(self, sql: str, count: int) -> str:
        """`sql` (a qmark statement with `count` parameters) as a write batch sends it,
        with psycopg's placeholders for its arguments: an EXECUTE of it prepared in this
        session on first use (its own round trip, outside any transaction), so the
        server parses and plans it once, as psycopg's own prepared statements are. A
        statement whose parameter types its text does not fix (`? IS NULL`) cannot be
        prepared alone: it goes as it is."""
        import psycopg

        if sql not in self._prepared:
            name: str | None = f"sweeper_batch_{len(self._prepared)}"
            numbers = itertools.count(1)
            numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", _row_locks(sql))
            try:
                self.raw.execute(f"PREPARE {name} AS {numbered}", prepare=False)
            except psycopg.Error as e:
                if isinstance(e, psycopg.OperationalError) and _lost(e):
                    raise
                name = None
            self._prepared[sql] = name
        name = self._prepared[sql]
        if name is None:
            return _pyformat(sql)
        return f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"

    def execute(self, sql: str, parameters: Sequence[Any] | None = None, /) -> Any:
        if parameters is None:
            return self.raw.execute(_row_locks(sql))
        return self.raw.execute(_pyformat(sql), tuple(parameters))

    def close(self) -> None:
        self.raw.close()


class PostgresStore(Store):
    """A PostgreSQL database shared by sweeper processes on any number of hosts.

    Args:
        url: `postgresql://user[:password]@host[:port]/database[?options]`, as libpq
            reads it (the password may also come from ~/.pgpass or PGPASSWORD).
        reconnect_s: how long a lost connection is re-tried.
        sleep: waits between reconnection attempts (tests pass a fake).
    """

    def __init__(
        self,
        url: str,
        reconnect_s: float = RECONNECT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self._dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.reconnect_s = reconnect_s
        self._sleep = sleep
        self._connected_once = False

    @property
    def url(self) -> str:
        return masked_url(self._dsn)

    # -- connections ----------------------------------------------------------------

    def _open(self) -> _Connection:
        import psycopg

        # A failure to connect comes out as psycopg's OperationalError, for `_start` to retry.
        raw = psycopg.connect(
            self._dsn,
            autocommit=True,
            row_factory=_rows,
            connect_timeout=_CONNECT_TIMEOUT_S,
            application_name="sweeper",
        )
        conn = _Connection(raw)
        try:
            recorded = self._check_version(self._recorded_version(conn))
            if recorded != SCHEMA_VERSION:
                self._begin(conn, immediate=True)
                try:
                    # Read again under the lock: another process may have just migrated.
                    recorded = self._check_version(self._recorded_version(conn))
                    self._create_schema(
                        conn, recorded, rowid="rowid BIGSERIAL,", float_type="DOUBLE PRECISION"
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if not raw.closed:
                        conn.execute("ROLLBACK")
                    raise
        except psycopg.Error as e:
            conn.close()
            raise self._explain(e) from e
        except StoreError:
            conn.close()
            raise
        self._connected_once = True
        return conn

    def _start(self, immediate: bool, scope: str | None) -> Any:
        """This thread's connection inside a new transaction; a connection that was lost
        is re-opened with jittered backoff for `reconnect_s`."""
        return self._reconnecting(lambda conn: self._begin(conn, immediate, scope))

    def write_batch(self, statements: Sequence[Statement], scope: str | None = None) -> list[Any]:
        """As `Store.write_batch`: BEGIN, the write locks, `statements` and COMMIT go as one
        query string (`_Connection.batch`), so the locks are never held while this
        process waits to be scheduled between two round trips (16 claimers on 2 cores:
        1.14x the claims/s, BENCHMARKS.md)."""
        import psycopg

        if self._open_transaction() is not None:
            return super().write_batch(statements, scope)
        # A connection lost since its last use fails the batch as StoreDisconnected, and
        # `retried` runs the write again on a new one.
        conn = self._reconnecting()
        with self._ended(conn):
            try:
                return conn.batch(statements, _write_locks(scope))
            except psycopg.errors.InvalidSqlStatementName:
                # psycopg deallocates every statement prepared in its session after a
                # ROLLBACK (or a DROP, an ALTER), ours too. The batch failed whole: it
                # goes again, its statements prepared anew.
                conn.execute("ROLLBACK")
                conn.forget_prepared()
                return conn.batch(statements, _write_locks(scope))

    def _reconnecting(
        self, begin: Callable[[_Connection], None] = lambda conn: None
    ) -> _Connection:
        """This thread's connection, after `begin` ran on it; a connection that was lost,
        or that `begin` finds lost, is re-opened with jittered backoff for `reconnect_s`."""
        import psycopg

        deadline = time.monotonic() + self.reconnect_s
        delay = 0.1
        while True:
            conn = None
            try:
                conn = self._connection()
                begin(conn)
                return conn
            except psycopg.Error as e:
                if conn is not None and not _lost(e):
                    # The server refused `begin`, not the connection (psycopg counts a lock
                    # timeout as an OperationalError too): nothing to wait for.
                    self._abort(conn)
                    raise self._explain(e) from e
                if not isinstance(e, psycopg.OperationalError):
                    raise self._explain(e) from e
                self._discard()
                # A first connection that fails is a wrong URL or a server that is down:
                # say so now rather than after a minute of retries.
                if not self._connected_once or time.monotonic() > deadline:
                    raise self._unreachable(e) from e
                self._sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, _MAX_BACKOFF_S)

    def _recorded_version(self, conn: _Connection) -> str | None:
        if conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _columns(self, conn: _Connection, table: str) -> set[str]:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {row[0] for row in rows}

    def _drop_not_null(self, conn: _Connection, table: str, column: str, create: str) -> None:
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")

    def _triggers(self) -> list[str]:
        return list(_COUNT_FIRST_TRIES)

    def _trigger_drops(self) -> list[str]:
        return ["DROP TRIGGER IF EXISTS runs_count_first_tries ON runs"]

    def _in_transaction(self, conn: _Connection) -> bool:
        from psycopg.pq import TransactionStatus

        return conn.raw.info.transaction_status != TransactionStatus.IDLE

    def _begin(self, conn: _Connection, immediate: bool, scope: str | None = None) -> None:
        if immediate:
            # One round trip for all (constants, so no parameter; never prepared, as a
            # prepared statement holds one command).
            conn.raw.execute("; ".join(["BEGIN", *_write_locks(scope)]), prepare=False)
        else:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    # -- errors ---------------------------------------------------------------------

    def _translate(self, error: Exception) -> StoreError | None:
        import psycopg

        if not isinstance(error, psycopg.Error):
            return None
        if isinstance(error, psycopg.OperationalError) and _lost(error):
            self._discard()
            return StoreDisconnected(
                f"lost the connection to the PostgreSQL store {self.url} in the middle of a "
                f"transaction, which was rolled back: {self._scrub(error)}"
            )
        return self._explain(error)

    def _explain(self, error: Exception) -> StoreError:
        return StoreError(f"the PostgreSQL store {self.url} failed: {self._scrub(error)}")

    def _unreachable(self, error: Exception) -> StoreError:
        waited = f" for {self.reconnect_s:g} s" if self._connected_once else ""
        return StoreError(
            f"cannot reach the PostgreSQL store {self.url}{waited}: {self._scrub(error)}. "
            "Check that the server is up and the URL (--store / SWEEPER_STORE) is right."
        )

    def _scrub(self, error: Exception) -> str:
        """The driver's message on one line, with the URL's password cut out should the
        driver ever quote it."""
        text = " ".join(str(error).split())
        password = urlsplit(self._dsn).password
        return text.replace(password, "***") if password else text


def _lost(error: Exception) -> bool:
    """Whether `error` means the connection is gone (rather than a statement failed)."""
    sqlstate = getattr(error, "sqlstate", None)
    # Class 08 is connection exceptions; 57P01-03 the server shutting down or restarting.
    return sqlstate is None or sqlstate.startswith("08") or sqlstate.startswith("57P")
