"""demo.dataset: deterministic, disjoint, correctly laid out, atomic and cached digit datasets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from sklearn.datasets import load_digits

from demo import dataset
from demo.dataset import (
    CLASS_NAMES,
    LETTER_FONTS,
    DemoDataSpec,
    build_demo_data,
    is_built,
    letter_cells,
    letter_class,
    render_digit,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _files(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root`."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _count(folder: Path) -> dict[str, int]:
    return {d.name: len(list(d.iterdir())) for d in sorted(folder.iterdir())}


def test_same_spec_gives_byte_identical_files(tmp_path: Path, small_spec: DemoDataSpec) -> None:
    first = build_demo_data(tmp_path / "a", small_spec)
    second = build_demo_data(tmp_path / "b", small_spec)
    assert first.built and second.built
    assert _files(first.root) == _files(second.root)


def test_other_seed_gives_other_images(tmp_path: Path, small_spec: DemoDataSpec) -> None:
    one = _files(build_demo_data(tmp_path / "a", small_spec).root)
    other = _files(build_demo_data(tmp_path / "b", small_spec.model_copy(update={"seed": 1})).root)
    shared = set(one) & set(other) - {"stamp.json"}
    assert all(one[name] != other[name] for name in shared)


def test_source_and_target_classes_are_disjoint_and_consistent(
    tmp_path: Path, small_spec: DemoDataSpec
) -> None:
    data = build_demo_data(tmp_path / "data", small_spec)
    source = {d.name for d in (data.source / "train").iterdir()}
    target = {d.name for d in (data.target / "train").iterdir()}
    assert source == {CLASS_NAMES[d] for d in small_spec.source_digits} | {
        "letter_a",
        "letter_k",
        "letter_z",
    }
    assert target == {CLASS_NAMES[d] for d in small_spec.target_digits}
    assert not source & target
    assert {d.name for d in (data.source / "val").iterdir()} == source
    assert {d.name for d in (data.target / "val").iterdir()} == target


def test_counts_per_split(tmp_path: Path, small_spec: DemoDataSpec) -> None:
    data = build_demo_data(tmp_path / "data", small_spec)
    n_test = round(30 * small_spec.source_test_fraction)
    source_train, source_val = _count(data.source / "train"), _count(data.source / "val")
    letters = {letter_class(letter) for letter in small_spec.source_letters}
    assert {source_train[c] for c in letters} == {20 - 2}
    assert {source_val[c] for c in letters} == {2}
    assert {n for c, n in source_train.items() if c not in letters} == {
        (30 - n_test) * small_spec.source_copies
    }
    assert {n for c, n in source_val.items() if c not in letters} == {n_test}
    assert set(_count(data.target / "train").values()) == {5}
    assert set(_count(data.target / "val").values()) == {30 - 5}


def test_target_train_and_test_use_different_digits(
    tmp_path: Path, small_spec: DemoDataSpec
) -> None:
    data = build_demo_data(tmp_path / "data", small_spec)
    # File names start with the index of the original scikit-learn digit.
    train = {p.name.split("_")[0] for p in (data.target / "train").rglob("*.png")}
    test = {p.name.split("_")[0] for p in (data.target / "val").rglob("*.png")}
    assert not train & test


def test_images_are_real_png_files_of_the_right_size(
    tmp_path: Path, small_spec: DemoDataSpec
) -> None:
    data = build_demo_data(tmp_path / "data", small_spec)
    files = sorted(data.root.rglob("*.png"))
    assert len(files) == sum(len(list(p.iterdir())) for p in data.root.glob("*/*/*"))
    for path in files[:: max(1, len(files) // 25)]:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert (image.mode, image.size) == ("RGB", (32, 32))
            assert np.asarray(image).std() > 10  # a drawn digit, not a flat canvas


def test_second_build_is_skipped_and_a_new_spec_rebuilds(
    tmp_path: Path, small_spec: DemoDataSpec
) -> None:
    root = tmp_path / "data"
    build_demo_data(root, small_spec)
    before = _files(root)
    assert build_demo_data(root, small_spec).built is False
    assert _files(root) == before
    bigger = small_spec.model_copy(update={"target_train_per_class": 6})
    assert build_demo_data(root, bigger).built is True
    assert is_built(root, bigger) and not is_built(root, small_spec)
    assert set(_count(root / "target" / "train").values()) == {6}
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging or old copies left


def test_a_failed_build_leaves_the_previous_one_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_spec: DemoDataSpec
) -> None:
    root = tmp_path / "data"
    build_demo_data(root, small_spec)
    before = _files(root)

    def broken(*args: object, **kwargs: object) -> np.ndarray:
        raise OSError("disk full")

    monkeypatch.setattr(dataset, "render_digit", broken)
    with pytest.raises(OSError, match="disk full"):
        build_demo_data(root, small_spec.model_copy(update={"seed": 3}))
    assert _files(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_digits": (4, 5, 6)}, "must not share digits"),
        ({"source_digits": (1, 1, 2)}, "distinct digits"),
        ({"target_digits": (9, 10)}, "distinct digits"),
        ({"max_per_class": 20, "target_train_per_class": 25}, "test set"),
        ({"source_letters": "ABA"}, "must not repeat"),
        ({"source_letters": "ab"}, "pattern"),
    ],
)
def test_bad_specs_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DemoDataSpec(**changes)


def test_render_digit_depends_only_on_its_generator() -> None:
    digit = np.tile(np.arange(8.0), (8, 1)) * 2
    first = render_digit(digit, np.random.default_rng(5))
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render_digit(digit, np.random.default_rng(5)))
    assert not np.array_equal(first, render_digit(digit, np.random.default_rng(6)))


@pytest.mark.parametrize("font_name", LETTER_FONTS)
def test_every_font_draws_every_letter_as_digit_cells(font_name: str) -> None:
    cells = {
        letter: letter_cells(letter, font_name, np.random.default_rng([0, ord(letter)]))
        for letter in ALPHABET
    }
    for letter, grid in cells.items():
        assert grid.shape == (8, 8) and grid.min() >= 0 and grid.max() <= 16, letter
        # Ink in the middle rows and a blank margin somewhere, like a scanned digit.
        assert grid[2:6].sum() > 8 and grid.min() == 0, letter
    # The fonts' capitals are letters, not one fallback box drawn 26 times.
    assert len({grid.tobytes() for grid in cells.values()}) == len(ALPHABET)


def test_letters_vary_with_the_generator_and_look_like_their_letter() -> None:
    draws = [letter_cells("L", "DejaVuSans.ttf", np.random.default_rng(seed)) for seed in range(8)]
    assert len({grid.tobytes() for grid in draws}) > 1
    assert np.array_equal(draws[0], letter_cells("L", "DejaVuSans.ttf", np.random.default_rng(0)))
    # An L: more ink in the left half than the right one, and in the bottom row than the top.
    for grid in draws:
        assert grid[:, :4].sum() > grid[:, 4:].sum()
        ink_rows = np.flatnonzero(grid.sum(axis=1))
        assert grid[ink_rows[-1]].sum() > grid[ink_rows[0]].sum()


@pytest.mark.slow
def test_default_build_is_the_demo_dataset(tmp_path: Path) -> None:
    data = build_demo_data(tmp_path / "data")
    source_train = _count(data.source / "train")
    target_train = _count(data.target / "train")
    assert set(source_train) == {CLASS_NAMES[d] for d in range(5)} | {
        letter_class(letter) for letter in ALPHABET
    }
    assert 6800 <= sum(source_train.values()) <= 7400
    assert target_train == {CLASS_NAMES[d]: 20 for d in range(5, 10)}
    available = np.bincount(load_digits().target)
    assert _count(data.target / "val") == {CLASS_NAMES[d]: available[d] - 20 for d in range(5, 10)}
