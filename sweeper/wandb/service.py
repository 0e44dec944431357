"""Leaving a process that used wandb without waiting on wandb-core forever.

wandb tears its service process (wandb-core) down at interpreter exit and waits for it
with no bound (`ServiceConnection.teardown` -> `proc.wait()`). When a request to an
unreachable or rate-limiting server was abandoned on our side, that wait was seen to hang
for minutes with wandb-core idle (a `sweeper create --backend wandb` under 429, loaded
machine). A command that is done with W&B calls `teardown_within` instead: the same
teardown, bounded. wandb-core watches its parent's pid and exits when the parent does, so
leaving without the teardown strands nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import NoReturn

log = logging.getLogger("sweeper.wandb")

#: How long a command waits for wandb-core to shut down at its end.
TEARDOWN_S = 10.0


def teardown_within(seconds: float = TEARDOWN_S) -> bool:
    """Tear wandb's service down if this process started one; False if that did not end
    within `seconds` (the caller then leaves with `os._exit`, see `exit_now`)."""
    if "wandb" not in sys.modules:
        return True
    import wandb

    done = threading.Event()

    def teardown() -> None:
        try:
            wandb.teardown()
        except Exception as exc:  # at exit, a failed teardown only deserves a line
            log.debug("wandb teardown failed: %s: %s", type(exc).__name__, exc)
        done.set()

    threading.Thread(target=teardown, name="wandb-teardown", daemon=True).start()
    return done.wait(seconds)


def exit_now(code: int) -> NoReturn:
    """Leave the process with `code` at once, skipping the exit handlers (wandb's unbounded
    wait among them) after flushing what was printed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe
            stream.flush()
    os._exit(code)
