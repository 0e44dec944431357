"""What the agent shows: a live table on a terminal, plain log lines otherwise.

Both are fed the same way, about once a second: the slot assignments the supervisor
knows and the runs as the store has them (`list_runs`), so the table shows what the
store says, not what a worker claims.
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


def epoch_text(metrics: dict[str, Any], metric_name: str) -> str:
    """One epoch as a log line: the built-in trainer's accuracy and speed, or for a
    program run (the user's own script) the sweep metric as the script logged it.

    >>> epoch_text({"epoch": 2, "epochs": 5, "val_accuracy": 0.5, "best_val_accuracy": 0.5,
    ...             "images_per_second": 300.0}, "val_accuracy")
    'epoch 2/5 val_accuracy 50.0% best 50.0% 300 img/s'
    >>> epoch_text({"epoch": 3, "loss": 0.25}, "loss")
    'epoch 3 loss 0.25'
    """
    planned = metrics.get("epochs")
    epoch = f"epoch {metrics.get('epoch')}" + (f"/{planned}" if planned is not None else "")
    if "images_per_second" not in metrics:
        value = metrics.get(metric_name)
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
        return f"{epoch} {metric_name} {shown}"
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


def build_table(
    sweep: Sweep, slots: Sequence[Slot], assignments: Mapping[int, str | None], runs: Sequence[Run]
) -> Table:
    """The live table: one row per slot, with its run's swept config and progress."""
    params = sweep.swept_parameters()
    by_id = {r.id: r for r in runs}
    counts = {state.value: 0 for state in RunState}
    for each in runs:
        counts[each.state.value] += 1
    best = _best(runs, sweep.metric_goal)
    best_text = f"{best:.4g}" if best is not None else "-"
    caption = " ".join(f"{k} {v}" for k, v in counts.items() if v) or "no runs yet"
    table = Table(
        title=f"sweep {sweep.name} ({sweep.id}) · {sweep.method} · best {sweep.metric_name} {best_text}",
        caption=caption,
    )
    columns = (
        "slot",
        "device",
        "worker",
        "run",
        "config",
        "epoch",
        "val acc",
        "best",
        "img/s",
        "ETA",
    )
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in ("epoch", "val acc", "best", "img/s", "ETA") else "left",
        )
    for slot in slots:
        run = by_id.get(assignments.get(slot.index) or "")
        if run is None:
            table.add_row(
                str(slot.index), slot.label, "-", "-", "waiting for a run", "", "", "", "", ""
            )
            continue
        last = run.history[-1] if run.history else {}
        planned = last.get("epochs") or run.config.get("epochs")
        speed = last.get("images_per_second")
        table.add_row(
            str(slot.index),
            slot.label,
            worker_label(run),
            run.id,
            _config_text(run, params),
            f"{len(run.history)}/{planned if planned is not None else '?'}",
            _percent(last.get("val_accuracy")),
            _percent(last.get("best_val_accuracy")),
            f"{speed:.0f}" if isinstance(speed, (int, float)) else "-",
            _duration(eta_seconds(run)),
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
            metric = f" {self.sweep.metric_name} {run.metric:.4g}" if run.metric is not None else ""
            reason = f" ({run.reason})" if run.reason else ""
            self.console.print(f"{where} {state}{metric}{reason}", highlight=False)
        self._seen_state[run.id] = run.state
        self._seen_epochs[run.id] = len(run.history)

    def summary(self, line: str) -> None:
        """The one-line summary when the agent is done."""
        self.console.print(line, highlight=False)
