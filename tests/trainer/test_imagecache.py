"""Tests for trainer.imagecache: the decoded-image disk cache and its concurrency contract."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from trainer.errors import DataError
from trainer.imagecache import FORMAT_VERSION, DecodedImages, ImageCache, resolve_cache_dir

REPO = Path(__file__).resolve().parents[2]
KEY = "ab" * 32
SIZE = 16


def decoded(fill: int = 7, count: int = 3) -> DecodedImages:
    """`count` images of one value, with paths and one skipped file."""
    return DecodedImages(
        images=torch.full((count, 3, SIZE, SIZE), fill, dtype=torch.uint8),
        paths=[f"train/c/{i}.jpg" for i in range(count)],
        skipped=["train/c/bad.jpg: truncated"],
    )


class Builder:
    """A build function that counts its calls."""

    def __init__(self, result: DecodedImages) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> DecodedImages:
        self.calls += 1
        return self.result


def assert_same(a: DecodedImages, b: DecodedImages) -> None:
    assert torch.equal(a.images, b.images)
    assert (a.paths, a.skipped) == (b.paths, b.skipped)


def test_resolve_cache_dir_prefers_the_argument_then_xdg_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_dir(tmp_path / "given") == tmp_path / "given"
    assert resolve_cache_dir(None) == tmp_path / "xdg" / "sweeper"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_cache_dir(None) == tmp_path / "home" / ".cache" / "sweeper"


def test_a_miss_builds_and_a_hit_reads_the_file(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path)
    builder = Builder(decoded())
    first = cache.get_or_build(KEY, SIZE, builder)
    second = cache.get_or_build(KEY, SIZE, builder)
    assert builder.calls == 1
    assert_same(first, second)
    assert sorted(p.name for p in cache.folder.iterdir()) == [f"{KEY}.pt", f"{KEY}.pt.lock"]


def test_writing_into_loaded_images_leaves_the_file_alone(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path)
    cache.get_or_build(KEY, SIZE, Builder(decoded(fill=7)))
    loaded = cache.read(KEY, SIZE)
    assert loaded is not None
    loaded.images.add_(1)  # the file is memory-mapped copy-on-write, never written through
    again = cache.read(KEY, SIZE)
    assert again is not None
    assert_same(again, decoded(fill=7))


def test_read_of_a_missing_key_is_none(tmp_path: Path) -> None:
    assert ImageCache(tmp_path).read(KEY, SIZE) is None


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage\xff" * 10)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _payload(**changes: object) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        good = decoded()
        payload = {
            "format": FORMAT_VERSION,
            "key": KEY,
            "images": good.images,
            "paths": good.paths,
            "skipped": good.skipped,
        }
        payload.update(changes)
        torch.save(payload, path)

    return write


@pytest.mark.parametrize(
    "corrupt",
    [
        _garbage,
        _truncated,
        _payload(format=FORMAT_VERSION + 1),
        _payload(key="cd" * 32),
        _payload(images=torch.zeros((3, 3, SIZE, SIZE), dtype=torch.float32)),
        _payload(images=torch.zeros((2, 3, SIZE, SIZE), dtype=torch.uint8)),
        _payload(images=torch.zeros((3, 3, SIZE + 1, SIZE + 1), dtype=torch.uint8)),
        _payload(paths="train/c/0.jpg"),
        _payload(skipped=[1, 2]),
        lambda path: torch.save([1, 2, 3], path),
    ],
    ids=[
        "garbage",
        "truncated",
        "format",
        "key",
        "dtype",
        "count",
        "size",
        "paths",
        "skipped",
        "not-a-dict",
    ],
)
def test_a_corrupt_or_mismatched_file_is_rebuilt(
    tmp_path: Path, corrupt: Callable[[Path], None]
) -> None:
    cache = ImageCache(tmp_path)
    cache.get_or_build(KEY, SIZE, Builder(decoded()))
    corrupt(cache.path_for(KEY))
    assert cache.read(KEY, SIZE) is None
    rebuild = Builder(decoded(fill=9))
    assert_same(cache.get_or_build(KEY, SIZE, rebuild), decoded(fill=9))
    assert rebuild.calls == 1
    cached = cache.read(KEY, SIZE)
    assert cached is not None
    assert_same(cached, decoded(fill=9))


def test_a_failed_build_leaves_no_file_behind(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path)

    def failing() -> DecodedImages:
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        cache.get_or_build(KEY, SIZE, failing)
    assert [p.name for p in cache.folder.iterdir()] == [f"{KEY}.pt.lock"]


def test_a_cache_dir_that_cannot_be_created_is_a_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache root is a file, so no folder can be made inside it")
    with pytest.raises(DataError, match=r"cannot write the image cache.*feature_cache: false"):
        ImageCache(blocker).get_or_build(KEY, SIZE, Builder(decoded()))


def test_an_empty_split_round_trips(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path)
    empty = DecodedImages(
        torch.empty((0, 3, SIZE, SIZE), dtype=torch.uint8), [], ["a.jpg: empty file"]
    )
    cache.get_or_build(KEY, SIZE, Builder(empty))
    cached = cache.read(KEY, SIZE)
    assert cached is not None
    assert_same(cached, empty)


BUILDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from trainer.imagecache import DecodedImages, ImageCache

    root, work, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    (work / f"ready-{name}").touch()
    while not (work / "go").exists():
        time.sleep(0.01)

    def build():
        (work / f"built-{name}").touch()
        time.sleep(0.5)  # a second builder without the lock would start decoding meanwhile
        images = torch.arange(2 * 3 * 16 * 16).remainder(251).to(torch.uint8).view(2, 3, 16, 16)
        return DecodedImages(images=images, paths=["a.jpg", "b.jpg"], skipped=[])

    result = ImageCache(root).get_or_build(sys.argv[4], 16, build)
    print(int(result.images.long().sum()), ",".join(result.paths))
    """
)


@pytest.mark.slow
def test_two_processes_building_at_once_make_one_valid_cache(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "builder.py"
    script.write_text(BUILDER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(work), name, KEY],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((work / f"ready-{name}").exists() for name in ("one", "two")):
            assert time.monotonic() < deadline, "builder processes did not start"
            assert all(proc.poll() is None for proc in procs), [p.communicate() for p in procs]
            time.sleep(0.02)
        (work / "go").touch()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0] != ""
    assert len(list(work.glob("built-*"))) == 1
    cache = ImageCache(tmp_path / "cache")
    assert sorted(p.name for p in cache.folder.iterdir()) == [f"{KEY}.pt", f"{KEY}.pt.lock"]
    cached = cache.read(KEY, 16)
    assert cached is not None and cached.paths == ["a.jpg", "b.jpg"]
