"""Which backend a command means, and the sweep it names.

`open_backend` opens one by name; `pick_backend` chooses the one a new sweep goes to;
`locate` finds the backend that holds a sweep named by id, name or prefix (or the
current sweep, the last created), `locate_all` several sweeps on one backend; `list_all`
lists every sweep that this home knows. The local store keeps the current sweep and the
references of W&B sweeps, so all of this works offline. Backends are imported on use:
each pulls in heavy modules (the engine, wandb) that `sweeper --help` should not pay for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweeper.errors import BackendError, NotFoundError, SweeperError, did_you_mean
from sweeper.paths import Home

if TYPE_CHECKING:
    from sweeper.backends.base import Backend
    from sweeper.backends.local import LocalBackend
    from sweeper.models import Sweep

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
        from sweeper.backends.local import LocalBackend

        return LocalBackend(home)
    if name == "wandb":
        from sweeper.wandb.backend import WandbBackend

        return WandbBackend(home, entity=entity, project=project)
    raise BackendError(
        f"unknown backend {name!r}: expected one of {', '.join(BACKEND_NAMES)}{did_you_mean(name, BACKEND_NAMES)}"
    )


def pick_backend(requested: str | None) -> tuple[str, str]:
    """The backend a new sweep goes to, and why: `requested`, else wandb when wandb has
    credentials, else local.

    >>> pick_backend("local")
    ('local', '--backend')
    """
    if requested is not None:
        if requested not in BACKEND_NAMES:
            raise SweeperError(
                f"Unknown backend {requested!r}: expected one of {', '.join(BACKEND_NAMES)}."
            )
        return requested, "--backend"
    from sweeper.wandb.credentials import has_credentials

    if has_credentials():
        return "wandb", "W&B credentials are configured"
    return "local", "no W&B credentials are configured"


def local_backend(home: Home) -> LocalBackend:
    """The local backend, whose store also keeps the current sweep and the W&B references."""
    from sweeper.backends.local import LocalBackend

    return LocalBackend(home)


def current_id(home: Home) -> str | None:
    """The id of the current sweep (the last created, whatever its backend), or None."""
    return local_backend(home).store.get_current()


def locate(home: Home, ref: str | None) -> tuple[Backend, Sweep]:
    """The sweep named by `ref` (or the current one) and the backend that holds it: the
    local store, or W&B for a sweep recorded as a W&B reference (or given as entity/project/id).

    Raises NotFoundError for a sweep nobody holds, SweeperError when no sweep is given
    and none was created yet.
    """
    from sweeper.wandb.references import recorded

    local = local_backend(home)
    target = ref or local.store.get_current()
    if target is None:
        raise SweeperError(
            "No sweep given and none created yet: run `sweeper create sweeps/head_bayes.yaml` first."
        )
    if recorded(local.store, target):
        remote = open_backend("wandb", home)
        return remote, remote.get_sweep(target)
    try:
        return local, local.get_sweep(target)
    except NotFoundError:
        if "/" in target:
            remote = open_backend("wandb", home)
            return remote, remote.get_sweep(target)
        raise


def locate_all(home: Home, refs: Sequence[str]) -> tuple[Backend, list[Sweep]]:
    """The sweeps named by `refs` (the current one when there are none), all on the backend
    that holds the first: one report reads one backend."""
    backend, first = locate(home, refs[0] if refs else None)
    return backend, [first, *(backend.get_sweep(ref) for ref in refs[1:])]


def list_all(home: Home) -> list[Sweep]:
    """Every sweep this home knows, newest first: local ones and the W&B sweeps recorded here."""
    from sweeper.wandb.references import recorded

    local = local_backend(home)
    sweeps = local.list_sweeps()
    if recorded(local.store):
        sweeps = sorted(
            sweeps + open_backend("wandb", home).list_sweeps(),
            key=lambda s: s.created_at,
            reverse=True,
        )
    return sweeps
