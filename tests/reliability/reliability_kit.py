"""Helpers for the reliability tests: the CLI as a subprocess, spec files, store checks, messy data.

Fixtures are in conftest.py; the agent's helpers (make_sweep, AgentThread, ...) are imported
from tests/agent/agent_testkit.py.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from sweeper.models import TERMINAL_RUN_STATES, Run, RunState
from tests.imagefolder import write_image_folder

#: Generous bound for a CLI command; they normally take a second or two.
CLI_TIMEOUT_S = 180.0

#: Class folder names of the messy dataset: spaces, accents, an emoji.
MESSY_CLASSES = ("Grey heron é", "fungi 🍄 spp")
#: Files of train/<first class>/ that must be skipped, with a word their reason contains.
MESSY_SKIPPED = {
    "bomb.png": "decompression bomb",
    "empty.jpg": "empty",
    "loop": "loop",
    "notes.jpg": "not an image",
    "self.jpg": "symlink loop",
    "truncated.jpg": "truncated",
}
#: Files of train/<first class>/ that load after conversion, besides the good ones.
MESSY_CONVERTED = ("gray.png", "rgba.png", "sixteen_bit.png")
MESSY_GOOD_PER_CLASS = 4


def sweeper(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m sweeper ARGS` to the end, as a user would; output is captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=CLI_TIMEOUT_S,
    )


def start_sweeper(*args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    """Start `python -m sweeper ARGS` in the background, stderr merged into stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """The command failed with exit 2 and one error paragraph naming `words`, no traceback
    (warnings logged on the way, such as a log line that could not be written, may precede it)."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    # Paths are left out: a word found only in the test's own folder names proves nothing.
    message = " ".join(word for word in result.stderr.split() if "/" not in word)
    for word in words:
        assert word in message, output


def write_spec(path: Path, parameters: dict[str, Any], method: str = "grid", **top: Any) -> Path:
    """Write a sweep YAML: `parameters` as given plus data_dir, maximising val_accuracy."""
    spec = {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"data_dir": {"value": "data"}, **parameters},
        **top,
    }
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def integrity(store: Path) -> str:
    """SQLite's own verdict on the store file ('ok' when every page and index is sound)."""
    conn = sqlite3.connect(store)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def states(runs: list[Run]) -> Counter[RunState]:
    """How many runs are in each state."""
    return Counter(run.state for run in runs)


def assert_drained(runs: list[Run], configs: list[tuple[Any, ...]], *names: str) -> None:
    """Every run ended; each config of the space finished exactly once; every crash has a reason."""
    assert all(run.state in TERMINAL_RUN_STATES for run in runs), states(runs)
    finished = sorted(
        tuple(r.config[n] for n in names) for r in runs if r.state == RunState.finished
    )
    assert finished == sorted(configs)
    assert all(r.reason for r in runs if r.state in (RunState.crashed, RunState.failed))


def write_messy_folder(root: Path, empty_class: str | None = None) -> Path:
    """An ImageFolder with MESSY_CLASSES (4 good 20 px images per split and class), and in
    train/<first class>/ the MESSY_CONVERTED and MESSY_SKIPPED files: grayscale, RGBA and
    16-bit PNGs; a real decompression bomb (a 10,000 x 10,000 PNG of ~10 KB), zero bytes,
    text named .jpg, a truncated JPEG, a self-referencing symlink and a symlink to its own
    folder. `empty_class` adds a class folder with no image in train/ and val/.
    """
    write_image_folder(
        root,
        classes=MESSY_CLASSES,
        n_train=MESSY_GOOD_PER_CLASS,
        n_test=MESSY_GOOD_PER_CLASS,
        size=20,
    )
    folder = root / "train" / MESSY_CLASSES[0]
    Image.new("L", (20, 20), 90).save(folder / "gray.png")
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (200, 30, 30, 255)
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(np.full((20, 20), 40_000, dtype=np.uint16)).save(folder / "sixteen_bit.png")
    Image.new("1", (10_000, 10_000)).save(folder / "bomb.png", optimize=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("field notes, not a photo\n")
    good = next(folder.glob("*_000.jpg")).read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    os.symlink("self.jpg", folder / "self.jpg")
    os.symlink(".", folder / "loop")
    if empty_class is not None:
        for split in ("train", "val"):
            (root / split / empty_class).mkdir()
    return root
