"""Security: no checkpoint or cache file can run code when loaded; hostile sweep names and
config strings stay text and stay inside the home; no API key leaks; the store and logs are
user-only.

Most checks read one end-to-end user story (`hostile`): with WANDB_API_KEY set to a marker,
a sweep named `../../<script>...` whose data_dir values are a real dataset and an HTML tag is
created through the CLI, run by `sweeper agent` with the real trainer (wandb offline), shown
with `status`/`ls` and reported with `report`; then the W&B paths against a stand-in server
on 127.0.0.1 (`sweeper sync` under 401, `sweeper create --backend wandb` under 429).
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from sweeper.paths import Home
from tests.reliability.reliability_kit import sweeper, write_spec
from tests.standin_http import standin
from trainer import TrainConfig, WeightsError, train
from trainer.checkpoint import load_checkpoint
from trainer.imagecache import ImageCache
from trainer.models import build_model

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("sweeper", "agent", "trainer", "reports")
SECRET = "sk-reliability-marker-6f1c2e9a0b7d4c3e8a5f1b2c3d4e5f60"
SWEEP_NAME = "../../<script>alert('name')</script>"
EVIL_DATA_DIR = "<img src=x onerror=alert('cfg')>"
TINY_CNN = {
    "model": "cnn",
    "mode": "scratch",
    "weights": "none",
    "image_size": 16,
    "batch_size": 8,
    "num_workers": 0,
    "filters": 4,
    "dense_units": 8,
    "epochs": 1,
}


# --- pickles that run code ------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs `touch <marker>`: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A .pt file that runs code when unpickled, and the marker file it would create.

    It is proven live: an unsafe `torch.load` in a subprocess does create the marker.
    """
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": RunsCode(marker)}, path)
    unsafe = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", unsafe], check=True, capture_output=True)
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_a_checkpoint_that_runs_code_is_refused_without_running_it(
    evil_checkpoint: tuple[Path, Path], image_folder: Path, tmp_path: Path
) -> None:
    path, marker = evil_checkpoint
    config = TrainConfig(
        data_dir=str(image_folder),
        **{**TINY_CNN, "mode": "full", "weights": str(path)},
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(WeightsError, match="cannot be loaded"):
        load_checkpoint(build_model(config, 3), path)
    with pytest.raises(WeightsError, match="cannot be loaded"):
        train(config)
    assert not marker.exists()


def test_a_cache_file_that_runs_code_is_rebuilt_without_running_it(
    evil_checkpoint: tuple[Path, Path], tmp_path: Path
) -> None:
    path, marker = evil_checkpoint
    cache = ImageCache(tmp_path / "cache")
    cache.path_for("k").parent.mkdir(parents=True)
    cache.path_for("k").write_bytes(path.read_bytes())
    assert cache.read("k", 16) is None  # unreadable means "rebuild", never "run"
    assert not marker.exists()


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call of `*.name(...)` in the product packages."""
    found = []
    for package in PRODUCT:
        for file in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == name
                ):
                    found.append((file, node))
    return found


def test_every_torch_load_in_the_product_passes_weights_only_true() -> None:
    loads = [(f, call) for f, call in _calls("load") if ast.unparse(call.func) == "torch.load"]
    assert loads, "no torch.load found: the scan is broken"
    for file, call in loads:
        flags = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert flags.get("weights_only") == "True", f"{file}:{call.lineno}"
    for name in ("loads", "load", "Unpickler"):
        assert not [f for f, call in _calls(name) if ast.unparse(call.func).startswith("pickle.")]


# --- the hostile user story -------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """What the hostile story left: its folders, the sweep id and every command's output."""

    root: Path
    work: Path
    home: Path
    sweep_id: str
    outputs: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Hostile:
    # One level down, so that root.parent (searched for escaped paths) holds nothing but
    # this test's files: other tests' temp folders sit beside the mktemp folder.
    root = tmp_path_factory.mktemp("hostile") / "root"
    root.mkdir()
    work = root / "work"
    work.mkdir()
    agent_tests = str(ROOT / "tests" / "agent")
    env = {k: v for k, v in os.environ.items() if k not in ("SWEEPER_HOME", "WANDB_DIR")}
    env.update(
        WANDB_API_KEY=SECRET,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HOME=str(root / "user-home"),
        NETRC=str(root / "no-netrc"),
        XDG_CACHE_HOME=str(root / "xdg-cache"),
        PYTHONPATH=os.pathsep.join(p for p in (agent_tests, env.get("PYTHONPATH")) if p),
    )
    parameters = {name: {"value": value} for name, value in TINY_CNN.items()}
    parameters["data_dir"] = {"values": [str(image_folder), EVIL_DATA_DIR]}
    spec = write_spec(work / "hostile.yaml", parameters)
    previous = os.umask(0o022)  # the usual umask: what user-only modes must not rely on

    def run(key: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        outputs[key] = sweeper(*args, env={**env, **extra}, cwd=work)
        return outputs[key]

    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        created = run(
            "create", "create", str(spec), "--name", SWEEP_NAME, "--backend", "local", "--json"
        )
        assert created.returncode == 0, created.stderr
        run("agent", "agent", "--gpus", "none", "--heartbeat", "2")
        for key, *args in (
            ("status", "status"),
            ("status --json", "status", "--json"),
            ("ls --json", "ls", "--json"),
            ("report", "report"),
            ("report --json", "report", "--json"),
            ("unknown sweep", "status", "no-such-sweep"),
        ):
            run(key, *args)
        # The W&B paths, against a stand-in server: the login check, the upload, retries.
        with standin(401) as url:
            run("sync under 401", "sync", WANDB_BASE_URL=url)
        with standin(429) as url:
            run(
                "create --backend wandb under 429",
                *("create", str(spec), "--backend", "wandb"),
                WANDB_BASE_URL=url,
                SWEEPER_WANDB_TIMEOUT="2",
            )
    finally:
        os.umask(previous)
    return Hostile(root, work, work / ".sweeper", json.loads(created.stdout)["id"], outputs)


@pytest.mark.slow
def test_the_hostile_story_runs_and_reports_without_a_traceback(hostile: Hostile) -> None:
    for key, result in hostile.outputs.items():
        assert "Traceback" not in result.stdout + result.stderr, key
        failing = ("unknown sweep", "sync under 401", "create --backend wandb under 429")
        assert result.returncode == (2 if key in failing else 0), (key, result.stderr)
    runs = {
        Path(r["config"]["data_dir"]).name: r
        for r in json.loads(hostile.outputs["status --json"].stdout)["runs"]
    }
    assert [r["state"] for r in runs.values()].count("finished") == 1
    assert (
        runs[EVIL_DATA_DIR]["state"] == "failed" and EVIL_DATA_DIR in runs[EVIL_DATA_DIR]["reason"]
    )


@pytest.mark.slow
def test_paths_built_from_a_hostile_sweep_name_stay_inside_the_home(hostile: Hostile) -> None:
    allowed = (hostile.home, hostile.root / "user-home", hostile.root / "xdg-cache")
    outside = [
        p
        for p in hostile.root.rglob("*")
        if p.is_file() and not any(p.is_relative_to(a) for a in allowed)
    ]
    assert outside == [hostile.work / "hostile.yaml"]
    everything = hostile.root.parent.rglob("*")
    assert not [p for p in everything if "script" in p.name or p.name == "x"]
    report = hostile.home / "reports" / hostile.sweep_id
    assert {p.name for p in report.iterdir()} >= {"report.md", "report.html", "report.json"}


@pytest.mark.slow
def test_names_config_strings_and_errors_are_escaped_in_html_and_markdown(hostile: Hostile) -> None:
    report = hostile.home / "reports" / hostile.sweep_id
    html = (report / "report.html").read_text()
    # In a fenced code block (the spec as written) Markdown shows text literally: leave those out.
    markdown = re.sub(r"(`{3,})[^\n]*\n.*?\n\1", "", (report / "report.md").read_text(), flags=re.S)
    for raw in ("<script>alert", "<img src=x"):
        assert raw not in html and raw not in markdown
    assert "&lt;script&gt;alert(" in html  # the sweep name, as text
    assert "&lt;img src=x onerror=alert(" in html  # the config string and the run's error
    report_json = json.loads((report / "report.json").read_text())
    assert SWEEP_NAME in json.dumps(report_json, ensure_ascii=False)  # JSON keeps the data as is


@pytest.mark.slow
def test_the_api_key_appears_in_no_output_log_report_or_store(hostile: Hostile) -> None:
    for key, result in hostile.outputs.items():
        assert SECRET not in result.stdout + result.stderr, key
    files = [p for p in hostile.root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)  # wandb's offline run files were written
    leaked = [p for p in files if SECRET.encode() in p.read_bytes()]
    assert leaked == []


@pytest.mark.slow
def test_the_home_store_and_logs_are_user_only(hostile: Hostile) -> None:
    home = Home(hostile.home)
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700
    for db in home.root.glob("store.db*"):
        assert stat.S_IMODE(db.stat().st_mode) == 0o600, db
    logs = list((home.root / "logs").rglob("*"))
    assert home.agent_log_path(hostile.sweep_id) in logs and len(logs) >= 4  # folder, agent, 2 runs
    for path in [home.root / "logs", *logs]:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
