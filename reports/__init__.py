"""The Part A vs Part B report: Markdown, a self-contained HTML page and JSON.

>>> from reports import build_report  # build_report(backend, ["sweep-id"], out_dir=Path("out"))
"""

from __future__ import annotations

from reports.build import FORMATS, ReportResult, build_report, write_report
from reports.data import Reference, ReportData, gather

__all__ = [
    "FORMATS",
    "Reference",
    "ReportData",
    "ReportResult",
    "build_report",
    "gather",
    "write_report",
]
