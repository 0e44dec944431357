"""Plots of a report dict as SVG text (matplotlib, no pyplot state, no display needed).

Each function returns a standalone SVG document, or None when there is nothing to
draw. Text goes into the SVG as `<text>` elements, which matplotlib XML-escapes, so run
names and parameter values cannot inject markup. `inline_svg` turns a document into a
fragment that can sit inside an HTML page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.analysis import config_value

#: How many of the best runs the learning-curve plot shows.
TOP_RUNS = 6
#: Longest label drawn in a plot; longer ones are cut with an ellipsis.
MAX_LABEL = 28

#: Typed as Any: matplotlib types rc keys as a Literal of every setting name.
_RC: Any = {
    "svg.fonttype": "none",  # real <text>, escaped by matplotlib, instead of glyph paths
    "svg.hashsalt": "sweeper-report",  # same report, same ids: diffs of reports stay small
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def _svg(fig: Figure) -> str:
    """Render `fig` as SVG text without the metadata block (it names matplotlib's website)."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return re.sub(r"\s*<metadata>.*?</metadata>", "", buffer.getvalue(), flags=re.DOTALL)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _short(text: Any) -> str:
    label = str(text)
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def learning_curves(report: dict[str, Any], top: int = TOP_RUNS) -> str | None:
    """Per epoch, of the `top` best runs: the trainer's validation accuracy, or for a
    program the sweep metric at each step it logged."""
    goal = report["metric"]["goal"]
    trainer = report["kind"] == "trainer"
    key = "val_accuracy" if trainer else report["metric"]["name"]
    runs = [
        r
        for r in report["runs"]
        if r["metric"] is not None and any(e.get(key) is not None for e in r["history"])
    ]
    runs.sort(key=lambda r: -r["metric"] if goal == "maximize" else r["metric"])
    if not runs:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(10.0, 3.8)
        ax = fig.add_subplot()
        for run in runs[:top]:
            points = [
                ((e.get("epoch") or i + 1) if trainer else i + 1, e[key])
                for i, e in enumerate(run["history"])
                if e.get(key) is not None
            ]
            xs, ys = zip(*points, strict=True)
            label = _short(run["id"])
            if trainer:
                label += f" ({_short(config_value(run['config'], 'mode'))})"
            ax.plot(
                xs, [100 * y for y in ys] if trainer else ys, marker="o", markersize=3, label=label
            )
        ax.set_xlabel("epoch" if trainer else "logged step")
        ax.set_ylabel("val accuracy (%)" if trainer else _short(key))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
        return _svg(fig)


def metric_over_runs(report: dict[str, Any]) -> str | None:
    """Each scored run's metric in the order the runs were created, and the best so far."""
    runs = [(i + 1, r) for i, r in enumerate(report["runs"]) if r["metric"] is not None]
    if not runs:
        return None
    metric, goal = report["metric"]["name"], report["metric"]["goal"]
    pick = max if goal == "maximize" else min
    best: list[float] = []
    for _, run in runs:
        best.append(pick(best[-1], run["metric"]) if best else run["metric"])
    names = {s["id"]: s["name"] for s in report["sweeps"]}
    with matplotlib.rc_context(_RC):
        fig = _figure(10.0, 3.4)
        ax = fig.add_subplot()
        ax.step([n for n, _ in runs], best, where="post", color="#888", label="best so far")
        for sweep_id, name in names.items():
            own = [(n, r["metric"]) for n, r in runs if r["sweep_id"] == sweep_id]
            if own:
                xs, ys = zip(*own, strict=True)
                ax.plot(xs, ys, "o", markersize=5, label=_short(name))
        ax.set_xlabel("run, in the order created")
        ax.set_ylabel(_short(metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
        return _svg(fig)


def confusion_matrix(best: dict[str, Any] | None) -> str | None:
    """The best run's confusion matrix on the test set, coloured by share of each true class."""
    if not best or not best.get("confusion_matrix"):
        return None
    matrix = [[int(v) for v in row] for row in best["confusion_matrix"]]
    n = len(matrix)
    names = [_short(c) for c in best.get("class_names") or []]
    names = names if len(names) == n else [str(i) for i in range(n)]
    shares = [[v / max(sum(row), 1) for v in row] for row in matrix]
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        side = min(max(3.0, 0.45 * n + 1.8), 8.0)
        fig = _figure(side + 0.8, side)
        ax = fig.add_subplot()
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shares[i][j] > 0.6 else "#222",
                )
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
        return _svg(fig)


def per_class_accuracy(best: dict[str, Any] | None) -> str | None:
    """The best run's test accuracy per class, as horizontal bars."""
    scores = {
        k: v for k, v in ((best or {}).get("per_class_accuracy") or {}).items() if v is not None
    }
    if not scores:
        return None
    names = list(scores)
    with matplotlib.rc_context(_RC):
        fig = _figure(6.0, max(1.8, 0.3 * len(names) + 0.9))
        ax = fig.add_subplot()
        ax.barh([_short(n) for n in names], [100 * scores[n] for n in names], color="#4c72b0")
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("test accuracy (%)")
        return _svg(fig)


def parallel_coordinates(report: dict[str, Any]) -> str | None:
    """Every scored run as a line across one axis per swept parameter and the metric."""
    parameters = report["swept_parameters"]
    runs = [r for r in report["runs"] if r["metric"] is not None]
    if not parameters or not runs:
        return None
    metric = report["metric"]["name"]
    columns: list[tuple[str, list[float], list[tuple[float, str]]]] = []
    for name in parameters:
        columns.append((name, *_axis([r["swept"].get(name) for r in runs])))
    columns.append((metric, *_axis([r["metric"] for r in runs])))
    colour = Normalize(min(r["metric"] for r in runs), max(r["metric"] for r in runs))
    cmap = colormaps["viridis"]
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = _figure(10.0, 3.6)
        ax = fig.add_subplot()
        order = sorted(range(len(runs)), key=lambda i: runs[i]["metric"])  # best drawn last, on top
        if report["metric"]["goal"] == "minimize":
            order.reverse()
        for i in order:
            ax.plot(
                range(len(columns)),
                [c[1][i] for c in columns],
                color=cmap(colour(runs[i]["metric"])),
                alpha=0.8,
                linewidth=1.4,
            )
        for x, (_, _, ticks) in enumerate(columns):
            ax.axvline(x, color="#555", linewidth=0.8)
            for y, label in ticks:
                ax.text(
                    x + 0.02,
                    y,
                    _short(label),
                    fontsize=8,
                    va="center",
                    ha="left",
                    color="#222",
                    bbox=_LABEL_BOX,
                )
        ax.set_xticks(range(len(columns)), [_short(c[0]) for c in columns])
        ax.set_xlim(-0.1, len(columns) - 0.6)
        ax.set_ylim(-0.06, 1.06)
        ax.set_yticks([])
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="x", length=0)
        mappable = ScalarMappable(norm=colour, cmap=cmap)
        fig.colorbar(mappable, ax=ax, fraction=0.03, label=metric)
        return _svg(fig)


#: White box behind axis labels so lines crossing them do not hide the text.
_LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}


def _axis(values: list[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """Positions in [0, 1] for one parallel-coordinates axis, and its tick labels.

    Numbers are scaled linearly between their min and max; anything else is a category,
    spread evenly in sorted order.
    """
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        span = high - low
        position = [(v - low) / span if span else 0.5 for v in values]
        ticks = [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")] if span else [(0.5, f"{low:.3g}")]
        return position, ticks
    levels = sorted({str(v) for v in values})
    place = {
        lvl: (i / (len(levels) - 1) if len(levels) > 1 else 0.5) for i, lvl in enumerate(levels)
    }
    return [place[str(v)] for v in values], [(place[lvl], lvl) for lvl in levels]


#: Every plot a report can have, by name (the SVG file stem), and how it is drawn.
PLOTS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "metric_over_runs": metric_over_runs,
    "learning_curves": learning_curves,
    "parallel_coordinates": parallel_coordinates,
    "confusion_matrix": lambda report: confusion_matrix(report["best"]),
    "per_class_accuracy": lambda report: per_class_accuracy(report["best"]),
}
PLOT_NAMES = tuple(PLOTS)


def all_plots(report: dict[str, Any]) -> dict[str, str]:
    """Every plot the report has data for, by name."""
    made = {name: draw(report) for name, draw in PLOTS.items()}
    return {name: svg for name, svg in made.items() if svg is not None}


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an HTML fragment: no XML prolog, no namespace URLs, and element ids
    prefixed so several plots can share one page."""
    fragment = svg[svg.index("<svg") :]
    fragment = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", fragment)
    fragment = re.sub(r'(\sid=")', rf"\1{prefix}-", fragment)
    fragment = fragment.replace("url(#", f"url(#{prefix}-").replace('href="#', f'href="#{prefix}-')
    return fragment
