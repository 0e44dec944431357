"""The store: where sweeps, runs and their metrics live, chosen by a store URL.

`sqlite:///path` (the default, `.sweeper/store.db`) serves the agents of one host;
`postgresql://user@host:port/database` serves agents on many (as Optuna's `storage=`).
`sweeper.store.base` states what every store guarantees; one module per database.
"""

from __future__ import annotations

from sweeper.errors import StoreError, did_you_mean
from sweeper.store.base import SCHEMA_VERSION, Store, StoreDisconnected, retried
from sweeper.store.sqlite import SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "SQLiteStore",
    "Store",
    "StoreDisconnected",
    "open_store",
    "retried",
]

_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")


def open_store(url: str) -> Store:
    """The store at `url`: `sqlite:///relative/path`, `sqlite:////absolute/path`, or
    `postgresql://user[:password]@host[:port]/database`.

    >>> import tempfile
    >>> open_store(f"sqlite:///{tempfile.mkdtemp()}/store.db").url.endswith("/store.db")
    True
    >>> open_store("mysql://db/sweeps")
    Traceback (most recent call last):
    ...
    sweeper.errors.StoreError: unsupported store URL 'mysql://db/sweeps': sweeper stores sweeps in sqlite:///path or postgresql://user@host:port/database.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return SQLiteStore(rest[1:])
    if sep and scheme in _SCHEMES[1:]:
        from sweeper.store.postgres import PostgresStore

        return PostgresStore(url)
    from sweeper.store.postgres import masked_url

    raise StoreError(
        f"unsupported store URL {masked_url(url)!r}: sweeper stores sweeps in sqlite:///path "
        f"or postgresql://user@host:port/database{did_you_mean(scheme, _SCHEMES)}."
    )
