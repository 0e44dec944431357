"""The sweep report: Markdown, a self-contained HTML page and JSON.

A trainer sweep's report compares Part A with Part B; a program sweep's (the user's own
script) ranks its runs on the user's metric (`reports.analysis`).

>>> from reports import build_report  # build_report(backend, ["sweep-id"], out_dir=Path("out"))
"""

from __future__ import annotations

from reports.build import FORMATS, ReportResult, build_report, write_report
from reports.data import Reference, ReportData, gather, sweep_kind

__all__ = [
    "FORMATS",
    "Reference",
    "ReportData",
    "ReportResult",
    "build_report",
    "gather",
    "sweep_kind",
    "write_report",
]
