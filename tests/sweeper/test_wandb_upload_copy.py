"""A program run's `.wandb` file copied for upload: wandb's framing written back exactly,
the sweep id moved to the group, every other record unchanged. The file is one wandb wrote
for a real script (tests/sweeper/program_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.paths import Home
from sweeper.wandb import runfile
from sweeper.wandb.upload_copy import copy_without_sweep, frame
from tests.sweeper.program_runs import write_program_run


@pytest.fixture(scope="module")
def program_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("program")
    return write_program_run(Home(root / "home"), "swp001", "runp01", cwd=root)


def test_framing_a_files_own_records_gives_the_file_back(program_file: Path) -> None:
    data = program_file.read_bytes()
    assert frame(data[:7], runfile.payloads(program_file)) == data


@pytest.mark.parametrize("size", [10, 40_000, 100_000])
def test_a_record_spanning_blocks_reads_back_whole(size: int, tmp_path: Path) -> None:
    records = [b"a" * 5, bytes(range(256)) * (size // 256 + 1), b"z"]
    path = tmp_path / "big.wandb"
    path.write_bytes(frame(b":W&B\xe1\xbe\x00", records))
    assert list(runfile.payloads(path)) == records


def test_the_copy_moves_the_sweep_to_the_group_and_keeps_the_rest(
    program_file: Path, tmp_path: Path
) -> None:
    copied = copy_without_sweep(program_file.parent, program_file, tmp_path)
    assert copied.parent.name == program_file.parent.name  # wandb tells offline runs by it
    before, after = list(runfile.records(program_file)), list(runfile.records(copied))
    kind = [r.WhichOneof("record_type") for r in before]
    assert kind == [r.WhichOneof("record_type") for r in after]
    run = after[kind.index("run")].run
    assert (run.run_id, run.sweep_id, run.run_group) == ("runp01", "", "swp001")
    others = [(a, b) for a, b, k in zip(before, after, kind, strict=True) if k != "run"]
    assert all(a == b for a, b in others)
    assert (copied.parent / "files").is_dir()
