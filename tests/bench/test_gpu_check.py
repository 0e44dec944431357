"""bench/gpu_check.sh on the CPU with tiny sizes: every part runs and the table has every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import synthetic_data

REPO = Path(__file__).resolve().parents[2]
#: Every part of the check at its smallest, on the CPU.
TINY = [
    "--device", "cpu", "--images", "200", "--size", "32", "--model", "resnet18",
    "--batch", "16", "--epochs", "1", "--steps", "2", "--runs", "2", "--small-runs", "2",
    "--small-images", "100", "--small-size", "32", "--num-workers", "0", "--wandb", "disabled",
]  # fmt: skip


def test_synthetic_data_is_an_image_folder_written_once(tmp_path: Path) -> None:
    folder = synthetic_data(tmp_path, images=40, size=16, classes=4)
    stamp = (folder / "stamp.json").stat().st_mtime_ns

    again = synthetic_data(tmp_path, images=40, size=16, classes=4)

    assert again == folder
    assert (folder / "stamp.json").stat().st_mtime_ns == stamp
    assert json.loads((folder / "stamp.json").read_text())["images"] == 40
    assert sorted(p.name for p in (folder / "train").iterdir()) == [f"class0{i}" for i in range(4)]
    counts = {split: len(list((folder / split).rglob("*.jpg"))) for split in ("train", "val")}
    assert counts == {"train": 32, "val": 8}
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


@pytest.mark.slow
def test_check_prints_every_row_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}

    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), *TINY, "--data-dir", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip

    rows = [line for line in done.stdout.splitlines() if line.startswith("| (")]
    assert [row[2:5] for row in rows] == ["(a)", "(b)", "(c)", "(c)", "(d)"]
    assert "2 runs, 2 distinct" in rows[0]
    assert "--per-gpu 1" in rows[2] and "--per-gpu 2" in rows[3]
    # No CUDA here: the CUDA tests are collected and skipped, none fails.
    assert " 0 failed, " in rows[4] and "0 passed" in rows[4]
