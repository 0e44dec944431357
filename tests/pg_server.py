"""A throwaway PostgreSQL server for tests and benchmarks: initdb in a temp folder, a free
loopback port, the unix socket in the same folder, stopped and removed at the end.

The server refuses to run as root, and CI runs as root: then initdb and pg_ctl run as an
unprivileged user (`postgres` when the server package created it, else `nobody`) who owns
the folder. `make install` installs the server package where no initdb is found.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

#: Where Debian and Ubuntu put the server programs (not on PATH).
_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PgUnavailable(RuntimeError):
    """No PostgreSQL server can be started on this machine; the message says why."""


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob(_BIN_GLOB), key=lambda p: int(Path(p).parent.name or 0))
    if versions and Path(versions[-1], "initdb").exists():
        return Path(versions[-1])
    raise PgUnavailable(
        "no PostgreSQL server programs (initdb, pg_ctl) on PATH or in "
        f"{_BIN_GLOB}: run `make install` (it installs Debian's postgresql package as root)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster owned by the test session; `durable=False` turns fsync off
    (tests), `durable=True` keeps the server's defaults (benchmarks).

    >>> server = PgServer()  # doctest: +SKIP
    >>> server.start(); server.url("test_a")  # doctest: +SKIP
    'postgresql://sweeper@127.0.0.1:54321/postgres?options=-csearch_path%3Dtest_a'
    """

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable
        self.bin = _bin_dir()
        self.folder = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            names = [p.pw_name for p in pwd.getpwall()]
            self.user = "postgres" if "postgres" in names else "nobody"
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PgUnavailable(
                f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}"
                + self._log_tail()
            )
        return done

    def _log_tail(self) -> str:
        log = self.folder / "server.log"
        return f"\nserver log:\n{log.read_text()[-2000:]}" if log.exists() else ""

    def start(self) -> None:
        """initdb (first time) and start the server; wait until it takes connections."""
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "sweeper", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=200"
        if not self.durable:
            # Test data: durability is not worth the fsyncs on a shared CI disk.
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `mode` as pg_ctl's (`fast` ends the sessions, `immediate` crashes)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop and start again, ending every session, as a server restart mid-sweep does."""
        self.stop()
        self.start()

    def url(self, schema: str | None = None) -> str:
        """The store URL of the cluster's `postgres` database; with `schema`, a store of its own in it."""
        base = f"postgresql://sweeper@127.0.0.1:{self.port}/postgres"
        return base if schema is None else f"{base}?options=-csearch_path%3D{schema}"

    def new_store_url(self) -> str:
        """The URL of a fresh, empty store (a new schema), so tests never share tables."""
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return self.url(schema)

    def close(self) -> None:
        """Stop the server if it runs and remove its folder."""
        with contextlib.suppress(PgUnavailable):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
