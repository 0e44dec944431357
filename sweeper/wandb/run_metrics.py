"""What a run logged with wandb, read from its `.wandb` transaction log: history and summary.

The records come from `sweeper.wandb.runfile` (wandb's own protobuf classes), which stops
at the torn tail of a log still being written, so a run can be read while it runs. The
summary has W&B's meaning: each key's last logged value, unless the script set the summary
itself (`run.summary[...] = ...`, a summary record), which wins.

>>> metrics = RunMetrics(Path("/nonexistent.wandb"))
>>> metrics.read(), metrics.summary()
([], {})
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweeper.wandb.runfile import records


class RunMetrics:
    """The history rows and summary of one `.wandb` file, read again as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.history: list[dict[str, Any]] = []
        self._summary: dict[str, Any] = {}
        self._removed: set[str] = set()
        self._size = -1

    def read(self) -> list[dict[str, Any]]:
        """Re-read the file if it grew; return the history rows not returned before.

        A row holds the keys the script logged (wandb's own `_step`, `_runtime`, ... left
        out) and `_step`; rows without a user key are skipped.
        """
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size == self._size:
            return []
        self._size = size
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        removed: set[str] = set()
        for record in records(self.path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row = _items(record.history.item)
                step = row.get("_step", len(rows))
                values = {k: v for k, v in row.items() if not k.startswith("_")}
                if values:
                    rows.append({**values, "_step": step})
            elif kind == "summary":
                for key, value in _items(record.summary.update).items():
                    summary[key] = value
                    removed.discard(key)
                for item in record.summary.remove:
                    key = _key(item)
                    summary.pop(key, None)
                    removed.add(key)
        new = rows[len(self.history) :]
        self.history = rows
        self._summary, self._removed = summary, removed
        return new

    def summary(self) -> dict[str, Any]:
        """W&B's run summary: the last value of each logged key, then what the script set."""
        last: dict[str, Any] = {}
        for row in self.history:
            last.update({k: v for k, v in row.items() if not k.startswith("_")})
        for key in self._removed:
            last.pop(key, None)
        last.update({k: v for k, v in self._summary.items() if not k.startswith("_")})
        return last


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else str(item.key)


def _items(items: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        try:
            values[_key(item)] = json.loads(item.value_json)
        except ValueError:
            continue  # not JSON: a value wandb-core encodes otherwise; not a metric
    return values
