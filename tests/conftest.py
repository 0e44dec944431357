"""Fixtures shared by every test package: an isolated environment and small image datasets."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).parent))

from imagefolder import write_image_folder
from pg_server import PgServer, PgUnavailable


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
