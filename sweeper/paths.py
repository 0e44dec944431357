"""`Home`: the one owner of every generated path under `.sweeper/`.

Paths are built from sweep and run ids, which are checked to be plain names, so a
hostile sweep name can never place a file outside the home.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from sweeper.errors import SweeperError

HOME_ENV = "SWEEPER_HOME"
#: The store URL when `--store` is not given; agent workers inherit it.
STORE_ENV = "SWEEPER_STORE"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home directory: `home` if given, else `$SWEEPER_HOME`, else `./.sweeper`."""
    chosen = home or os.environ.get(HOME_ENV) or ".sweeper"
    return Path(chosen).expanduser().resolve()


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` and any missing parents with user-only permissions (0700); return it.

    `Path.mkdir(parents=True, mode=...)` gives the parents the umask's mode instead, and logs
    and checkpoints can hold configs and error texts that other users should not read.

    >>> import tempfile; folder = private_dir(Path(tempfile.mkdtemp()) / "logs" / "s1")
    >>> oct(folder.stat().st_mode & 0o777), oct(folder.parent.stat().st_mode & 0o777)
    ('0o700', '0o700')
    """
    folder = Path(path)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for parent in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            parent.mkdir(mode=0o700)
    return folder


def safe_id(value: str) -> str:
    """Return `value` if it can be used as one path component, else raise SweeperError."""
    if not _SAFE_ID.match(value):
        raise SweeperError(
            f"{value!r} cannot be used in a file name: ids are letters, digits, '-' and '_'."
        )
    return value


class Home:
    """Every file sweeper writes lives under one `Home` directory.

    >>> Home("/tmp/h").checkpoint_dir("abc12345", "run00001").as_posix()
    '/tmp/h/checkpoints/abc12345/run00001'
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, store: str | None = None
    ) -> None:
        self.root = resolve_home(root)
        #: The store URL given explicitly (`--store`), if any.
        self.store = store

    def ensure(self) -> Path:
        """Create the home with user-only permissions and return it."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root

    @property
    def store_path(self) -> Path:
        """This host's SQLite file: the default store, and the W&B backend's bookkeeping."""
        return self.root / "store.db"

    @property
    def store_url(self) -> str:
        """Where the local backend keeps sweeps: the `store` given, else `$SWEEPER_STORE`,
        else the SQLite file under the home. Logs, checkpoints and caches stay under the
        home whatever the store, so hosts sharing one PostgreSQL store each keep their own.

        >>> Home("/tmp/h", store="postgresql://ada@db/sweeps").store_url
        'postgresql://ada@db/sweeps'
        """
        return self.store or os.environ.get(STORE_ENV) or f"sqlite:///{self.store_path}"

    @property
    def cache_dir(self) -> Path:
        """Decoded-image and frozen-feature caches, shared by every run of every sweep."""
        return self.root / "cache"

    @property
    def wandb_dir(self) -> Path:
        return self.root / "wandb"

    def log_path(self, sweep_id: str, run_id: str) -> Path:
        return self.root / "logs" / safe_id(sweep_id) / f"{safe_id(run_id)}.log"

    def agent_log_path(self, sweep_id: str) -> Path:
        return self.root / "logs" / safe_id(sweep_id) / "agent.log"

    def checkpoint_dir(self, sweep_id: str, run_id: str) -> Path:
        return self.root / "checkpoints" / safe_id(sweep_id) / safe_id(run_id)

    def launch_dir(self, sweep_id: str) -> Path:
        """submitit's folder for the agent jobs `sweeper launch` submitted: logs, pickles."""
        return self.root / "launch" / safe_id(sweep_id)

    def report_dir(self, sweep_id: str) -> Path:
        return self.root / "reports" / safe_id(sweep_id)
