"""agent.program: the command `wandb agent` would build, and stopping a program's process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.program import MetricsFeed, ProgramProcess, build_command, log_tail
from sweeper.locate import open_backend
from sweeper.paths import Home


def test_the_default_command_is_wandbs_with_this_python(tmp_path: Path) -> None:
    command, _ = build_command(
        {"program": "train.py"}, {"lr": 0.1, "on": False}, tmp_path / "a.json"
    )
    assert command == ["/usr/bin/env", sys.executable, "train.py", "--lr=0.1", "--on=False"]


def test_envvar_macros_are_filled_by_wandbs_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_ROOT", "/data")
    spec = {"program": "t.py", "command": ["python", "${program}", "--root=${envvar:DATA_ROOT}"]}
    command, _ = build_command(spec, {}, tmp_path / "a.json")
    assert command == ["python", "t.py", "--root=/data"]


def test_a_program_ignoring_sigterm_is_killed_with_its_group(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(600)\n"
    )
    program = ProgramProcess({"program": str(script)}, "s1", "r1", {}, tmp_path / "w", cwd=tmp_path)
    while not ready.exists():
        assert program.wait(0.05) is None
    program.stop(kill_delay_s=0)
    program.stop(kill_delay_s=-1)  # the grace period is over
    assert program.wait(30) == -signal.SIGKILL


def test_the_metrics_feed_reads_only_the_attempt_started_after_it(tmp_path: Path) -> None:
    def attempt(started: str) -> Path:
        path = tmp_path / "wandb" / f"run-{started}-r1" / "run-r1.wandb"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        return path

    attempt("20260101_000000")  # a re-queued run's first attempt, left on disk
    backend = open_backend("local", Home(tmp_path / "home"))
    try:
        feed = MetricsFeed(backend, "r1", "w1", tmp_path, {})
        assert (feed.poll(), feed.metrics) == (None, None)
        this = attempt("20260101_000100")
        assert feed.poll() is None
        assert feed.metrics is not None and feed.metrics.path == this
    finally:
        backend.close()


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)) + "\n")
    assert log_tail(log, lines=2) == "line 18\nline 19"


def test_log_tail_leaves_out_wandbs_banner(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("ValueError: lr too high\nwandb: Synced 5 W&B file(s)\nwandb: Find logs at x\n")
    assert log_tail(log, lines=2) == "ValueError: lr too high"


HOLDER = """
import os, signal, sys, time
from pathlib import Path
from agent.program import ProgramProcess
folder = Path(sys.argv[1])
ProgramProcess({"program": "hang.py"}, "s1", "r1", {}, folder / "w", cwd=folder)
while not (folder / "pid").exists():
    time.sleep(0.05)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_program_dies_with_its_worker(tmp_path: Path) -> None:
    (tmp_path / "hang.py").write_text(
        "import os, time\n"
        "open('pid.tmp', 'w').write(str(os.getpid()))\n"
        "os.rename('pid.tmp', 'pid')\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, timeout=60)
    assert holder.returncode == -signal.SIGKILL
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 30
    while _alive(pid):
        assert time.monotonic() < deadline, f"program {pid} outlived its worker"
        time.sleep(0.05)
