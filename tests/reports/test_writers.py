"""Formatting, escaping and atomic writing of the report files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reports import ReportData
from reports.analysis import analyze
from reports.writers import (
    code_fence,
    comparison_rows,
    count,
    duration,
    json_safe,
    md_escape,
    pct,
    pp,
    render_html,
    render_markdown,
    to_json,
    write_atomic,
)


@pytest.mark.parametrize(
    ("fmt", "value", "text"),
    [
        (pct, 0.78349, "78.3 %"),
        (pct, 1.0, "100.0 %"),
        (pct, None, "—"),
        (pp, 0.4213, "+42.1 pp"),
        (pp, -0.05, "-5.0 pp"),
        (duration, 12.34, "12.3 s"),
        (duration, 245.2, "4 min 05 s"),
        (duration, 7380.0, "2 h 03 min"),
        (count, 23528522, "23,528,522"),
        (count, None, "—"),
    ],
)
def test_number_formats(fmt: Any, value: Any, text: str) -> None:
    assert fmt(value) == text


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("a|b", "a\\|b"),
        ("batch_size", "batch\\_size"),
        ("[link](http://x)", "\\[link\\](http://x)"),
        ("two\nlines", "two lines"),
        ("`code` *bold*", "\\`code\\` \\*bold\\*"),
        ("AT&T", "AT&amp;T"),
    ],
)
def test_md_escape(raw: str, escaped: str) -> None:
    assert md_escape(raw) == escaped


@pytest.mark.parametrize(
    ("text", "fence"), [("a: 1", "```"), ("a: '```'", "````"), ("x: '`````'", "``````")]
)
def test_code_fence_is_longer_than_any_backtick_run(text: str, fence: str) -> None:
    block = str(code_fence(text, "yaml"))
    assert block.startswith(fence + "yaml\n") and block.endswith("\n" + fence)
    assert block.count(fence) == 2


def test_json_safe_and_to_json_never_write_nan() -> None:
    report = json_safe({"a": float("nan"), "b": (1, float("-inf")), 3: {"c": object}})
    assert report == {"a": None, "b": [1, None], "3": {"c": str(object)}}
    assert json.loads(to_json(report)) == report
    with pytest.raises(ValueError):
        to_json({"a": float("nan")})


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.md"
    write_atomic(target, "first")
    write_atomic(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    write_atomic(target, "old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "half \ud800 written")  # a lone surrogate cannot be encoded
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_comparison_rows(mixed_data: ReportData) -> None:
    rows = {row["label"]: row for row in comparison_rows(analyze(mixed_data))}
    assert (
        rows["Val accuracy"]["a"],
        rows["Val accuracy"]["b"],
        rows["Val accuracy"]["change"],
    ) == ("36.0 %", "79.0 %", "+43.0 pp")
    assert rows["Trainable parameters"]["change"] == "×0.02"
    assert rows["Test accuracy"]["reference"] == "—"


def test_markdown_tables_have_consistent_columns(mixed_data: ReportData) -> None:
    """GitHub renders a table only if every row has as many cells as the header."""
    report = analyze(mixed_data)
    report["runs"][0]["id"] = "pipe|in|name"
    markdown = render_markdown(report, {})
    tables = re.findall(r"(?:^\|.*\|\n)+", markdown, re.MULTILINE)
    assert len(tables) >= 7
    for table in tables:
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(widths) == 1, table


def test_user_strings_in_specs_configs_and_errors_are_escaped_in_html(
    mixed_data: ReportData,
) -> None:
    evil = "<img src=x onerror=alert(1)>"
    sweep = mixed_data.sweeps[0].model_copy(
        update={"name": evil, "spec": {**mixed_data.sweeps[0].spec, "description": evil}}
    )
    runs = list(mixed_data.runs)
    runs[0] = runs[0].model_copy(update={"config": {**runs[0].config, "data_dir": evil}})
    runs[-3] = runs[-3].model_copy(update={"reason": evil})
    report = analyze(mixed_data.model_copy(update={"sweeps": [sweep], "runs": runs}))
    html = render_html(report, {})
    assert evil not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 4  # title, config, spec, error
    markdown = render_markdown(report, {})
    outside_fences = re.sub(r"```yaml\n.*?\n```", "", markdown, flags=re.DOTALL)
    assert evil not in outside_fences
