"""Mirror one run of a local sweep to wandb: offline without W&B credentials, never fatal.

wandb is imported lazily (about half a second) and `prepare()` is called by the warm
spare worker before it has a run; `wandb.init` (0.3 s offline on an idle machine, 1.5 s on
a loaded one) runs in a thread while the trainer builds its model, so neither is on the
path from one run to the next. Every wandb call is wrapped: a wandb failure is logged and
the run goes on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError
from sweeper.wandb.credentials import has_credentials

log = logging.getLogger(__name__)


def wandb_mode() -> str:
    """The mode runs are logged in: $WANDB_MODE if set, else online when wandb has
    credentials (asking wandb imports it, about half a second), else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    try:
        return "online" if has_credentials() else "offline"
    except SweeperError:  # unusable credentials: log offline, `sweeper sync` says why later
        return "offline"


class WandbLogger:
    """One wandb run per sweep run: `prepare`, `start`, `log` per epoch, `finish`.

    `mode` overrides `wandb_mode()`; with "disabled" (or WANDB_MODE=disabled) wandb is never
    imported.
    """

    def __init__(self, wandb_dir: Path, mode: str | None = None) -> None:
        self.wandb_dir = wandb_dir
        self.mode = mode or wandb_mode()
        self._wandb: Any = None
        self._run: Any = None
        self._opening: threading.Thread | None = None
        self._backlog: list[dict[str, Any]] = []

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def prepare(self) -> None:
        """Import wandb and start its service ahead of the run (the warm spare's job)."""
        if not self.enabled:
            return
        try:
            import wandb

            wandb.setup()
            self._wandb = wandb
        except Exception as exc:  # wandb must never fail a run
            self.mode = "disabled"
            log.warning("wandb unavailable, runs are not mirrored: %s: %s", type(exc).__name__, exc)

    def start(self, sweep_id: str, run_id: str, config: dict[str, Any]) -> None:
        """Open the wandb run (group = sweep id, name = run id, job_type 'sweep') in the
        background: `wandb.init` overlaps model construction instead of delaying it."""
        if self._wandb is None:
            self.prepare()
        if self._wandb is None:
            return
        self._opening = threading.Thread(
            target=self._open, args=(sweep_id, run_id, config), name="wandb-init", daemon=True
        )
        self._opening.start()

    def _open(self, sweep_id: str, run_id: str, config: dict[str, Any]) -> None:
        began = time.perf_counter()
        try:
            self.wandb_dir.mkdir(parents=True, exist_ok=True)
            self._run = self._wandb.init(
                dir=str(self.wandb_dir),
                group=sweep_id,
                job_type="sweep",
                name=run_id,
                config=config,
                mode=self.mode,
            )
        except Exception as exc:
            self._run = None
            log.warning(
                "wandb.init failed, run %s is not mirrored: %s: %s", run_id, type(exc).__name__, exc
            )
            return
        log.info(
            "wandb.init (%s) took %.2f s, off the critical path",
            self.mode,
            time.perf_counter() - began,
        )

    def _opened(self, wait: bool) -> bool:
        """True once the run is open (or failed to open); with `wait`, block until then."""
        if self._opening is not None:
            if not wait and self._opening.is_alive():
                return False
            self._opening.join()
            self._opening = None
        return True

    def log(self, metrics: dict[str, Any]) -> None:
        """Log one epoch's metrics, stepped by epoch; kept back while wandb.init still runs."""
        self._backlog.append(metrics)
        if self._opened(wait=False):
            self._flush()

    def _flush(self) -> None:
        backlog, self._backlog = self._backlog, []
        if self._run is None:
            return
        try:
            for metrics in backlog:
                self._run.log(metrics, step=int(metrics.get("epoch", 0)))
        except Exception as exc:
            log.warning("wandb log failed: %s: %s", type(exc).__name__, exc)

    def finish(self, summary: dict[str, Any] | None, state: str) -> None:
        """Write the final summary and close the run; exit code 1 unless it finished or stopped."""
        self._opened(wait=True)
        self._flush()
        if self._run is None:
            return
        run, self._run = self._run, None
        began = time.perf_counter()
        try:
            if summary:
                run.summary.update({k: v for k, v in summary.items() if v is not None})
            run.summary["sweeper_state"] = state
            run.finish(exit_code=0 if state in ("finished", "stopped") else 1)
        except Exception as exc:
            log.warning("wandb finish failed: %s: %s", type(exc).__name__, exc)
            return
        log.info("wandb finish took %.2f s", time.perf_counter() - began)
