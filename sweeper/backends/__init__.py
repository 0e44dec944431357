"""Backends: where sweeps and runs live. `open_backend` picks one by name."""

from __future__ import annotations

from sweeper.backends.base import Backend
from sweeper.errors import BackendError, did_you_mean
from sweeper.paths import Home

#: Backend names a user can give with `--backend`.
BACKEND_NAMES = ("local", "wandb")


def open_backend(
    name: str, home: Home | None = None, *, entity: str | None = None, project: str | None = None
) -> Backend:
    """The backend called `name`, storing its local files under `home`.

    `entity` and `project` say where the wandb backend creates sweeps (default: wandb's
    WANDB_ENTITY / WANDB_PROJECT); the local backend has no use for them.

    >>> import tempfile
    >>> open_backend("local", Home(tempfile.mkdtemp())).name
    'local'
    """
    if name == "local":
        # Imported on use: each backend pulls in heavy modules (the engine, wandb).
        from sweeper.backends.local import LocalBackend

        return LocalBackend(home)
    if name == "wandb":
        from sweeper.wandb.backend import WandbBackend

        return WandbBackend(home, entity=entity, project=project)
    raise BackendError(
        f"unknown backend {name!r}: expected one of {', '.join(BACKEND_NAMES)}{did_you_mean(name, BACKEND_NAMES)}"
    )
