"""Fixtures shared by every test package: an isolated environment, small image datasets and
the environment agent workers need to run the test trainers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.imagefolder import write_image_folder
from tests.pg_server import PgServer, PgUnavailable
from tests.shared_runs import SharedRuns

#: The project root: workers import the test trainers from it as `tests.<folder>.<module>`.
ROOT = Path(__file__).parents[1]


#: Left out of every test's environment and of the processes tests start: no real
#: credentials leak in (WANDB_API_KEY), and no process a test starts attaches to this test
#: process's wandb-core. wandb announces the wandb-core it started in WANDB_SERVICE
#: (`wandb.env.SERVICE`) for child processes to share; a CLI under test that inherited it
#: from an earlier test's wandb use would run on that service instead of its own, as no
#: user's does, and wandb (0.31) does not stop such a connection's finalizer thread at
#: teardown, so the thread's traceback could reach the CLI's stderr.
LEFT_OUT = ("WANDB_API_KEY", "WANDB_SERVICE")


def isolated_environ(folder: Path) -> dict[str, str]:
    """The variables that give a test in `folder` its own sweeper home and offline wandb."""
    return {
        "SWEEPER_HOME": str(folder / "sweeper-home"),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(folder / "wandb"),
        "NETRC": str(folder / "no-netrc"),
        "XDG_CACHE_HOME": str(folder / "xdg-cache"),
    }


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own sweeper home and offline wandb; no real credentials or wandb
    service of this process leak in (`LEFT_OUT`)."""
    for name, value in isolated_environ(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in LEFT_OUT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path / "sweeper-home"


@pytest.fixture(scope="module")
def shared_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedRuns]:
    """The module's `SHARED_RUNS` (tests/shared_runs.py) that its selected tests read, started
    together, each job in a folder of its own."""
    wanted = [
        marker.args[0]
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        for marker in item.iter_markers("shared_run")
    ]
    runs = SharedRuns(request.module.SHARED_RUNS, wanted, tmp_path_factory.mktemp)
    yield runs
    runs.close()


@pytest.fixture
def shared_run(request: pytest.FixtureRequest, shared_runs: SharedRuns) -> Any:
    """What the job named by the test's `@pytest.mark.shared_run(name)` returned."""
    marker = request.node.get_closest_marker("shared_run")
    assert marker is not None, "a test that reads a shared run names it: @pytest.mark.shared_run"
    return shared_runs.result(marker.args[0])


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
