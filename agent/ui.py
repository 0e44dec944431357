"""What the agent shows: a live table on a terminal, plain log lines otherwise.

Both are fed the same way, about once a second: the slot assignments the supervisor
knows and the runs as the store has them (`list_runs`), so the table shows what the
store says, not what a worker claims.

A trainer sweep shows the built-in trainer's epochs, accuracy and speed; a program sweep
(the user's own script) its logged steps and the sweep metric as the script logged it,
and a sweep without a metric the values the script logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from agent.slots import Slot
from sweeper.models import Run, RunState, Sweep

#: How many of a step's logged values a line shows when the sweep has no metric.
SHOWN_VALUES = 3


def format_value(value: Any) -> str:
    """Short text for a config value: 1e-4 stays 0.0001, floats keep 4 significant digits.

    >>> format_value(0.00012345), format_value(64), format_value("head")
    ('0.0001234', '64', 'head')
    """
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _percent(value: Any) -> str:
    return (
        f"{100 * value:.1f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "-"
    )


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def epoch_text(metrics: dict[str, Any], metric_name: str | None) -> str:
    """One epoch as a log line: the built-in trainer's accuracy and speed, or for a
    program run (the user's own script; its rows carry wandb's `_step`) the step and the
    sweep metric as the script logged it, or the first values it logged when the sweep
    has no metric.

    >>> epoch_text({"epoch": 2, "epochs": 5, "val_accuracy": 0.5, "best_val_accuracy": 0.5,
    ...             "images_per_second": 300.0}, "val_accuracy")
    'epoch 2/5 val_accuracy 50.0% best 50.0% 300 img/s'
    >>> epoch_text({"epoch": 3, "_step": 2, "loss": 0.25, "acc": 0.9}, "loss")
    'step 3 loss 0.25'
    >>> epoch_text({"epoch": 3, "_step": 2, "loss": 0.25, "acc": 0.9}, None)
    'step 3 loss 0.25 acc 0.9'
    """
    if "_step" in metrics:
        step = f"step {metrics['_step'] + 1}"
        if metric_name:
            return f"{step} {metric_name} {_number(metrics.get(metric_name))}"
        logged = [(k, v) for k, v in metrics.items() if k != "epoch" and not k.startswith("_")]
        return " ".join([step, *(f"{k} {_number(v)}" for k, v in logged[:SHOWN_VALUES])])
    planned = metrics.get("epochs")
    epoch = f"epoch {metrics.get('epoch')}" + (f"/{planned}" if planned is not None else "")
    return (
        f"{epoch} val_accuracy {_percent(metrics.get('val_accuracy'))} "
        f"best {_percent(metrics.get('best_val_accuracy'))} "
        f"{float(metrics.get('images_per_second') or 0):.0f} img/s"
    )


def eta_seconds(run: Run) -> float | None:
    """Seconds left for a running run: remaining epochs times the mean epoch time so far."""
    if not run.history:
        return None
    last = run.history[-1]
    planned = int(last.get("epochs") or 0)
    seconds = [float(h.get("seconds") or 0.0) for h in run.history]
    return max(planned - len(run.history), 0) * (sum(seconds) / len(seconds))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"


def worker_label(run: Run) -> str:
    """The short name of the worker process that ran `run` ('w3' of 'host-123-s0-w3'),
    unique within one agent; '-' when none has.

    >>> from datetime import datetime
    >>> from sweeper.models import Run, RunState
    >>> run = Run(id="r1", sweep_id="s1", state=RunState.running, config={},
    ...           created_at=datetime(2026, 1, 1), worker="box-4242-s0-w3")
    >>> worker_label(run)
    'w3'
    """
    return run.worker.rsplit("-", 1)[-1] if run.worker else "-"


def _config_text(run: Run, params: Sequence[str]) -> str:
    return " ".join(
        f"{name}={format_value(run.config[name])}" for name in params if name in run.config
    )


def _best(runs: Sequence[Run], goal: str) -> float | None:
    scores = [r.metric for r in runs if r.metric is not None and math.isfinite(r.metric)]
    if not scores:
        return None
    return max(scores) if goal == "maximize" else min(scores)


def one_line(reason: str) -> str:
    """A reason as one line: its first and last lines (a program's error ends with what
    went wrong).

    >>> one_line("program exited with code 1: Traceback\\n  File 'x'\\nValueError: lr")
    'program exited with code 1: Traceback … ValueError: lr'
    """
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    return " … ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""


def _trainer_cells(run: Run) -> list[str]:
    last = run.history[-1] if run.history else {}
    planned = last.get("epochs") or run.config.get("epochs")
    speed = last.get("images_per_second")
    return [
        f"{len(run.history)}/{planned if planned is not None else '?'}",
        _percent(last.get("val_accuracy")),
        _percent(last.get("best_val_accuracy")),
        f"{speed:.0f}" if isinstance(speed, (int, float)) else "-",
        _duration(eta_seconds(run)),
    ]


def build_table(
    sweep: Sweep, slots: Sequence[Slot], assignments: Mapping[int, str | None], runs: Sequence[Run]
) -> Table:
    """The live table: one row per slot, with its run's swept config and progress.

    A trainer run shows epochs of planned, val accuracy, its best, images/s and ETA; a
    program run its logged steps, the sweep metric's last logged value and its best (no
    metric columns when the sweep has no metric).
    """
    params = sweep.swept_parameters()
    metric = sweep.metric_name or None
    trainer = sweep.kind == "trainer"
    by_id = {r.id: r for r in runs}
    counts = {state.value: 0 for state in RunState}
    for each in runs:
        counts[each.state.value] += 1
    best = _best(runs, sweep.metric_goal)
    title = f"sweep {sweep.name} ({sweep.id}) · {sweep.method}"
    if metric:
        title += f" · best {metric} {best:.4g}" if best is not None else f" · best {metric} -"
    caption = " ".join(f"{k} {v}" for k, v in counts.items() if v) or "no runs yet"
    table = Table(title=title, caption=caption)
    numbers: tuple[str, ...]
    if trainer:
        numbers = ("epoch", "val acc", "best", "img/s", "ETA")
    else:
        numbers = ("step", metric, "best") if metric else ("step",)
    for column in ("slot", "device", "worker", "run", "config"):
        table.add_column(column)
    for column in numbers:
        table.add_column(column, justify="right")
    for slot in slots:
        run = by_id.get(assignments.get(slot.index) or "")
        if run is None:
            waiting = ["-", "-", "waiting for a run", *([""] * len(numbers))]
            table.add_row(str(slot.index), slot.label, *waiting)
            continue
        if trainer:
            progress = _trainer_cells(run)
        else:
            last = run.history[-1] if run.history else {}
            progress = [str(len(run.history))]
            if metric:
                progress += [_number(last.get(metric)), _number(run.metric)]
        table.add_row(
            str(slot.index),
            slot.label,
            worker_label(run),
            run.id,
            _config_text(run, params),
            *progress,
        )
    return table


class AgentView:
    """Renders the agent's progress on `console`: a rich Live table or plain log lines."""

    def __init__(self, console: Console, sweep: Sweep, slots: Sequence[Slot]) -> None:
        self.console, self.sweep, self.slots = console, sweep, slots
        self.params = sweep.swept_parameters()
        self.live: Live | None = None
        self._seen_epochs: dict[str, int] = {}
        self._seen_state: dict[str, RunState] = {}

    def __enter__(self) -> AgentView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def update(
        self, assignments: Mapping[int, str | None], runs: Sequence[Run], ours: Mapping[str, int]
    ) -> None:
        """Show the current state: redraw the table, or print what changed since last time.

        `assignments` maps slot -> the run it trains now; `ours` maps every run this agent
        handed out -> its slot, so runs that started and ended between two updates are
        still logged, and runs of other agents are not.
        """
        if self.live is not None:
            self.live.update(build_table(self.sweep, self.slots, assignments, runs), refresh=True)
            return
        for run in runs:
            if run.id in ours:
                self._log_changes(run, ours[run.id])

    def _log_changes(self, run: Run, slot: int) -> None:
        before_state = self._seen_state.get(run.id)
        before_epochs = self._seen_epochs.get(run.id, 0)
        where = f"slot {slot} run {run.id}"
        if before_state in (None, RunState.pending) and run.state != before_state:
            on = f" on {worker_label(run)}" if run.worker else ""
            self.console.print(
                f"{where} started{on} {_config_text(run, self.params)}".rstrip(), highlight=False
            )
        if len(run.history) < before_epochs:  # re-queued and started over
            before_epochs = 0
        for metrics in run.history[before_epochs:]:
            self.console.print(
                f"{where} {epoch_text(metrics, self.sweep.metric_name)}", highlight=False
            )
        if run.state not in (RunState.running, before_state):
            state = "requeued" if run.state == RunState.pending else run.state.value
            name, value = self.sweep.metric_name, run.metric
            metric = f" {name} {value:.4g}" if name and value is not None else ""
            reason = f" ({one_line(run.reason)})" if run.reason else ""
            self.console.print(f"{where} {state}{metric}{reason}", highlight=False)
        self._seen_state[run.id] = run.state
        self._seen_epochs[run.id] = len(run.history)

    def summary(self, line: str) -> None:
        """The one-line summary when the agent is done."""
        self.console.print(line, highlight=False)
