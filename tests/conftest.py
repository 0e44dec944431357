"""Fixtures shared by every test package: an isolated environment, small image datasets and
the environment agent workers need to run the test trainers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imagefolder import write_image_folder
from tests.pg_server import PgServer, PgUnavailable

#: The project root: workers import the test trainers from it as `tests.<folder>.<module>`.
ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own sweeper home and offline wandb; no real credentials leak in."""
    home = tmp_path / "sweeper-home"
    monkeypatch.setenv("SWEEPER_HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.chdir(tmp_path)
    yield home


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class ImageFolder (train/ as JPEG, val/ as PNG), 24 px, 12 train and 4 test per class.

    Session-scoped and read-only by convention: copy it before changing it.
    """
    return write_image_folder(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture
def agent_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Workers (and `sweeper agent` subprocesses) can import the test trainers
    (`tests.agent.fake_trainer`, `tests.reliability.probe_trainer`); wandb is off; returns the
    folder the fake trainer marks run starts in."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("FAKE_EPOCH_S", "0.02")
    marks = tmp_path / "marks"
    monkeypatch.setenv("FAKE_MARK_DIR", str(marks))
    return marks


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server for the session. Where none can be started the PG
    tests skip with the reason, except in CI (CI=true), where they fail: CI installs it."""
    try:
        server = PgServer()
        server.start()
    except PgUnavailable as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL is required in CI and could not be started: {e}")
        pytest.skip(f"no PostgreSQL server here: {e}")
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a fresh, empty PostgreSQL store (a schema of its own)."""
    return pg_server.new_store_url()
