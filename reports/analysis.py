"""Analysis: turn `ReportData` into the report dict (the content of report.json).

Pure functions on plain data: no backend, no files. Every number is JSON-safe (no NaN
or infinity: a value that cannot be computed is None) and accuracies stay fractions;
the writers format them.

Two kinds of report, one dict (`report["kind"]`): a trainer report (the built-in trainer's
sweeps) has Part A vs Part B, the strategies and the best run's test accuracy and
confusion matrix; a program report (the user's own script) has the user's metric and
parameters only. Both have the best run, the metric over runs, parameter importance,
parallel coordinates, every run and the failures with their reasons. A sweep without a
metric (grid or random search needs none) lists its runs and ranks none.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import yaml

from reports.data import Kind, ReportData, sweep_kind
from sweeper.models import Run, RunState, Sweep
from trainer.config import TrainConfig

#: Run states whose metrics are final (values as report.json writes them).
SCORED_STATES = frozenset({RunState.finished.value, RunState.stopped.value})
#: Run states that ended with an error.
ERROR_STATES = frozenset({RunState.failed.value, RunState.crashed.value})
#: Fewest scored runs for the random-forest importance (correlation needs two).
MIN_RUNS_FOR_FOREST = 3
#: Per-epoch keys kept in report.json (the rest of a history entry is bookkeeping).
HISTORY_KEYS = (
    "epoch",
    "val_accuracy",
    "val_loss",
    "train_accuracy",
    "train_loss",
    "lr",
    "seconds",
)


def config_value(config: dict[str, Any], key: str) -> Any:
    """The value a run trained with: its config entry, else `TrainConfig`'s default.

    >>> config_value({"mode": "scratch"}, "mode"), config_value({}, "weights")
    ('scratch', 'imagenet')
    """
    if key in config:
        return config[key]
    field = TrainConfig.model_fields.get(key)
    return None if field is None else field.default


def parameter_value(config: dict[str, Any], key: str, kind: Kind) -> Any:
    """The value of `key` a run used: a trainer run's `config_value`, a program run's own
    config entry (a program has no defaults sweeper knows; None when it was not given).

    >>> parameter_value({}, "weights", "trainer"), parameter_value({}, "weights", "program")
    ('imagenet', None)
    """
    return config_value(config, key) if kind == "trainer" else config.get(key)


def finite(value: Any) -> float | None:
    """`value` as a float if it is a finite number, else None (JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _history_values(run: Run, key: str) -> list[float]:
    return [v for v in (finite(entry.get(key)) for entry in run.history) if v is not None]


def val_accuracy(run: Run) -> float | None:
    """Best validation accuracy of a run: its summary, else its history."""
    summary = finite(run.summary.get("best_val_accuracy"))
    if summary is not None:
        return summary
    values = _history_values(run, "val_accuracy")
    return max(values) if values else None


def metric_value(run: Run, sweep: Sweep | None, name: str | None, goal: str) -> float | None:
    """Best value of the metric `name` for `run` under `goal`; None when there is no metric.

    The run's own `metric` is used when its sweep optimises `name`; otherwise the best
    of its history, else the summary's `best_<name>` or `<name>`.
    """
    if not name:
        return None
    if sweep is not None and sweep.metric_name == name and finite(run.metric) is not None:
        return finite(run.metric)
    values = _history_values(run, name)
    if values:
        return max(values) if goal == "maximize" else min(values)
    for key in (f"best_{name}", name):
        value = finite(run.summary.get(key))
        if value is not None:
            return value
    return None


def _wall_seconds(run: Run) -> float | None:
    """The trainer's wall time, else the sum of its epoch times, else start to end."""
    wall = finite(run.summary.get("wall_seconds"))
    if wall is not None:
        return wall
    seconds = _history_values(run, "seconds")
    if seconds:
        return sum(seconds)
    if run.started_at is not None and run.ended_at is not None:
        return max((run.ended_at - run.started_at).total_seconds(), 0.0)
    return None


def _run_row(
    run: Run, metric: float | None, kind: Kind, parameters: list[str], history_keys: list[str]
) -> dict[str, Any]:
    """One run as report.json lists it; `swept` holds the values of the swept `parameters`."""
    speeds = _history_values(run, "images_per_second")
    speed = finite(run.summary.get("images_per_second"))
    epochs = run.summary.get("epochs_run")
    return {
        "id": run.id,
        "sweep_id": run.sweep_id,
        "state": run.state.value,
        "config": run.config,
        "swept": {name: parameter_value(run.config, name, kind) for name in parameters},
        "metric": metric,
        "val_accuracy": val_accuracy(run),
        "test_accuracy": finite(run.summary.get("test_accuracy")),
        "epochs": epochs if isinstance(epochs, int) else (run.epochs or len(run.history)),
        "wall_seconds": _wall_seconds(run),
        "images_per_second": speed
        if speed is not None
        else (statistics.fmean(speeds) if speeds else None),
        "trainable_params": run.summary.get("trainable_params"),
        "total_params": run.summary.get("total_params"),
        "stopped_early": bool(run.summary.get("stopped_early")) or run.state == RunState.stopped,
        "reason": run.reason or run.summary.get("stop_reason"),
        "attempt": run.attempt,
        "search_info": run.search_info,  # why the engine proposed this config
        "history": [{k: finite(e.get(k)) for k in history_keys if k in e} for e in run.history],
    }


def _best(rows: Iterable[dict[str, Any]], goal: str) -> dict[str, Any] | None:
    """The row with the best metric; ties go to the earliest run."""
    scored = [r for r in rows if r["metric"] is not None]
    if not scored:
        return None
    sign = 1.0 if goal == "maximize" else -1.0
    return max(scored, key=lambda r: sign * r["metric"])


def _side(row: dict[str, Any] | None, source: str) -> dict[str, Any] | None:
    """A Part A / Part B column: the numbers of the chosen run and where it came from."""
    if row is None:
        return None
    keys = ("val_accuracy", "test_accuracy", "epochs", "wall_seconds")
    more = ("trainable_params", "total_params", "images_per_second")
    return {
        "run_id": row["id"],
        "sweep_id": row["sweep_id"],
        "source": source,
        "config": row["config"],
        **{k: row[k] for k in (*keys, *more)},
    }


def _difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, float | None]:
    """b - a for val and test accuracy; None where either side is missing."""

    def diff(key: str) -> float | None:
        if a is None or b is None or a.get(key) is None or b.get(key) is None:
            return None
        return b[key] - a[key]

    return {"val_accuracy": diff("val_accuracy"), "test_accuracy": diff("test_accuracy")}


def swept_parameters(sweeps: Iterable[Sweep]) -> list[str]:
    """The parameters any of the sweeps varies (`Sweep.swept_parameters`), first seen first."""
    return list(dict.fromkeys(name for sweep in sweeps for name in sweep.swept_parameters()))


def _feature_columns(
    rows: list[dict[str, Any]], parameters: list[str]
) -> list[tuple[str, str, str | None, list[float]]]:
    """Design matrix columns (parameter, feature, level, values) for the importance model.

    Numbers and booleans stay one column; anything else is one-hot encoded per level.
    Constant columns carry no information and are left out.
    """
    columns: list[tuple[str, str, str | None, list[float]]] = []
    candidates: list[tuple[str, str, str | None, list[float]]]
    for name in parameters:
        values = [r["swept"].get(name) for r in rows]
        numeric = all(isinstance(v, (int, float)) and finite(v) is not None for v in values)
        if numeric:
            candidates = [(name, name, None, [float(v) for v in values])]
        else:
            levels = sorted({str(v) for v in values})
            candidates = [
                (name, f"{name}={lvl}", lvl, [float(str(v) == lvl) for v in values])
                for lvl in levels
            ]
        columns.extend(c for c in candidates if len(set(c[3])) > 1)
    return columns


def _correlation(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation, or None when either side is constant."""
    xa, ya = np.asarray(x), np.asarray(y)
    if len(xa) < 2 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return None
    return finite(float(np.corrcoef(xa, ya)[0, 1]))


def importance(
    rows: list[dict[str, Any]], parameters: list[str], metric_name: str | None
) -> dict[str, Any]:
    """Parameter importance as W&B shows it: correlation with the metric and the feature
    importance of a small random forest that predicts the metric from the parameters.

    `rows` are scored runs (report.json run rows, `swept` holding the parameters' values).
    Sorted by importance, then |correlation|.
    """
    used = [r for r in rows if r["metric"] is not None]
    result: dict[str, Any] = {
        "metric": metric_name,
        "runs": len(used),
        "parameters": [],
        "note": None,
    }
    if not metric_name:
        result["note"] = "The sweep has no metric, so no parameter can be judged by one."
        return result
    if not parameters:
        result["note"] = "The sweeps search no parameter (every parameter has one value)."
        return result
    if len(used) < 2:
        result["note"] = (
            f"Parameter importance needs at least 2 finished runs; there are {len(used)}."
        )
        return result
    target = [r["metric"] for r in used]
    columns = _feature_columns(used, parameters)
    if not columns:
        result["note"] = "Every finished run used the same values of the swept parameters."
        return result
    if len(set(target)) == 1:
        result["note"] = (
            f"Every finished run reached the same {metric_name}: no parameter made a difference."
        )
        return result
    forest: list[float | None] = [None] * len(columns)
    if len(used) >= MIN_RUNS_FOR_FOREST:
        from sklearn.ensemble import RandomForestRegressor

        model = RandomForestRegressor(n_estimators=100, random_state=0, n_jobs=1)
        model.fit(np.array([c[3] for c in columns]).T, np.array(target))
        forest = [finite(float(v)) for v in model.feature_importances_]
    else:
        result["note"] = (
            f"Random-forest importance needs at least {MIN_RUNS_FOR_FOREST} finished runs; "
            f"with {len(used)} only correlations are shown."
        )
    result["parameters"] = sorted(
        (
            {
                "parameter": p,
                "feature": f,
                "value": lvl,
                "correlation": _correlation(x, target),
                "importance": imp,
            }
            for (p, f, lvl, x), imp in zip(columns, forest, strict=True)
        ),
        key=lambda e: (-(e["importance"] or 0.0), -abs(e["correlation"] or 0.0)),
    )
    return result


def strategies(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per fine-tuning mode: runs, best and mean val accuracy, mean wall time,
    trainable parameters (min and max: partial modes differ per run); best first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(config_value(row["config"], "mode")), []).append(row)
    table = []
    for mode, members in groups.items():
        scored = [r for r in members if r["state"] in SCORED_STATES]
        accuracies = [r["val_accuracy"] for r in scored if r["val_accuracy"] is not None]
        walls = [r["wall_seconds"] for r in scored if r["wall_seconds"] is not None]
        params = [r["trainable_params"] for r in scored if isinstance(r["trainable_params"], int)]
        best = max(scored, key=lambda r: r["val_accuracy"] or -1.0) if accuracies else None
        table.append(
            {
                "mode": mode,
                "runs": len(members),
                "finished": len(scored),
                "best_val_accuracy": max(accuracies) if accuracies else None,
                "mean_val_accuracy": statistics.fmean(accuracies) if accuracies else None,
                "best_run_id": best["id"] if best else None,
                "mean_wall_seconds": statistics.fmean(walls) if walls else None,
                "trainable_params_min": min(params) if params else None,
                "trainable_params_max": max(params) if params else None,
            }
        )
    return sorted(
        table,
        key=lambda e: -(e["best_val_accuracy"] if e["best_val_accuracy"] is not None else -1.0),
    )


def _sweep_entry(sweep: Sweep, role: str) -> dict[str, Any]:
    return {
        "id": sweep.id,
        "name": sweep.name,
        "role": role,
        "kind": sweep_kind(sweep),
        "backend": sweep.backend,
        "method": sweep.method,
        "state": sweep.state.value,
        "metric_name": sweep.metric_name or None,
        "metric_goal": sweep.metric_goal if sweep.metric_name else None,
        "run_cap": sweep.run_cap,
        "run_counts": sweep.run_counts,
        "url": sweep.url,
        "spec_path": sweep.spec_path,
        "created_at": sweep.created_at.isoformat(),
        "spec": sweep.spec,
        "spec_yaml": yaml.safe_dump(sweep.spec, sort_keys=False, allow_unicode=True),
    }


def _pick(
    rows: list[dict[str, Any]], goal: str, keep: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    return _best((r for r in rows if keep(r)), goal)


def analyze(data: ReportData, environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the report dict: headline, the trainer's sections, importance, runs, failures.

    The metric is the first sweep's (None when it has none: runs are listed, none ranked).
    For trainer sweeps, Part B is the best run (of the sweeps asked for) that starts from
    pretrained weights; Part A is the baseline sweep's best scratch run (else its best run)
    when a baseline sweep is given, else the best scratch run of the sweeps. Program sweeps
    have no Part A or Part B: `part_a`, `part_b` and `gap` are None, `strategies` empty.
    """
    kind = data.kind
    metric_name, goal = data.sweeps[0].metric_name or None, data.sweeps[0].metric_goal
    by_id = {
        s.id: s for s in [*data.sweeps, *([data.baseline_sweep] if data.baseline_sweep else [])]
    }
    parameters = swept_parameters(by_id.values())
    # A program's history keeps the metric it logged: its learning curve.
    program_keys = ("epoch", *([metric_name] if metric_name else []))
    history_keys = list(dict.fromkeys(HISTORY_KEYS if kind == "trainer" else program_keys))
    rows = [
        _run_row(
            run,
            metric_value(run, by_id.get(run.sweep_id), metric_name, goal),
            kind,
            parameters,
            history_keys,
        )
        for run in data.runs
    ]
    scored = [r for r in rows if r["state"] in SCORED_STATES]
    for row in rows:
        if row["state"] not in SCORED_STATES:
            row["metric"] = None  # a running run's best so far is not a result
    main_ids = {s.id for s in data.sweeps}
    in_main = [r for r in scored if r["sweep_id"] in main_ids]
    best = _best(in_main, goal)
    part_a, part_b = _parts(data, scored, in_main, goal) if kind == "trainer" else (None, None)
    reference = data.reference.model_dump() if data.reference else None
    best_entry = None
    if best is not None:
        best_run = next(run for run in data.runs if run.id == best["id"])
        best_entry = {
            "run_id": best["id"],
            "sweep_id": best["sweep_id"],
            "config": best["config"],
            "metric": best["metric"],
            "epochs": best["epochs"],
            "wall_seconds": best["wall_seconds"],
            "val_accuracy": best["val_accuracy"],
            "test_accuracy": best["test_accuracy"],
            "gain_over_part_a": _difference(part_a, best) if part_a else None,
            "gain_over_reference": _difference(reference, best) if reference else None,
            "class_names": best_run.summary.get("class_names") or [],
            "per_class_accuracy": {
                k: finite(v) for k, v in (best_run.summary.get("per_class_accuracy") or {}).items()
            },
            "confusion_matrix": best_run.summary.get("confusion_matrix") or [],
        }
    return {
        "title": "Sweep report: " + ", ".join(s.name for s in data.sweeps),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kind": kind,
        "metric": {"name": metric_name, "goal": goal if metric_name else None},
        "sweeps": [_sweep_entry(s, "report") for s in data.sweeps]
        + (
            [_sweep_entry(data.baseline_sweep, "baseline")]
            if data.baseline_sweep and data.baseline_sweep.id not in main_ids
            else []
        ),
        "best": best_entry,
        "part_a": part_a,
        "part_b": part_b,
        "reference": reference,
        "gap": _difference(part_a, part_b) if kind == "trainer" else None,
        "strategies": strategies(rows) if kind == "trainer" else [],
        "swept_parameters": parameters,
        "importance": importance(scored, parameters, metric_name),
        "runs": rows,
        "stopped": [_brief(r) for r in rows if r["stopped_early"]],
        "errors": [_brief(r) for r in rows if r["state"] in ERROR_STATES],
        "missing": _missing(data, rows, part_a, part_b, metric_name),
        "environment": environment or {},
    }


def _parts(
    data: ReportData, scored: list[dict[str, Any]], in_main: list[dict[str, Any]], goal: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Part A and Part B of a trainer report (see `analyze`)."""

    def is_scratch(row: dict[str, Any]) -> bool:
        return config_value(row["config"], "mode") == "scratch"

    part_b = _side(
        _pick(in_main, goal, lambda r: config_value(r["config"], "weights") != "none"),
        "pretrained runs of the sweeps",
    )
    if data.baseline_sweep is not None:
        base_id = data.baseline_sweep.id
        own = [r for r in scored if r["sweep_id"] == base_id]
        chosen = _pick(own, goal, is_scratch) or _best(own, goal)
        return _side(chosen, f"baseline sweep {data.baseline_sweep.name}"), part_b
    return _side(_pick(in_main, goal, is_scratch), "scratch runs of the sweeps"), part_b


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "sweep_id", "state", "epochs", "attempt", "reason")}


def _missing(
    data: ReportData,
    rows: list[dict[str, Any]],
    part_a: dict[str, Any] | None,
    part_b: dict[str, Any] | None,
    metric_name: str | None,
) -> list[str]:
    """Sentences that say what the report cannot show and why."""
    if not metric_name:
        return [
            f"Sweep {data.sweeps[0].name} ({data.sweeps[0].id}) has no metric ({data.sweeps[0].method} "
            "search needs none): its runs are listed, none is ranked."
        ]
    notes = []
    for sweep in data.sweeps:
        if not any(r["sweep_id"] == sweep.id and r["metric"] is not None for r in rows):
            notes.append(f"Sweep {sweep.name} ({sweep.id}) has no finished run yet.")
    if data.kind == "program":
        return notes
    if part_a is None:
        if data.baseline_sweep is not None:
            notes.append(
                f"Part A is missing: baseline sweep {data.baseline_sweep.name} has no finished run."
            )
        else:
            notes.append(
                "Part A is missing: no finished scratch run in the sweeps and no --baseline sweep."
            )
    if part_b is None:
        notes.append("Part B is missing: no finished run starts from pretrained weights.")
    return notes
