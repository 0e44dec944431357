"""Tests for sweeper.wandb.runlog: mode selection, offline runs on disk, failures never fatal."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wandb
from wandb.sdk.lib.urls import DEFAULT_BASE_URL

from sweeper.wandb.runlog import WandbLogger, wandb_mode
from tests.sweeper.fake_wandb import (  # noqa: F401 - autouse fixture
    fresh_wandb_session,
    wait_for_records,
)

DEFAULT_HOST = DEFAULT_BASE_URL.split("://")[1]


@pytest.mark.parametrize(
    ("env_mode", "key", "netrc_text", "expected"),
    [
        (None, None, None, "offline"),
        (None, "k" * 40, None, "online"),
        # `wandb login`'s entry is for wandb's default server, not api.wandb.ai.
        (
            None,
            None,
            f"machine {DEFAULT_HOST}\n  login user\n  password " + "p" * 40 + "\n",
            "online",
        ),
        # ... and wandb also reads the entry of its upstream, api.wandb.ai.
        (None, None, "machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n", "online"),
        (None, None, "machine example.com\n  login user\n  password x\n", "offline"),
        (None, None, "this is not a netrc file {", "offline"),
        ("disabled", "k" * 40, None, "disabled"),
        ("offline", "k" * 40, None, "offline"),
    ],
)
def test_mode(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env_mode: str | None,
    key: str | None,
    netrc_text: str | None,
    expected: str,
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    if env_mode:
        monkeypatch.setenv("WANDB_MODE", env_mode)
    if key:
        monkeypatch.setenv("WANDB_API_KEY", key)
    if netrc_text is not None:
        (tmp_path / "netrc").write_text(netrc_text)
        monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode() == expected


def test_offline_run_is_written_under_the_home(tmp_path: Path) -> None:
    logger = WandbLogger(tmp_path / "wandb")
    assert logger.mode == "offline"
    logger.start("sweep1", "run00001", {"lr": 1e-3})
    for epoch in (1, 2):
        logger.log({"epoch": epoch, "val_accuracy": 0.5 + epoch / 10})
    logger.finish({"best_val_accuracy": 0.7, "test_accuracy": None}, "finished")
    runs = list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # wandb-core writes the run's file, named after wandb's own run id, a moment after
    # finish returns.
    wait_for_records(runs[0] / f"run-{runs[0].name.rsplit('-', 1)[1]}.wandb", "history", 2)
    # The package list is saved with the run, as wandb.init's own would be.
    requirements = (runs[0] / "files" / "requirements.txt").read_text().splitlines()
    assert f"wandb=={wandb.__version__}" in requirements
    assert "requirements.txt" in _saved_files(next(runs[0].glob("*.wandb")))


def test_packages_are_listed_once_for_all_runs_of_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb.util

    listed: list[int] = []
    real = wandb.util.working_set

    def counted() -> Any:
        listed.append(1)
        return real()

    monkeypatch.setattr(wandb.util, "working_set", counted)
    logger = WandbLogger(tmp_path / "wandb")
    for run_id in ("run00001", "run00002"):
        logger.start("sweep1", run_id, {})
        logger.finish({}, "finished")
    runs = sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len(listed) == 1
    assert [(r / "files" / "requirements.txt").read_text() for r in runs] == [
        logger._requirements
    ] * 2


def test_disabled_mode_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = WandbLogger(tmp_path / "wandb")
    logger.prepare()
    logger.start("sweep1", "run00001", {"lr": 1e-3})
    logger.log({"epoch": 1})
    logger.finish({}, "finished")
    assert not logger.enabled
    assert not (tmp_path / "wandb").exists()


def test_wandb_failure_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb

    def broken_init(**kwargs: object) -> None:
        raise RuntimeError("wandb-core did not start")

    monkeypatch.setattr(wandb, "init", broken_init)
    logger = WandbLogger(tmp_path / "wandb")
    with caplog.at_level(logging.WARNING, logger="sweeper.wandb.runlog"):
        logger.start("sweep1", "run00001", {})
        logger.log({"epoch": 1})
        logger.finish({"x": 1}, "failed")
    assert (
        "wandb.init failed, run run00001 is not mirrored: RuntimeError: wandb-core did not start"
        in caplog.text
    )


def _record_kinds(wandb_file: Path) -> list[str]:
    from sweeper.wandb import runfile

    return [r.WhichOneof("record_type") for r in runfile.records(wandb_file)]


def _saved_files(wandb_file: Path) -> list[str]:
    from sweeper.wandb import runfile

    return [
        item.path
        for r in runfile.records(wandb_file)
        if r.WhichOneof("record_type") == "files"
        for item in r.files.files
    ]


def test_background_logger_leaves_complete_offline_runs_for_sync(tmp_path: Path) -> None:
    from sweeper.paths import Home
    from sweeper.wandb.runlog import BackgroundWandbLogger
    from sweeper.wandb.sync import offline_runs

    home = Home(tmp_path / "home")
    logger = BackgroundWandbLogger(home.wandb_dir)
    logger.prepare()
    for run_id in ("run00001", "run00002"):
        logger.start("sweep1", run_id, {"lr": 1e-3})
        for epoch in (1, 2):
            logger.log({"epoch": epoch, "val_accuracy": 0.5 + epoch / 10})
        logger.finish({"best_val_accuracy": 0.7}, "finished")
    # The worker's last act: once close returns, every run's file is whole, unwaited.
    logger.close()
    runs = offline_runs(home)
    assert [r.group for r in runs] == ["sweep1", "sweep1"]
    for run in runs:
        kinds = _record_kinds(run.wandb_file)
        assert kinds.count("history") == 2 and "summary" in kinds and "exit" in kinds
        assert not run.marker.exists()  # not uploaded yet: `sweeper sync` picks it up


def test_background_logger_finishes_a_run_left_open_by_a_dead_worker(tmp_path: Path) -> None:
    from sweeper.paths import Home
    from sweeper.wandb.runlog import BackgroundWandbLogger
    from sweeper.wandb.sync import offline_runs

    home = Home(tmp_path / "home")
    logger = BackgroundWandbLogger(home.wandb_dir)
    logger.start("sweep1", "run00001", {"lr": 1e-3})
    logger.log({"epoch": 1, "val_accuracy": 0.5})
    logger.close()  # end of file with the run open, as when kill -9 ends the worker
    (run,) = offline_runs(home)
    kinds = _record_kinds(run.wandb_file)
    assert kinds.count("history") == 1 and "exit" in kinds


def test_background_logger_disabled_starts_no_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper.wandb.runlog import BackgroundWandbLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = BackgroundWandbLogger(tmp_path / "wandb")
    logger.start("sweep1", "run00001", {})
    logger.finish({}, "finished")
    logger.close()
    assert not logger.enabled
    assert not (tmp_path / "wandb").exists()


def test_helper_lowers_its_scheduling_priority_before_wandb_starts(tmp_path: Path) -> None:
    from sweeper.wandb.runlog import HELPER_NICENESS

    # The helper's main with its input already ended, then its own niceness printed.
    code = (
        "import os, sys\n"
        "from sweeper.wandb.runlog import main\n"
        "main([sys.argv[1], 'disabled'])\n"
        "print(os.getpriority(os.PRIO_PROCESS, 0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "wandb")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True,
    )  # fmt: skip
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert int(done.stdout.split()[-1]) == min(19, ours + HELPER_NICENESS) > ours
