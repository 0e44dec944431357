"""Environment variables set for a block of code and put back after it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str], restored: Iterable[str] = ()) -> Iterator[None]:
    """Set `values` in `os.environ` for the block; after it, every variable named in
    `values` or `restored` is as it was before (set to its old value, or unset).

    `restored` names variables that code in the block may set (wandb.sweep sets
    WANDB_ENTITY and WANDB_PROJECT for a `wandb.agent` that would follow).

    >>> with scoped_environ({"SWEEPER_DOCTEST": "1"}, restored=["SWEEPER_DOCTEST_2"]):
    ...     os.environ["SWEEPER_DOCTEST_2"] = "set in the block"
    ...     os.environ["SWEEPER_DOCTEST"]
    '1'
    >>> "SWEEPER_DOCTEST" in os.environ, "SWEEPER_DOCTEST_2" in os.environ
    (False, False)
    """
    saved = {name: os.environ.get(name) for name in [*values, *restored]}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
