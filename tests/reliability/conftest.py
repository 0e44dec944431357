"""Fixtures for the reliability tests: small file systems and messy data.

The agent's test kit (tests/agent/agent_testkit.py, fake_trainer.py) is imported, not
copied; `agent_env` (tests/conftest.py) lets workers import the test trainers.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.reliability_kit import write_messy_folder


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a size-limited tmpfs (`tmpfs(folder, "2m")`); skip where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            pytest.skip("a size-limited file system needs root to mount a tmpfs")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="session")
def messy_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with every kind of bad file next to good ones; see `write_messy_folder`."""
    return write_messy_folder(tmp_path_factory.mktemp("data") / "messy")


@pytest.fixture(params=["sqlite", "postgres"])
def each_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on each store: the default SQLite file, then a fresh PostgreSQL store
    (named by SWEEPER_STORE, which the agents and their workers inherit)."""
    if request.param == "postgres":
        monkeypatch.setenv("SWEEPER_STORE", request.getfixturevalue("pg_url"))
    return str(request.param)
