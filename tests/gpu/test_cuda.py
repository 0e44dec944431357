"""The tests that need CUDA: AMP, channels_last, the OOM message and slot pinning.

They are skipped where CUDA is absent (the dev machine, CI so far); `make gpu-check`
(bench/gpu_check.py) runs them on a GPU and counts them in its table.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from trainer import OutOfMemoryError, TrainConfig, train
from trainer.loop import Precision
from trainer.models import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

HERE = Path(__file__).parent
REPO = HERE.parents[1]
CUDA = torch.device("cuda")


def _config(data: Path, cache: Path, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "data_dir": str(data),
        "model": "resnet18",
        "weights": "none",
        "mode": "scratch",
        "image_size": 32,
        "batch_size": 8,
        "epochs": 2,
        "patience": 0,
        "num_workers": 0,
        "device": "cuda",
        "cache_dir": str(cache),
    }
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.parametrize(
    ("amp", "dtype"),
    [
        pytest.param(
            "bf16",
            torch.bfloat16,
            marks=pytest.mark.skipif(
                torch.cuda.is_available() and not torch.cuda.is_bf16_supported(),
                reason="this GPU has no bf16",
            ),
        ),
        ("fp16", torch.float16),
    ],
)
def test_amp_trains_in_reduced_precision(
    amp: str, dtype: torch.dtype, image_folder: Path, tmp_path: Path
) -> None:
    config = _config(image_folder, tmp_path / "cache", amp=amp)
    precision = Precision.choose(amp, CUDA)
    model = build_model(config, 3).to(CUDA)
    with precision.autocast():
        logits = model(torch.randn(2, 3, 32, 32, device=CUDA))
    assert logits.dtype == dtype

    result = train(config)

    assert result.epochs_run == 2
    assert all(math.isfinite(e.train_loss) and math.isfinite(e.val_loss) for e in result.history)


def test_amp_auto_picks_bf16_where_the_gpu_has_it() -> None:
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert Precision.choose("auto", CUDA).dtype == expected
    assert Precision.choose("off", CUDA).dtype is None


def test_channels_last_trains_like_contiguous(image_folder: Path, tmp_path: Path) -> None:
    results = [
        train(_config(image_folder, tmp_path / "cache", amp="off", channels_last=flag, epochs=1))
        for flag in (True, False)
    ]

    first, second = (r.history[0].train_loss for r in results)
    # Other cuDNN kernels for the other memory format: equal up to float rounding.
    assert first == pytest.approx(second, rel=1e-2)


def test_out_of_memory_names_the_batch_size_to_lower(image_folder: Path, tmp_path: Path) -> None:
    total = torch.cuda.get_device_properties(CUDA).total_memory
    # ~300 MB: a resnet50 at 224 px cannot train a batch in it.
    torch.cuda.set_per_process_memory_fraction(min(1.0, 300e6 / total), CUDA)
    try:
        config = _config(
            image_folder, tmp_path / "cache", model="resnet50", image_size=224, batch_size=24
        )
        with pytest.raises(
            OutOfMemoryError, match=r"batch_size 24 .*lower batch_size \(e\.g\. 12\)"
        ):
            train(config)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
        torch.cuda.empty_cache()


def test_each_worker_sees_only_its_slots_gpu(tmp_path: Path) -> None:
    spec = {
        "method": "grid",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"data_dir": {"value": "unused"}, "seed": {"values": [0, 1, 2, 3]}},
    }
    spec_file = tmp_path / "probe.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    probes = tmp_path / "probes"
    probes.mkdir()
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "CUDA_PROBE_DIR": str(probes)}
    sweeper = [sys.executable, "-m", "sweeper"]
    created = subprocess.run(
        [*sweeper, "create", str(spec_file), "--backend", "local", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    sweep_id = json.loads(created.stdout)["id"]

    subprocess.run(
        [*sweeper, "agent", sweep_id, "--gpus", "all", "--per-gpu", "2",
         "--trainer", "tests.gpu.cuda_probe:train"],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip

    records = [json.loads(p.read_text()) for p in probes.glob("*.json")]
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = (
        [n.strip() for n in inherited.split(",") if n.strip()]
        if inherited
        else [str(i) for i in range(torch.cuda.device_count())]
    )
    assert len(records) == 4
    for record in records:
        assert record["cuda_visible_devices"] in names
        assert record["device_count"] == 1
        assert record["device"] == "cuda:0"
    # Two slots per GPU: some runs held a GPU at the same time, in separate processes.
    overlapping = [
        (a, b)
        for a, b in itertools.combinations(records, 2)
        if a["started"] < b["ended"] and b["started"] < a["ended"]
    ]
    assert overlapping
    assert all(a["pid"] != b["pid"] for a, b in overlapping)
