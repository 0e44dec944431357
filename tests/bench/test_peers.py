"""bench/peers.py: its table, and the whole bench run tiny (2 runs per way, tiny demo data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers import (
    Trial,
    WayResult,
    copied_target,
    head_space,
    median_result,
    race,
    ratios,
    table,
)
from demo.dataset import DemoDataSpec
from sweeper.engine import config_key

REPO = Path(__file__).resolve().parents[2]
#: The demo data and backbone at their smallest, and 2 runs per way.
TINY = [
    "--runs", "2", "--pretrain-epochs", "1", "--max-per-class", "30", "--letters", "AKZ",
    "--letter-images", "20", "--source-copies", "1", "--target-per-class", "5",
    "--wandb", "disabled",
]  # fmt: skip


def _trial(lr: float, val: float, seconds: float) -> Trial:
    config = {"epochs": 5, "dropout": 0.0, "batch_size": 32, "lr": lr}
    return Trial(config=config, val_accuracy=val, test_accuracy=val - 0.1, train_seconds=seconds)


def test_table_has_a_row_per_way_with_its_best_run_and_overhead() -> None:
    sweeper = WayResult(
        way="sweeper", wall_seconds=10.0, trials=[_trial(1e-3, 0.5, 2.0), _trial(1e-4, 0.8, 4.0)]
    )
    seed = WayResult(
        way="seed loop", wall_seconds=30.0, trials=[_trial(1e-3, 0.6, 5.0), _trial(1e-3, 0.6, 5.0)]
    )

    lines = table([seed, sweeper]).splitlines()

    assert lines[0].startswith("| way | runs | wall | distinct configs")
    assert lines[2] == "| seed loop | 2 | 30.0 s | 1 | 0.60 / 0.50 | 10.00 s | 3.00x |"
    assert lines[3] == "| sweeper | 2 | 10.0 s | 2 | 0.80 / 0.70 | 2.00 s | 1.00x |"


def test_rounds_alternate_the_order_and_the_table_takes_each_ways_median_round() -> None:
    walls = {"optuna": [20.0, 18.0, 30.0, 19.0], "sweeper": [19.0, 19.0, 25.0, 17.0]}
    order: list[tuple[str, int]] = []

    def run(way: str, number: int) -> WayResult:
        order.append((way, number))
        return WayResult(way=way, wall_seconds=walls[way][number], trials=[])

    rounds = race(["optuna", "sweeper"], 4, run)

    assert order == [
        ("optuna", 0), ("sweeper", 0), ("sweeper", 1), ("optuna", 1),
        ("optuna", 2), ("sweeper", 2), ("sweeper", 3), ("optuna", 3),
    ]  # fmt: skip
    assert [r.wall_seconds for r in rounds["sweeper"]] == walls["sweeper"]
    assert median_result(rounds["optuna"]).wall_seconds == 19.0
    assert median_result(rounds["sweeper"]).wall_seconds == 19.0
    assert ratios(rounds, "sweeper", "optuna") == [0.95, 19.0 / 18.0, 25.0 / 30.0, 17.0 / 19.0]


def test_target_copies_are_new_renders_of_the_same_training_digits(tmp_path: Path) -> None:
    from PIL import Image

    target = tmp_path / "target"
    for split, name in (("train", "0005_0.png"), ("train", "0015_0.png"), ("val", "0025_0.png")):
        (target / split / "five").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16)).save(target / split / "five" / name)

    out = copied_target(target, DemoDataSpec(image_size=16), 3)

    names = sorted(p.name for p in (out / "train" / "five").iterdir())
    assert names == [f"{i:04d}_{c}.png" for i in (5, 15) for c in range(3)]
    renders = {Image.open(out / "train" / "five" / n).tobytes() for n in names}
    assert len(renders) == 6  # every copy is drawn with its own distortion
    assert [p.name for p in (out / "val" / "five").iterdir()] == ["0025_0.png"]
    assert copied_target(target, DemoDataSpec(image_size=16), 3) == out  # built once


@pytest.mark.slow
def test_bench_runs_every_way_on_tiny_data(tmp_path: Path) -> None:
    out = tmp_path / "trials.json"

    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "peers.py"), *TINY, "--json", str(out)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip

    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| way | runs | wall | distinct configs")
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| seed loop", "| Optuna", "| sweeper"]
    space = head_space()
    for row, way in zip(rows[1:], json.loads(out.read_text()), strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        configs = [trial["config"] for trial in way["trials"]]
        assert cells[1] == "2"
        assert int(cells[3]) == len({config_key(c) for c in configs}) >= 1
        assert all(c[name] in values for c in configs for name, values in space.items())
    # sweeper never repeats a config on a discrete space.
    assert cells[3] == "2"
