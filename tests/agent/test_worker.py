"""Tests for agent.worker: trainer loading, error lines, stop requests, and one run end to end
in this process against a real local store (the process protocol is in test_process.py)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent.worker import StopRequest, Worker, error_line, load_trainer
from sweeper.backends.local import LocalBackend
from sweeper.models import Control, RunState
from sweeper.paths import Home
from tests.agent.agent_testkit import FAKE, make_sweep

pytestmark = pytest.mark.usefixtures("agent_env")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_module_xyz:train", "cannot import 'no_such_module_xyz'"),
        ("os.path:no_such_function", "'os.path' has no function 'no_such_function'"),
        ("os.path:sep", "'os.path' has no function 'sep'"),
        ("trainer.train", "expected 'module:function'"),
        (":train", "expected 'module:function'"),
    ],
)
def test_bad_trainer_references(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_trainer(ref)


def test_trainer_reference_resolves_to_the_function() -> None:
    from tests.agent import fake_trainer

    assert load_trainer(FAKE) is fake_trainer.train


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("bad lr\nsecond line"), "ValueError: bad lr"),
        (RuntimeError(""), "RuntimeError"),
        (KeyError("lr"), "KeyError: 'lr'"),
    ],
)
def test_error_line(exc: BaseException, line: str) -> None:
    assert error_line(exc) == line


def test_first_stop_request_wins_and_only_interrupts_when_asked() -> None:
    stop = StopRequest()
    stop.request(Control.stop, "hyperband", interrupt=False)
    assert not stop.event.is_set()
    stop.request(Control.pause, "sweep paused", interrupt=True)
    assert stop.event.is_set()
    assert (stop.kind, stop.reason) == (Control.stop, "hyperband")


def _claimed(swept: dict[str, list[Any]], **kwargs: Any) -> tuple[LocalBackend, str]:
    """A sweep's first run, claimed under the name "w1" as the supervisor would."""
    backend = LocalBackend(Home())
    claim = backend.claim_run(make_sweep(swept, **kwargs), "w1", lease_s=30)
    assert claim.run is not None
    return backend, claim.run.id


def _worker(trainer: str = FAKE) -> Worker:
    worker = Worker(Home(), "local", trainer, "w1", heartbeat_s=5.0)
    worker.warm_up()
    return worker


def test_a_run_is_trained_and_finished_with_its_summary() -> None:
    backend, run_id = _claimed({"lr": [1e-4]}, epochs=3)
    assert _worker().run(run_id) == "finished"
    run = backend.get_run(run_id)
    assert run.state == RunState.finished
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    assert run.summary["epochs_run"] == 3 and "history" not in run.summary
    assert run.metric == pytest.approx(0.66)


def test_a_config_the_trainer_rejects_fails_the_run() -> None:
    backend, run_id = _claimed({"lr": [1e-4]}, unchecked={"mode": "scratch"})
    assert _worker().run(run_id) == "failed"
    run = backend.get_run(run_id)
    assert run.state == RunState.failed
    assert run.reason is not None
    assert run.reason.startswith(
        "invalid config: ValidationError: 1 validation error for TrainConfig"
    )


def test_a_trainer_bug_fails_the_run_with_the_exception_type() -> None:
    backend, run_id = _claimed({"lr": [1e-4]})
    assert _worker("tests.agent.fake_trainer:buggy").run(run_id) == "failed"
    run = backend.get_run(run_id)
    assert (run.state, run.reason) == (RunState.failed, "ZeroDivisionError: division by zero")


def test_sigterm_before_training_requeues_the_run() -> None:
    backend, run_id = _claimed({"lr": [1e-4]})
    worker = _worker()
    worker.on_sigterm()
    assert worker.run(run_id) == "pending"
    run = backend.get_run(run_id)
    assert (run.state, run.reason, run.worker) == (
        RunState.pending,
        "agent stopped (SIGTERM)",
        None,
    )


def test_sigterm_during_training_stops_at_a_batch_and_requeues(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "0.5")
    backend, run_id = _claimed({"lr": [1e-4]}, epochs=20)
    worker = _worker()
    threading.Timer(0.7, worker.on_sigterm).start()
    assert worker.run(run_id) == "pending"
    run = backend.get_run(run_id)
    assert (run.state, run.epochs, run.history) == (RunState.pending, 0, [])


def test_a_run_taken_away_is_dropped_without_touching_the_store() -> None:
    backend, run_id = _claimed({"lr": [1e-4]})
    backend.requeue_run(run_id, "w1", "taken back")
    assert _worker().run(run_id) == "lost"
    run = backend.get_run(run_id)
    assert (run.state, run.reason, run.history) == (RunState.pending, "taken back", [])


def test_a_program_sweeps_worker_imports_neither_torch_nor_the_trainer() -> None:
    import subprocess
    import sys

    from tests.specs import parsed_spec

    Path("train.py").touch()  # the spec is checked against the working directory
    spec = parsed_spec(
        {
            "program": "train.py",
            "method": "grid",
            "metric": {"name": "loss", "goal": "minimize"},
            "parameters": {"lr": {"values": [0.1]}},
        }
    )
    sweep_id = LocalBackend(Home()).create_sweep(spec).id
    probe = (
        "import sys\n"
        "from agent.worker import Worker\n"
        "from sweeper.paths import Home\n"
        "worker = Worker(Home(), 'local', 'trainer:train', 'w1', heartbeat_s=5.0)\n"
        f"worker.warm_up({sweep_id!r})\n"
        "worker.close()\n"
        "print(worker.reusable, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'trainer', 'wandb')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "True []"
