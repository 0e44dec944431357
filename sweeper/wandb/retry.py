"""W&B calls retried through wandb's error wrapping.

wandb raises its transport failures wrapped: `normalize_exceptions` turns them into
`wandb.errors.CommError` with the original in `.exc`, the login check raises
`AuthenticationError` from the original, and the original from wandb-core
(`WandbApiFailedError`) carries the HTTP status in `.response.http_status` when wandb-core
fills it in, else only in its message ("HTTP 429: ..."). `http_status` walks that chain
(`.exc`, `__cause__`, `.response`, the message), so a 429 or 5xx is retried wherever wandb
wrapped it, and a 401 is reported as a login problem. A `WandbApiFailedError` without a
response is wandb-core not answering in time: retried too.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sweeper.errors import BackendError, NotFoundError, SweeperError
from sweeper.wandb.credentials import LOGIN_HELP, redact

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds a W&B call may keep failing (timeouts, 429, 5xx) before it is given up.
TIMEOUT_ENV = "SWEEPER_WANDB_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
_TRANSIENT_STATUS = frozenset({408, 425, 429})
_RATE_LIMITED = 429
#: How wandb-core words a failed HTTP request when it does not fill in `http_status`.
_STATUS_IN_MESSAGE = re.compile(r"\bHTTP (\d{3})\b")


def timeout_s() -> float:
    """How long W&B calls are retried: $SWEEPER_WANDB_TIMEOUT seconds, default 60."""
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise SweeperError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise SweeperError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what wandb wrapped in it (`.exc` of CommError, `__cause__`), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        inner = getattr(current, "exc", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__
    return seen


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception from wandb carries, however deeply wandb wrapped it.

    >>> from wandb.errors import CommError
    >>> from wandb.proto.wandb_api_pb2 import ApiErrorResponse
    >>> from wandb.sdk.lib.service.service_connection import WandbApiFailedError
    >>> core = WandbApiFailedError("rate limited", ApiErrorResponse(http_status=429))
    >>> http_status(CommError("rate limited", core))
    429
    """
    for err in _chain(exc):
        for holder in (err, getattr(err, "response", None)):
            for attr in ("http_status", "status_code"):
                value = getattr(holder, attr, None)
                if isinstance(value, int) and value:
                    return value
    for err in _chain(exc):
        found = _STATUS_IN_MESSAGE.search(str(err))
        if found:
            return int(found.group(1))
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: a timeout, a connection failure, HTTP 408/425/429 or a 5xx."""
    status = http_status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    from wandb.sdk.lib.service.service_connection import WandbApiFailedError

    for err in _chain(exc):
        if isinstance(err, TimeoutError | ConnectionError):
            return True
        if isinstance(err, WandbApiFailedError) and err.response is None:
            return True
        name = type(err).__name__
        if "Timeout" in name or "ConnectionError" in name:
            return True
    return False


class Retry:
    """Calls a W&B function, retrying transient failures with backoff until a deadline.

    Args:
        limit_s: how long one call may keep failing before a BackendError.
        host: the server, for messages.
        sleep, clock: how it waits and tells time (tests pass a fake clock).
    """

    #: First backoff; doubled per try up to `max_delay_s`, jittered by ±50 %.
    base_delay_s = 0.5
    max_delay_s = 8.0

    def __init__(
        self,
        limit_s: float,
        host: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_s, self.host, self.sleep, self.clock = limit_s, host, sleep, clock

    def __call__(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """`fn(*args, **kwargs)`, retried; `what` names the call in messages ("create the sweep").

        Raises:
            BackendError: a permanent error (401/403: the login; others: what failed), or
                transient errors for longer than `limit_s` (429: says it was rate-limited).
            NotFoundError: W&B answered 404.
        """
        deadline = self.clock() + self.limit_s
        delay = self.base_delay_s
        tries = 0
        while True:
            tries += 1
            try:
                return fn(*args, **kwargs)
            except SweeperError:
                raise
            except Exception as exc:
                reason = redact(f"{type(exc).__name__}: {exc}")
                status = http_status(exc)
                if not is_transient(exc):
                    raise permanent_error(what, status, reason) from None
                left = deadline - self.clock()
                if left <= 0:
                    raise self._gave_up(what, status, tries, reason) from None
                log.warning("W&B %s failed (%s); retrying", what, reason)
                self.sleep(min(left, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, self.max_delay_s)

    def _gave_up(self, what: str, status: int | None, tries: int, reason: str) -> BackendError:
        if status == _RATE_LIMITED:
            cause = f"W&B at {self.host} rate-limited sweeper (HTTP 429)"
        else:
            cause = f"W&B at {self.host} did not answer"
        return BackendError(
            f"{cause} for {self.limit_s:g} s ({what}, {tries} tries); last error: {reason}. "
            f"Check the network and WANDB_BASE_URL, or allow more time with {TIMEOUT_ENV}=<seconds>."
        )


def permanent_error(what: str, status: int | None, reason: str) -> SweeperError:
    """The project error for a failure retrying cannot fix."""
    if status in (401, 403):
        return BackendError(f"W&B refused the credentials ({what}): {reason}. {LOGIN_HELP}")
    if status == 404:
        return NotFoundError(f"W&B does not know it ({what}): {reason}")
    return BackendError(f"W&B could not {what}: {reason}")
