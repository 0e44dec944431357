"""How a command names a sweep among those a store holds: its id, its unique name, or a
prefix of its id (3 characters or more), as `sweeper status abc` does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from sweeper.errors import NotFoundError, did_you_mean

#: A sweep reference shorter than this is never matched as an id prefix.
MIN_PREFIX = 3


class _Keyed(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


#: A sweep's row: an `sqlite3.Row`, a store row, or a dict with `id` and `name`.
_Row = TypeVar("_Row", bound=_Keyed)


def matching(rows: Sequence[_Row], ref: str) -> list[_Row]:
    """The sweeps `ref` names: by id, else by name, else by an id prefix of `MIN_PREFIX` or
    more characters (the first of these that matches anything).

    >>> rows = [{"id": "abc123", "name": "head"}, {"id": "abd456", "name": "full"}]
    >>> [r["id"] for r in matching(rows, "head")], [r["id"] for r in matching(rows, "ab")]
    (['abc123'], [])
    """
    for matches in (
        [r for r in rows if r["id"] == ref],
        [r for r in rows if r["name"] == ref],
        [r for r in rows if len(ref) >= MIN_PREFIX and r["id"].startswith(ref)],
    ):
        if matches:
            return matches
    return []


def resolve_among(
    rows: Sequence[_Row], ref: str, what: str, where: str, empty: str = "", tail: str = ""
) -> _Row:
    """The one sweep of `rows` that `ref` names.

    Raises:
        NotFoundError: none or several match, in one sentence: `what` is the kind of sweep
            ("sweep", "W&B sweep") and `where` where it was looked for; with none, the near
            misses, or `empty` when there are no sweeps at all, then `tail`.

    >>> resolve_among([{"id": "abc123", "name": "head"}], "hed", "sweep", "in the store")
    Traceback (most recent call last):
    sweeper.errors.NotFoundError: no sweep 'hed' in the store (did you mean "head"?)
    """
    matches = matching(rows, ref)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        ids = ", ".join(r["id"] for r in matches)
        raise NotFoundError(f"{ref!r} matches {len(matches)} {what}s ({ids}); give the sweep id")
    known = [r["id"] for r in rows] + [r["name"] for r in rows]
    hint = did_you_mean(ref, known) or (empty if not rows else "")
    raise NotFoundError(f"no {what} {ref!r} {where}{hint}{tail}")
