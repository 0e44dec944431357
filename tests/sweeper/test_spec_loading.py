"""Loading a spec file: unreadable, binary, oversized and malformed files are SpecErrors
naming the file and the place; YAML merge keys still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.errors import SpecError
from sweeper.spec import load_spec
from sweeper.spec.loading import load_yaml, read_text

SPEC = b"method: random\nmetric: {name: val_loss}\nparameters:\n  data_dir: {value: d}\n  lr: {values: [0.1, 0.01]}\n"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"# only a comment\n\n", "is empty", id="comment-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file", id="binary"),
        pytest.param(b"method: \xff\xfe bayes\n", "not UTF-8", id="not-utf8"),
        pytest.param(b"- method: bayes\n- metric: x\n", "the top level is a list", id="list"),
        pytest.param(b"just text", "the top level is 'just text'", id="scalar"),
        pytest.param(
            b"method: bayes\nmetric: {name: x\n", "line 3, column 1: not valid YAML", id="syntax"
        ),
        pytest.param(b"method: bayes\n\tmetric: x\n", "line 2, column 1: not valid YAML", id="tab"),
        pytest.param(b"a: 1\n---\nb: 2\n", "not valid YAML", id="two-documents"),
        pytest.param(b"a: &x [*x]\n", "a: nested too deeply", id="recursive-alias"),
        pytest.param(b"[" * 5000, "not valid YAML", id="deep-nesting"),
        pytest.param(b"x: !!python/object:os.system ls\n", "not valid YAML", id="python-tag"),
        pytest.param(
            b"a: 1\na: 2\n", "a (line 2, column 1): the key 'a' is given twice", id="duplicate"
        ),
    ],
)
def test_unreadable_files_are_spec_errors(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.source == str(path)
    assert fragment in str(caught.value), caught.value


def test_missing_file_and_folder_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="is a folder"):
        load_spec(tmp_path)


def test_oversized_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# padding\n" * 200_000)
    with pytest.raises(SpecError, match="larger than 1 MiB"):
        load_spec(path)


def test_load_spec_reads_a_file_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + SPEC)
    assert read_text(path).startswith("method")
    assert load_spec(path).raw["parameters"]["lr"] == {"values": [0.1, 0.01]}


def test_yaml_merge_keys_may_override() -> None:
    text = "dropout:\n  <<: {value: 0.1}\n  value: 0.2\n"
    assert load_yaml(text, "<string>") == {"dropout": {"value": 0.2}}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("when: 2020-01-01\n", "when: datetime.date(2020, 1, 1) is a YAML date"),
        ("1: x\n", "the key 1 is a YAML int"),
        ("x: .nan\n", "x: nan is not a finite number"),
    ],
)
def test_values_must_be_plain_data(text: str, fragment: str) -> None:
    from sweeper.spec.loading import plain_data_problems

    problems = plain_data_problems(load_yaml(text, "<string>"))
    assert any(fragment in p for p in problems), problems
