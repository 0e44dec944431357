"""Tests for agent.slots: --gpus / --per-gpu parsing and CUDA_VISIBLE_DEVICES per slot."""

from __future__ import annotations

import pytest

from agent import slots
from agent.slots import Slot, default_gpus, parse_slots
from sweeper.errors import AgentError


@pytest.mark.parametrize(
    ("gpus", "per_gpu", "visible", "labels"),
    [
        ("none", 1, 0, ["cpu"]),
        ("none", 3, 2, ["cpu", "cpu", "cpu"]),
        ("0", 1, 1, ["cuda:0"]),
        ("0,1", 2, 2, ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]),
        ("1", 1, 4, ["cuda:1"]),
        ("all", 1, 3, ["cuda:0", "cuda:1", "cuda:2"]),
        (" ALL ", 2, 1, ["cuda:0", "cuda:0"]),
    ],
)
def test_slots_from_gpus_and_per_gpu(
    gpus: str, per_gpu: int, visible: int, labels: list[str]
) -> None:
    slots = parse_slots(gpus, per_gpu, visible=visible)
    assert [s.label for s in slots] == labels
    assert [s.index for s in slots] == list(range(len(labels)))


@pytest.mark.parametrize(
    ("gpus", "per_gpu", "visible", "message"),
    [
        ("3", 1, 2, "GPU 3 requested but 2 GPUs visible (0-1)"),
        ("0,2,5", 1, 2, "GPU 2, 5 requested"),
        ("0", 1, 0, "0 GPUs visible"),
        ("all", 1, 0, "no GPU is visible"),
        ("0,0", 1, 2, "listed twice"),
        ("gpu0", 1, 2, "expected 'all', 'none' or GPU indices"),
        ("0,", 1, 2, "expected 'all', 'none' or GPU indices"),
        ("none", 0, 0, "--per-gpu must be at least 1"),
    ],
)
def test_bad_gpus_are_agent_errors(gpus: str, per_gpu: int, visible: int, message: str) -> None:
    with pytest.raises(AgentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_slots(gpus, per_gpu, visible=visible)


def test_cpu_slots_hide_every_gpu() -> None:
    assert all(s.cuda_visible_devices == "" for s in parse_slots("none", 2))


def test_gpu_index_maps_through_the_agents_own_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    slots = parse_slots("1", 1, visible=2)
    assert slots == [Slot(index=0, gpu=1, cuda_visible_devices="3")]


def test_gpu_index_is_the_device_without_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [s.cuda_visible_devices for s in parse_slots("0,1", 1, visible=2)] == ["0", "1"]


def test_visible_count_comes_from_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [s.label for s in parse_slots("all")] == ["cuda:0", "cuda:1"]
    with pytest.raises(AgentError, match="GPU 2 requested but 2 GPUs visible"):
        parse_slots("2")


@pytest.mark.parametrize(("visible", "default"), [(0, "none"), (2, "all")])
def test_default_gpus_is_every_visible_gpu_or_the_cpu(
    monkeypatch: pytest.MonkeyPatch, visible: int, default: str
) -> None:
    monkeypatch.setattr(slots, "visible_gpu_count", lambda: visible)
    assert default_gpus() == default
