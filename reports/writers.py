"""Writers: the report dict as report.json, report.md and a self-contained report.html.

Markdown and HTML are two views of the same dict, rendered by jinja2 templates. In HTML
every value is escaped by autoescape; in Markdown every `{{ }}` output goes through
`md_escape` (jinja's `finalize`), so a run named `<script>` or `a|b` stays text. Only the
SVG plots and the YAML code fences are passed through as trusted markup.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from reports.plots import PLOT_NAMES, inline_svg

TEMPLATES = Path(__file__).parent / "templates"
#: Folder next to report.md that holds its SVG plots (Markdown cannot inline them).
PLOTS_DIR = "report_plots"
DASH = "—"


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temp file in the same folder and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def json_safe(value: Any) -> Any:
    """`value` with only JSON types left: non-finite floats become None, tuples lists,
    keys strings, anything else its `str`.

    >>> json_safe({"a": float("nan"), "b": (1, 2.5)})
    {'a': None, 'b': [1, 2.5]}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    return str(value)


def to_json(report: dict[str, Any]) -> str:
    """report.json text; raises ValueError if a NaN slipped through `json_safe`."""
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# -- formatting shared by both templates ------------------------------------------------


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal.

    >>> pct(0.78349), pct(None)
    ('78.3 %', '—')
    """
    return DASH if value is None else f"{100 * value:.1f} %"


def pp(value: float | None) -> str:
    """A difference of fractions in percentage points, signed.

    >>> pp(0.4213)
    '+42.1 pp'
    """
    return DASH if value is None else f"{100 * value:+.1f} pp"


def duration(seconds: float | None) -> str:
    """Seconds as '12.3 s', '4 min 05 s' or '2 h 03 min'.

    >>> duration(245.2)
    '4 min 05 s'
    """
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def number(value: float | None) -> str:
    """A metric of the user's own, in short form (four significant digits).

    >>> number(0.123456), number(1234567.0), number(None)
    ('0.1235', '1.235e+06', '—')
    """
    return DASH if value is None else f"{value:.4g}"


def count(value: float | None) -> str:
    """An integer with thousands separators.

    >>> count(23528522)
    '23,528,522'
    """
    return DASH if value is None else f"{round(value):,}"


def value(item: Any) -> str:
    """A config value as text: floats in short form, None as 'none'.

    >>> value(0.0001), value(True), value("head")
    ('0.0001', 'True', 'head')
    """
    if item is None:
        return "none"
    if isinstance(item, float):
        return f"{item:g}"
    return str(item)


def correlation(item: float | None) -> str:
    """A correlation, signed, two decimals."""
    return DASH if item is None else f"{item:+.2f}"


def share(item: float | None) -> str:
    """An importance share, three decimals."""
    return DASH if item is None else f"{item:.3f}"


def params_range(low: int | None, high: int | None) -> str:
    """'20,490' or '20,490 – 1,234,567' when runs of one mode differ."""
    return count(low) if low == high else f"{count(low)} – {count(high)}"


def comparison_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The Part A vs Part B table as text cells: one row per quantity, columns a, b,
    change (percentage points for accuracies, a ratio for the rest) and reference."""
    part_a, part_b, ref = report["part_a"] or {}, report["part_b"] or {}, report["reference"] or {}
    rows: list[tuple[str, str, Callable[[Any], str], bool]] = [
        ("Val accuracy", "val_accuracy", pct, True),
        ("Test accuracy", "test_accuracy", pct, True),
        ("Epochs", "epochs", count, False),
        ("Wall time", "wall_seconds", duration, False),
        ("Trainable parameters", "trainable_params", count, False),
        ("Total parameters", "total_params", count, False),
        ("Images / s (train)", "images_per_second", count, False),
    ]
    table = []
    for label, key, fmt, is_accuracy in rows:
        a, b = part_a.get(key), part_b.get(key)
        if a is None or b is None:
            change = DASH
        elif is_accuracy:
            change = pp(b - a)
        else:
            change = f"×{b / a:.2f}" if a else DASH
        table.append(
            {
                "label": label,
                "a": fmt(a),
                "b": fmt(b),
                "change": change,
                "reference": fmt(ref.get(key)),
            }
        )
    return table


def md_escape(item: Any) -> str:
    """Text that Markdown (GitHub's included) shows as written, safe in a table cell.

    >>> md_escape("<script>a|b</script>")
    '&lt;script&gt;a\\\\|b&lt;/script&gt;'
    """
    if isinstance(item, Markup):
        return str(item)
    text = " ".join(str(item).split())  # a newline would end a table row or list item
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return text


def code_fence(text: str, language: str = "") -> Markup:
    """A fenced code block longer than any backtick run inside `text`, so it cannot be closed early."""
    fence = "`" * max(3, max(_backtick_runs(text), default=0) + 1)
    return Markup(f"{fence}{language}\n{text.rstrip()}\n{fence}")


def _backtick_runs(text: str) -> list[int]:
    runs, current = [], 0
    for char in text + "\n":
        if char == "`":
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


_FILTERS: dict[str, Callable[..., Any]] = {
    "pct": pct,
    "pp": pp,
    "duration": duration,
    "count": count,
    "number": number,
    "value": value,
    "correlation": correlation,
    "share": share,
    "params_range": params_range,
}


def _environment(markdown: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=not markdown,
        finalize=md_escape if markdown else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(_FILTERS)
    env.filters["code_fence"] = code_fence
    return env


def render_markdown(report: dict[str, Any], plot_files: dict[str, str]) -> str:
    """report.md; `plot_files` maps plot names to paths relative to the Markdown file."""
    links = {name: Markup(path) for name, path in plot_files.items()}
    return _render("report.md.j2", report, links, markdown=True)


def render_html(report: dict[str, Any], plots: dict[str, str]) -> str:
    """report.html with every plot inlined; `plots` maps plot names to SVG documents."""
    inline = {name: Markup(inline_svg(svg, name)) for name, svg in plots.items()}
    return _render("report.html.j2", report, inline, markdown=False)


def _render(name: str, report: dict[str, Any], plots: dict[str, Markup], *, markdown: bool) -> str:
    template = _environment(markdown).get_template(name)
    names = {s["id"]: s["name"] for s in report["sweeps"]}
    every_plot = {plot: plots.get(plot) for plot in PLOT_NAMES}  # None: no data for that plot
    return template.render(
        r=report, comparison=comparison_rows(report), plots=every_plot, names=names
    )
