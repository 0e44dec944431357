"""sweeper.wandb.retry: wandb's wrapped errors unwrapped, transient ones retried on a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from wandb.errors import AuthenticationError, CommError
from wandb.proto.wandb_api_pb2 import ApiErrorResponse
from wandb.sdk.lib.service.service_connection import WandbApiFailedError

from sweeper.errors import BackendError, NotFoundError, SweeperError
from sweeper.wandb.retry import Retry, http_status, is_transient, timeout_s

from .conftest import FakeClock


def core_error(status: int) -> WandbApiFailedError:
    """An HTTP failure as wandb-core reports it."""
    return WandbApiFailedError(f"HTTP {status}", ApiErrorResponse(message="x", http_status=status))


def failing(*errors: Exception) -> Callable[[], str]:
    left = list(errors)

    def call() -> str:
        if left:
            raise left.pop(0)
        return "ok"

    return call


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (CommError("wrapped", core_error(429)), 429),  # normalize_exceptions
        (core_error(503), 503),
        (ValueError("x"), None),
    ],
)
def test_the_status_is_found_through_wandbs_wrapping(error: Exception, status: int | None) -> None:
    assert http_status(error) == status


def test_the_status_in_wandb_cores_message_is_found() -> None:
    core = WandbApiFailedError("giving up after 2 attempt(s)\nwhile retrying: HTTP 429: slow down")
    try:
        raise AuthenticationError("Failed to verify credentials") from core
    except AuthenticationError as error:
        assert http_status(error) == 429
        assert is_transient(error)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_errors_are_retried_with_backoff(status: int) -> None:
    clock = FakeClock(start=0.0)
    retry = Retry(60, "https://w", clock.sleep, clock)
    call = failing(CommError("x", core_error(status)), core_error(status), TimeoutError("t"))
    assert retry("read", call) == "ok"
    assert len(clock.slept) == 3 and clock.slept[2] > clock.slept[0]


def test_a_rate_limited_call_gives_up_at_the_timeout_saying_so() -> None:
    clock = FakeClock(start=0.0)
    retry = Retry(20, "https://w", clock.sleep, clock)
    with pytest.raises(BackendError) as info:
        retry("create the sweep", failing(*[core_error(429)] * 1000))
    assert "rate-limited" in str(info.value) and "20 s" in str(info.value)
    assert "SWEEPER_WANDB_TIMEOUT" in str(info.value)
    assert sum(clock.slept) <= 20


def test_wandb_core_not_answering_is_retried() -> None:
    assert is_transient(WandbApiFailedError("the service process is busy"))


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, BackendError, "wandb login"),
        (403, BackendError, "refused"),
        (404, NotFoundError, "does not know"),
    ],
)
def test_permanent_errors_are_not_retried(status: int, error: type[Exception], words: str) -> None:
    clock = FakeClock(start=0.0)
    with pytest.raises(error, match=words):
        Retry(60, "https://w", clock.sleep, clock)(
            "read", failing(CommError("x", core_error(status)))
        )
    assert clock.slept == []


@pytest.mark.parametrize(
    ("value", "ok"), [("0.5", True), ("abc", False), ("-1", False), ("nan", False)]
)
def test_timeout_setting_is_checked(monkeypatch: pytest.MonkeyPatch, value: str, ok: bool) -> None:
    monkeypatch.setenv("SWEEPER_WANDB_TIMEOUT", value)
    if ok:
        assert timeout_s() == 0.5
    else:
        with pytest.raises(SweeperError, match="SWEEPER_WANDB_TIMEOUT"):
            timeout_s()


def test_the_default_timeout_is_60_seconds() -> None:
    assert timeout_s() == 60
