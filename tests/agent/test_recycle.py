"""Tests for agent.recycle: every reason a worker process is replaced, and when it is kept."""

from __future__ import annotations

from typing import Any

import pytest

from agent.memory import MIB, MemoryReading
from agent.recycle import RecyclePolicy, WorkerFacts

BASE = MemoryReading(rss=500 * MIB, cuda_allocated=100 * MIB, cuda_reserved=200 * MIB)


def _facts(**changes: Any) -> WorkerFacts:
    clean = {
        "reusable": True,
        "runs": 3,
        "last_run": "r3",
        "last_state": "finished",
        "baseline": BASE,
        "memory": BASE,
        "device": "auto",
    }
    return WorkerFacts(**{**clean, **changes})


def _grown(**deltas_mb: int) -> MemoryReading:
    return BASE.model_copy(
        update={name: getattr(BASE, name) + mb * MIB for name, mb in deltas_mb.items()}
    )


@pytest.mark.parametrize("state", ["finished", "stopped"])
def test_a_clean_worker_is_kept(state: str) -> None:
    policy = RecyclePolicy(max_runs=10, max_growth_mb=100)
    assert policy.reason(_facts(last_state=state), next_device="auto") is None


@pytest.mark.parametrize(
    ("policy", "facts", "next_device", "reason"),
    [
        (RecyclePolicy(fresh_process=True), _facts(), None, "--fresh-process"),
        (RecyclePolicy(), _facts(reusable=False), None, "opts out of reuse"),
        (RecyclePolicy(max_runs=3), _facts(), None, "trained 3 runs, the most per process"),
        (RecyclePolicy(), _facts(last_state="failed"), None, "run r3 failed"),
        (RecyclePolicy(), _facts(last_state="crashed"), None, "run r3 crashed"),
        (RecyclePolicy(), _facts(last_state="requeued"), None, "run r3 requeued"),
        (
            RecyclePolicy(max_growth_mb=100),
            _facts(memory=_grown(rss=150)),
            None,
            "RSS grew 150 MiB over its baseline (limit 100 MiB)",
        ),
        (
            RecyclePolicy(max_growth_mb=100),
            _facts(memory=_grown(cuda_allocated=101)),
            None,
            "CUDA allocated grew 101 MiB",
        ),
        (
            RecyclePolicy(max_growth_mb=100),
            _facts(memory=_grown(cuda_reserved=400)),
            None,
            "CUDA reserved grew 400 MiB",
        ),
        (RecyclePolicy(), _facts(), "cpu", "needs device 'cpu', this process used 'auto'"),
    ],
    ids=[
        "fresh",
        "opt-out",
        "max-runs",
        "failed",
        "crashed",
        "requeued",
        "rss",
        "cuda-allocated",
        "cuda-reserved",
        "device",
    ],
)
def test_every_reason_for_a_fresh_process(
    policy: RecyclePolicy, facts: WorkerFacts, next_device: str | None, reason: str
) -> None:
    answer = policy.reason(facts, next_device)
    assert answer is not None and reason in answer


def test_memory_the_warm_caches_hold_is_not_growth() -> None:
    filled = _grown(rss=800).model_copy(update={"cached": 750 * MIB})
    assert RecyclePolicy(max_growth_mb=100).reason(_facts(memory=filled)) is None


@pytest.mark.parametrize(
    ("policy", "runs", "due"),
    [
        (RecyclePolicy(max_runs=4), 3, False),
        (RecyclePolicy(max_runs=4), 4, True),
        (RecyclePolicy(fresh_process=True), 1, True),
    ],
)
def test_a_spare_is_due_when_the_current_run_is_the_last(
    policy: RecyclePolicy, runs: int, due: bool
) -> None:
    # The worker has a run (`runs` counts it) that may still fail or leak: not foreseen.
    busy = _facts(runs=runs, last_state="failed", memory=_grown(rss=5000))
    assert policy.due_after_current(busy) is due
