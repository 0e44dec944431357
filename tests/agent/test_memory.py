"""Tests for agent.memory: what a worker reads after freeing a run."""

from __future__ import annotations

import weakref

import torch

from agent.memory import MIB, free_run_memory, measure
from trainer import memcache


def test_the_reading_sees_rss_and_the_warm_caches() -> None:
    before = measure()
    assert before.rss > 10 * MIB
    assert (before.cuda_allocated, before.cuda_reserved) == (0, 0)  # CUDA never initialised
    memcache.features.put(("test", 1), torch.zeros(MIB // 4))
    try:
        assert measure().cached == before.cached + MIB
    finally:
        memcache.features.clear()


def test_freeing_collects_what_a_run_left_in_reference_cycles() -> None:
    class Model:
        pass

    model = Model()
    model.itself = model  # type: ignore[attr-defined]  # a cycle: refcounting alone keeps it
    left = weakref.ref(model)
    del model
    free_run_memory()
    assert left() is None
