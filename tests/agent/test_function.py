"""agent.function's pieces: the function's thread and how it is stopped."""

from __future__ import annotations

import threading

from agent.function import FunctionCall, RunStopped


def test_an_error_in_the_function_is_kept_for_the_agent() -> None:
    def broken() -> None:
        raise ValueError("lr too large")

    call = FunctionCall(broken)
    call.start()
    call.join()
    assert isinstance(call.error, ValueError)


def test_interrupt_stops_a_busy_function_even_through_except_exception() -> None:
    started = threading.Event()

    def stubborn() -> None:
        started.set()
        while True:
            try:
                sum(range(100))
            except Exception:  # a user's catch-all does not swallow the stop
                continue

    call = FunctionCall(stubborn)
    call.start()
    started.wait()
    call.interrupt()
    call.join(timeout=30)
    assert not call.is_alive()
    assert isinstance(call.error, RunStopped)


def test_interrupting_a_finished_call_does_nothing() -> None:
    call = FunctionCall(lambda: None)
    call.start()
    call.join()
    call.interrupt()
    assert call.error is None
