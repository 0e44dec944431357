"""`make demo` end to end on a reduced budget: demo/run.sh with smaller data, fewer runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reports.writers import pct

REPO = Path(__file__).resolve().parents[2]
#: Two runs per sweep instead of 5: a grid over dropout on the sweep's own space, with the
#: other knobs pinned to values the full demo's searches found good.
REDUCED: dict[str, dict[str, Any]] = {
    "demo_part_a.yaml": {
        "filters": 32,
        "filter_growth": 2.0,
        "dense_units": 128,
        "lr": 0.001,
        "batch_size": 16,
        "epochs": 30,
    },
    "demo_part_b.yaml": {"mode": "partial", "lr": 0.001, "batch_size": 16, "epochs": 15},
}


def _reduced_spec(name: str, folder: Path) -> Path:
    spec = yaml.safe_load((REPO / "sweeps" / name).read_text())
    spec["method"] = "grid"
    spec["run_cap"] = 2
    spec.pop("early_terminate", None)
    spec["parameters"]["dropout"] = {"values": [0.2, 0.3]}
    for key, value in REDUCED[name].items():
        assert key in spec["parameters"], key  # the reduced flow pins knobs the real sweep has
        spec["parameters"][key] = {"value": value}
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.slow
def test_demo_flow_part_b_beats_part_a(tmp_path: Path, isolated_env: Path) -> None:
    specs = tmp_path / "sweeps"
    specs.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DEMO_WORKDIR": str(tmp_path),
        "DEMO_SPEC_A": str(_reduced_spec("demo_part_a.yaml", specs)),
        "DEMO_SPEC_B": str(_reduced_spec("demo_part_b.yaml", specs)),
        "DEMO_DATA_ARGS": "--source-copies 2 --letter-images 100",
        "PYTHON": sys.executable,
        "SWEEPER": str(bin_dir / "sweeper"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", str(REPO / "demo" / "run.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    # Generated data stays in the working folder, the store and report in SWEEPER_HOME.
    assert (tmp_path / ".sweeper" / "demo" / "backbone.pt").is_file()
    [report_dir] = (isolated_env / "reports").glob("demo-*")
    report = json.loads((report_dir / "report.json").read_text())
    part_a, part_b = report["part_a"]["test_accuracy"], report["part_b"]["test_accuracy"]
    assert part_b > part_a

    markdown = (report_dir / "report.md").read_text()
    html = (report_dir / "report.html").read_text()
    for number in (pct(part_a), pct(part_b)):
        assert number in markdown
        assert number in html
    assert f"Part A (CNN from scratch)      test accuracy: {100 * part_a:.1f} %" in done.stdout
    assert f"Part B (fine-tuned resnet18)   test accuracy: {100 * part_b:.1f} %" in done.stdout
