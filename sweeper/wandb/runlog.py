"""Mirror one run of a local sweep to wandb: offline without W&B credentials, never fatal.

Two loggers with the same calls (`prepare`, `start`, `log` per epoch, `finish`):

- `WandbLogger` talks to wandb in this process. wandb is imported lazily (about half a
  second) and `wandb.init` (0.3 s offline on an idle machine, 1.5 s on a loaded one) runs
  in a thread while the trainer builds its model. Every wandb call is wrapped: a wandb
  failure is logged and the run goes on.
- `BackgroundWandbLogger`, the agent worker's: the same work in a helper process
  (`python -m sweeper.wandb.runlog`) fed one JSON line per call. Measured on the 2-core
  dev CPU, wandb's Python side (init, log, finish, its threads) in the worker slowed a
  head run's training by about 0.4 s (the GIL); in its own process it runs on the other
  core, the worker never imports wandb, and the previous run's `finish` overlaps the
  next run. The helper works through every line it was sent before it exits, so a
  worker that exits (or dies: end of file) still leaves complete offline runs for
  `sweeper sync`; a run open at end of file is finished as crashed. The helper lowers its
  own scheduling priority first thing (`HELPER_NICENESS`), so it and the wandb-core it
  starts (which inherits it) take the CPU the training leaves: on the 2-core dev CPU they
  otherwise competed with a head run's training for the cores. It captures no console
  (wandb's `console="off"`): its own output is not the run's, the worker's is in the
  run's log file.

wandb lists the installed packages at every `wandb.init` (the run's requirements.txt):
0.3-0.9 s of package-metadata parsing per run on the dev CPU, most of what a mirrored run
cost the helper. A process's packages do not change between its runs, so `WandbLogger`
lists them once (with wandb's own `working_set`) and saves the list into each run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from sweeper.errors import SweeperError
from sweeper.wandb.credentials import has_credentials
from sweeper.wandb.service import exit_now

log = logging.getLogger(__name__)

#: How much lower the wandb helper's scheduling priority is than its worker's (os.nice).
HELPER_NICENESS = 10


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
    imported. `settings` go to every `wandb.init` (wandb.Settings fields).
    """

    def __init__(
        self, wandb_dir: Path, mode: str | None = None, settings: dict[str, Any] | None = None
    ) -> None:
        self.wandb_dir = wandb_dir
        self.mode = mode or wandb_mode()
        self.settings = settings
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
                settings={"x_save_requirements": False, **(self.settings or {})},
            )
            self._save_requirements(self._run)
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

    @functools.cached_property
    def _requirements(self) -> str:
        """This process's installed packages as requirements.txt lines, listed once."""
        from wandb.util import working_set

        return "".join(f"{package.key}=={package.version}\n" for package in working_set())

    def _save_requirements(self, run: Any) -> None:
        """Save the package list into `run` as requirements.txt, as wandb.init would."""
        path = Path(run.dir) / "requirements.txt"
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_text(self._requirements)
        partial.replace(path)
        run.save(str(path), base_path=run.dir, policy="now")

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

    def teardown(self) -> None:
        """Wait for wandb-core to write the last run's file, then stop wandb's service."""
        if self._wandb is None:
            return
        try:
            self._wandb.teardown()
        except Exception as exc:
            log.warning("wandb teardown failed: %s: %s", type(exc).__name__, exc)


class BackgroundWandbLogger:
    """`WandbLogger`'s calls, carried out in order by a helper process (see the module
    docstring). `close` waits for it to write what it was sent.

    `mode` overrides $WANDB_MODE; unset, the helper resolves it (`wandb_mode()`). With
    "disabled" no helper is started.
    """

    def __init__(self, wandb_dir: Path, mode: str | None = None) -> None:
        self.wandb_dir = wandb_dir
        self.mode = mode or os.environ.get("WANDB_MODE") or None
        self._helper: subprocess.Popen[bytes] | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def prepare(self) -> None:
        """Start the helper, which imports wandb and starts its service while we go on."""
        if not self.enabled or self._helper is not None:
            return
        command = [sys.executable, "-m", "sweeper.wandb.runlog", str(self.wandb_dir)]
        try:
            self._helper = subprocess.Popen(
                [*command, *([self.mode] if self.mode else [])], stdin=subprocess.PIPE
            )
        except OSError as exc:
            self._give_up(exc)

    def start(self, sweep_id: str, run_id: str, config: dict[str, Any]) -> None:
        """Open the wandb run (group = sweep id, name = run id, job_type 'sweep')."""
        self._send(op="start", sweep_id=sweep_id, run_id=run_id, config=config)

    def log(self, metrics: dict[str, Any]) -> None:
        """Log one epoch's metrics, stepped by epoch."""
        self._send(op="log", metrics=metrics)

    def finish(self, summary: dict[str, Any] | None, state: str) -> None:
        """Write the final summary and close the run, without waiting for wandb."""
        self._send(op="finish", summary=summary, state=state)

    def close(self, timeout: float = 60.0) -> None:
        """End the helper's input and wait (at most `timeout` s) until it has written it all."""
        helper, self._helper = self._helper, None
        if helper is None:
            return
        try:
            if helper.stdin is not None:
                helper.stdin.close()
            helper.wait(timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            # It goes on by itself: its input has ended, so it exits once done.
            log.warning("wandb helper still writing after %g s: %s", timeout, exc)

    def _send(self, **message: Any) -> None:
        if self._helper is None:
            self.prepare()
        helper = self._helper
        if helper is None or helper.stdin is None:
            return
        try:
            helper.stdin.write((json.dumps(message, default=str) + "\n").encode())
            helper.stdin.flush()
        except (OSError, ValueError) as exc:  # the helper died: runs go on, unmirrored
            self._helper = None
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        self.mode = "disabled"
        log.warning(
            "wandb helper unavailable, runs are not mirrored: %s: %s", type(exc).__name__, exc
        )


def serve(lines: IO[str], logger: WandbLogger) -> None:
    """The helper's loop: carry out each JSON line with `logger` until end of file."""
    logger.prepare()
    open_run = False
    for line in lines:
        message = json.loads(line)
        op = message.pop("op")
        if op == "start":
            logger.start(**message)
            open_run = True
        elif op == "log":
            logger.log(message["metrics"])
        elif op == "finish":
            logger.finish(message["summary"], message["state"])
            open_run = False
    if open_run:  # the worker died in the middle of a run
        logger.finish(None, "crashed")


def main(argv: list[str] | None = None) -> int:
    """`python -m sweeper.wandb.runlog WANDB_DIR [MODE]`: the helper process."""
    # Before wandb starts wandb-core, which inherits it.
    os.nice(HELPER_NICENESS)
    # Ctrl-C and SIGTERM are for the worker; the helper ends when its input does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s wandb-helper %(levelname)s %(message)s"
    )
    args = sys.argv[1:] if argv is None else argv
    logger = WandbLogger(
        Path(args[0]), mode=args[1] if len(args) > 1 else None, settings={"console": "off"}
    )
    serve(sys.stdin, logger)
    logger.teardown()
    return 0


if __name__ == "__main__":
    # Without interpreter teardown: wandb's exit handlers took 0.7 s after `main` returned,
    # and the worker waits for this process. `teardown` already waited for wandb-core,
    # which writes the runs' files, so nothing is left to write.
    code = main()
    logging.shutdown()
    exit_now(code)
