"""SVG plots: drawn from the report dict, escaped, and inlinable without network references."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from reports import ReportData
from reports.analysis import analyze
from reports.plots import PLOT_NAMES, all_plots, inline_svg, learning_curves, parallel_coordinates

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def report(mixed_data: ReportData) -> dict[str, Any]:
    """The mixed sweep's report with a hostile run id, class name and categorical value."""
    runs = list(mixed_data.runs)
    runs[0] = runs[0].model_copy(
        update={"id": EVIL, "config": {**runs[0].config, "mode": "--><b>x</b>"}}
    )
    summary = runs[0].summary
    runs[0].summary.update(
        class_names=[EVIL, *summary["class_names"][1:]],
        per_class_accuracy={EVIL: 0.5, "aves": 0.7, "fungi": 0.9},
    )
    return analyze(mixed_data.model_copy(update={"runs": runs}))


def test_every_plot_is_valid_svg_with_hostile_text_escaped(report: dict[str, Any]) -> None:
    plots = all_plots(report)
    assert set(plots) == set(PLOT_NAMES)
    for name, svg in plots.items():
        root = ET.fromstring(svg.encode())  # well-formed: no markup was injected
        assert root.tag.endswith("svg"), name
        assert not [e for e in root.iter() if e.tag.endswith("script")], name
        assert EVIL not in svg and "<b>" not in svg, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in plots["learning_curves"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in plots["confusion_matrix"]


def test_inline_svg_has_no_urls_and_unique_ids(report: dict[str, Any]) -> None:
    plots = all_plots(report)
    fragments = [inline_svg(svg, name) for name, svg in plots.items()]
    page = "".join(fragments)
    assert not re.search(r"https?://", page)
    assert all(f.startswith("<svg") for f in fragments)
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r"url\(#([^)]+)\)", page):
        assert ref in ids


def test_plots_are_deterministic(report: dict[str, Any]) -> None:
    assert learning_curves(report) == learning_curves(report)


def test_no_data_no_plot(report: dict[str, Any]) -> None:
    empty = {**report, "runs": [], "best": None}
    assert all_plots(empty) == {}
    assert parallel_coordinates({**report, "swept_parameters": []}) is None


def test_learning_curves_show_the_top_runs_only(report: dict[str, Any]) -> None:
    svg = learning_curves(report, top=2)
    assert svg is not None
    assert "run-b4" in svg  # second best
    assert "run-b2" not in svg  # third best
