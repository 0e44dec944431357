"""The W&B sweeps a home knows: references (entity, project, id, name) kept in the local
store's `wandb_sweeps` table, and how a user's reference (id, name or id prefix) picks one.
Reads only the local store, so `sweeper` can tell which backend holds a sweep offline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from sweeper.store import Store
from sweeper.wandb.client import SweepRef


class _Keyed(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


#: A recorded sweep's row: an `sqlite3.Row`, or a dict with the same keys.
_Row = TypeVar("_Row", bound=_Keyed)


def sweep_ref(row: Any) -> SweepRef:
    """Where a recorded sweep lives on W&B."""
    return SweepRef(entity=row["entity"], project=row["project"], id=row["id"])


def matching(rows: Sequence[_Row], ref: str) -> list[_Row]:
    """The recorded sweeps `ref` names: by id, else by name, else by an id prefix of 3 or
    more characters (the first of these that matches anything).

    >>> rows = [{"id": "abc123", "name": "head"}, {"id": "abd456", "name": "full"}]
    >>> [r["id"] for r in matching(rows, "head")], [r["id"] for r in matching(rows, "ab")]
    (['abc123'], [])
    """
    for matches in (
        [r for r in rows if r["id"] == ref],
        [r for r in rows if r["name"] == ref],
        [r for r in rows if len(ref) >= 3 and r["id"].startswith(ref)],
    ):
        if matches:
            return matches
    return []


def recorded(store: Store, ref: str | None = None) -> bool:
    """Whether the store holds W&B sweep references: any at all, or one that `ref` names
    (as `WandbBackend.get_sweep` resolves it)."""
    with store.transaction() as conn:
        rows = conn.execute("SELECT id, name FROM wandb_sweeps").fetchall()
    if ref is None:
        return bool(rows)
    return bool(matching(rows, ref))
