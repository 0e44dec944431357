"""sweeper.wandb.service: a process leaves wandb behind without an unbounded wait."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import wandb

from sweeper.wandb.service import teardown_within


def test_a_teardown_that_ends_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(wandb, "teardown", lambda: calls.append("teardown"))
    assert teardown_within(30) is True
    assert calls == ["teardown"]


def test_a_teardown_that_hangs_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(wandb, "teardown", release.wait)  # wandb-core never exits
    try:
        assert teardown_within(0.05) is False
    finally:
        release.set()


HANGING_EXIT = """
import atexit, sys, threading
import wandb
from sweeper.wandb import service
wandb.teardown = threading.Event().wait  # as wandb's exit handler waiting on wandb-core
atexit.register(threading.Event().wait)   # an exit handler that would never return
print("printed before leaving")
if not service.teardown_within(0.05):
    service.exit_now(3)
"""


def test_a_process_whose_teardown_hangs_still_exits_with_its_code() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HANGING_EXIT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "printed before leaving\n"
