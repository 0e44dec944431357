"""The project's error tree: every error a user can cause is a `SweeperError`.

The CLI catches `SweeperError`, prints its message as one paragraph without a
traceback and exits with `exit_code`. Anything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SweeperError(Exception):
    """An error the user can fix; its message says what was found and what was expected."""

    exit_code: int = 2


class SpecError(SweeperError):
    """A sweep spec that cannot be loaded or validated; carries every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            message = f"{source}: {problems[0]}"
        else:
            listed = "\n".join(f"  - {p}" for p in problems)
            message = f"{source}: {len(problems)} problems:\n{listed}"
        super().__init__(message)


class NotFoundError(SweeperError):
    """A sweep or run id that the store does not know."""


class StoreError(SweeperError):
    """The store cannot be opened or written (corrupt file, newer schema, read-only home)."""


class BackendError(SweeperError):
    """A backend that is unavailable or misconfigured (no W&B key, unreachable server)."""


class AgentError(SweeperError):
    """The agent cannot start or had to stop (no such GPU, too many consecutive failures)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest choice, or '' when none is close.

    >>> did_you_mean("learning_rat", ["lr", "learning_rate"])
    ' (did you mean "learning_rate"?)'
    """
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
