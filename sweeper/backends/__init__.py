"""Backends: where sweeps and runs live. `open_backend` picks one by name."""

from __future__ import annotations

from sweeper.backends.base import Backend
from sweeper.errors import BackendError, did_you_mean
from sweeper.paths import Home

#: Backend names a user can give with `--backend`.
BACKEND_NAMES = ("local", "wandb")


def open_backend(name: str, home: Home | None = None) -> Backend:
    """The backend called `name`, storing its local files under `home`.

    >>> import tempfile
    >>> open_backend("local", Home(tempfile.mkdtemp())).name
    'local'
    """
    if name == "local":
        # Imported here: the local backend imports the engine, which imports this package.
        from sweeper.backends.local import LocalBackend

        return LocalBackend(home)
    if name == "wandb":
        raise BackendError("the wandb backend is not available yet; use --backend local")
    raise BackendError(
        f"unknown backend {name!r}: expected one of {', '.join(BACKEND_NAMES)}{did_you_mean(name, BACKEND_NAMES)}"
    )
