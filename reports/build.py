"""`build_report`: gather from a backend, analyse, plot, and write every format atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from reports.analysis import analyze
from reports.data import ReportData, environment_info, gather
from reports.plots import all_plots
from reports.writers import (
    PLOTS_DIR,
    json_safe,
    render_html,
    render_markdown,
    to_json,
    write_atomic,
)
from sweeper.backends.base import Backend
from sweeper.errors import SweeperError, did_you_mean

#: Every format `build_report` can write, with its file name.
FORMATS = {"md": "report.md", "html": "report.html", "json": "report.json"}


class ReportResult(BaseModel):
    """What `build_report` wrote: a path per format, the Markdown's plot files, and the
    report dict (equal to the content of report.json)."""

    paths: dict[str, Path]
    plots: dict[str, Path] = Field(
        default_factory=dict, description="SVG files report.md links to."
    )
    report: dict[str, Any]


def build_report(
    backend: Backend,
    sweep_ids: list[str],
    *,
    baseline: str | os.PathLike[str] | None = None,
    out_dir: Path,
    formats: Iterable[str] = frozenset(FORMATS),
    environment: dict[str, Any] | None = None,
) -> ReportResult:
    """Write the report of `sweep_ids` (ids or names) into `out_dir`.

    Trainer sweeps get the Part A vs Part B report; program sweeps (the user's own script)
    the same report without the trainer's sections; one call never mixes the two kinds
    (`reports.data.check_comparable`). `baseline` is None (Part A = the sweeps' best scratch run), a sweep (its best scratch
    run, else its best run) or a JSON file of published numbers shown as a third column.
    `environment` entries are added to the versions and hardware the report lists.

    Raises:
        SweeperError: unknown format or sweep, unreadable baseline file, unwritable out_dir,
            sweeps one report cannot hold (trainer and program sweeps, different metrics).
    """
    chosen = _check_formats(formats)
    data = gather(backend, sweep_ids, baseline)
    return write_report(data, out_dir=out_dir, formats=chosen, environment=environment)


def write_report(
    data: ReportData,
    *,
    out_dir: Path,
    formats: Iterable[str] = frozenset(FORMATS),
    environment: dict[str, Any] | None = None,
) -> ReportResult:
    """The part of `build_report` after gathering: works on plain `ReportData`."""
    chosen = _check_formats(formats)
    report = json_safe(analyze(data, environment_info(environment)))
    # Everything is rendered before the first write, so a failure leaves the old report whole.
    plots = all_plots(report) if chosen & {"md", "html"} else {}
    texts: dict[str, str] = {}
    if "md" in chosen:
        links = {name: f"{PLOTS_DIR}/{name}.svg" for name in plots}
        texts["md"] = render_markdown(report, links)
    if "html" in chosen:
        texts["html"] = render_html(report, plots)
    if "json" in chosen:
        texts["json"] = to_json(report)
    out = Path(out_dir)
    try:
        plot_paths = _write_plot_files(out / PLOTS_DIR, plots) if "md" in chosen else {}
        paths = {fmt: write_atomic(out / FORMATS[fmt], text) for fmt, text in texts.items()}
    except OSError as e:
        raise SweeperError(
            f"Cannot write the report into {str(out)!r}: {e.strerror or e}."
        ) from None
    return ReportResult(paths=paths, plots=plot_paths, report=report)


def _check_formats(formats: Iterable[str]) -> set[str]:
    chosen = set(formats)
    unknown = sorted(chosen - FORMATS.keys())
    if unknown:
        hints = "".join(did_you_mean(u, FORMATS) for u in unknown)
        raise SweeperError(
            f"Unknown report format {', '.join(unknown)}{hints}: choose from {', '.join(FORMATS)}."
        )
    if not chosen:
        raise SweeperError(f"No report format chosen: choose from {', '.join(FORMATS)}.")
    return chosen


def _write_plot_files(folder: Path, plots: dict[str, str]) -> dict[str, Path]:
    """Write each plot as `<name>.svg` and remove plots a previous report left behind."""
    written = {name: write_atomic(folder / f"{name}.svg", svg) for name, svg in plots.items()}
    if folder.is_dir():
        for stale in folder.glob("*.svg"):
            if stale not in written.values():
                stale.unlink()
    return written
