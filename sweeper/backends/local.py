"""The embedded default backend: sweeps and runs in the store (SQLite, or PostgreSQL for
agents on many hosts; `sweeper.store`), configs from wandb's open-source engine.

Every state change is one write transaction, so any number of agent processes can share
one store. Handing out a run (reap stale runs, pick a pending run or insert the engine's
new config, mark it running) and changing a sweep's state hold the sweep's write lock
(`Store.transaction(immediate=True, scope=sweep_id)`): they run one at a time per sweep,
each reading what the previous one committed (run_cap, dedupe, no duplicate claim).
What an agent reports about its own run (its end, heartbeats, epochs) locks only that
run's row (`scope=ROWS_ONLY`) and is compare-and-set on (state = running, worker =
caller) under that lock, so agents report in parallel. SQLite has one write lock for
everything, so there all of this is serialised as before.

Finishing a sweep once it is done and its last run has ended stays exact without a
sweep lock in the reports: `sweeper.backends.sweep_end` says how.

Bayes and random search propose outside the write lock (bayes takes 0.1-0.3 s, and
claimers would queue behind each other's proposals), so inserting the config is
compare-and-set too: the sweep must still be running, uncapped and without pending runs,
and on a discrete space the config still unused; otherwise the claim proposes again.
A spec whose proposals read no runs (random search on a continuous space) is proposed
before the claim's one write transaction, which checks the same and hands it out: in
one `INSERT ... SELECT` guarded by those conditions (`_OPEN`), sent with its BEGIN and
COMMIT in one round trip (`Store.write_batch`), so the sweep's lock is held only inside
the database server; the sweep's row is read, in a second transaction, only when it
inserts nothing. A sweep's run_cap is checked against the count of its
first tries that the store keeps (`sweeper.store.base.FIRST_TRIES`).

A sweep with nothing more to propose (exhausted or capped) is done for its claimers only
once no run of it is pending or running: until then a running run's agent may die, and
its run, re-queued when the lease runs out, needs an agent still asking.
"""

from __future__ import annotations

import functools
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from sweeper import engine
from sweeper.backends import engine_view, epochs, sweep_end
from sweeper.backends.base import Backend
from sweeper.backends.ledger import FINAL_SWEEP_STATES, Row, RunLedger, at, dumps, new_id
from sweeper.backends.naming import resolve_among
from sweeper.errors import NotFoundError, SweeperError
from sweeper.models import (
    SWEEP_CONTROL,
    SWEEP_TRANSITIONS,
    Claim,
    Control,
    Run,
    RunState,
    Sweep,
    SweepState,
)
from sweeper.paths import Home
from sweeper.spec import SweepSpec
from sweeper.store import open_store, retried
from sweeper.store.base import ROWS_ONLY, Connection, Statement

#: Proposals made outside the write lock that a claim lets lose the race to insert; then
#: it proposes inside the lock, where it cannot lose, so a contended grid never livelocks.
PROPOSE_TRIES = 5


#: The sweep column `finish_run` reads with the run's row, in one round trip.
_SWEEP_OF_RUN = ", (SELECT spec FROM sweeps WHERE sweeps.id = runs.sweep_id) AS sweep_spec"
#: When a claim goes straight to a new config, as `_claim_without_engine` decides it on
#: the sweep's row (with `RunLedger.stale` false): the sweep is running and not done,
#: under its run_cap, and has no pending run to hand out first. A blind proposal is
#: inserted on this condition, in the claim's write transaction (see `_insertion`).
_OPEN = (
    "EXISTS (SELECT 1 FROM sweeps WHERE id = ? AND state = ? AND done_reason IS NULL"
    " AND (run_cap IS NULL OR started < run_cap))"
    " AND NOT EXISTS (SELECT 1 FROM runs WHERE sweep_id = ? AND state = ?)"
)
#: The bookkeeping of the `runs` table; a crash retry keeps the engine's view of its config.
_RUNS = RunLedger(
    "runs", "in the local store", new_id, carried=("engine_config", "config_key", "search_info")
)


class LocalBackend(Backend):
    """Sweeps in `home`'s store (`Home.store_url`); configs from wandb's open-source engine.

    Args:
        home: the store URL and this host's files.
        clock: the time in epoch seconds, for leases and timestamps (tests pass a fake).
        host: the name recorded on the runs this process claims (default: this host's).

    >>> import tempfile
    >>> backend = LocalBackend(Home(tempfile.mkdtemp()))
    >>> backend.list_sweeps()
    []
    """

    name = "local"

    def __init__(
        self,
        home: Home | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        self.home = home or Home()
        self.store = open_store(self.home.store_url)
        self.clock = clock
        self.host = host or socket.gethostname()
        # A sweep's spec never changes once created; claims parse it once per process.
        self._specs: dict[str, SweepSpec] = {}

    # -- sweeps --------------------------------------------------------------------

    @retried
    def create_sweep(self, spec: SweepSpec, name: str | None = None) -> Sweep:
        """Store `spec` as a new running sweep and make it the current one."""
        now = self.clock()
        with self.store.transaction(immediate=True) as conn:
            sweep_id = self._unused_sweep_id(conn)
            conn.execute(
                "INSERT INTO sweeps (id, name, state, method, metric_name, metric_goal, run_cap,"
                " spec, spec_path, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    name or spec.name or spec.raw.get("name") or sweep_id,
                    SweepState.running.value,
                    spec.method,
                    spec.metric_name,
                    spec.metric_goal,
                    spec.run_cap,
                    spec.model_dump_json(),
                    None if spec.source.startswith("<") else spec.source,
                    now,
                    now,
                ),
            )
            self.store.set_current(sweep_id)
            return self._sweep(conn, self._sweep_row(conn, sweep_id))

    @retried
    def list_sweeps(self) -> list[Sweep]:
        """Every sweep, newest first, with run counts."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM sweeps ORDER BY created_at DESC, rowid DESC"
            ).fetchall()
            return [self._sweep(conn, row) for row in rows]

    @retried
    def get_sweep(self, ref: str) -> Sweep:
        """The sweep whose id, unique name or unique id prefix (3+ characters) is `ref`."""
        with self.store.transaction() as conn:
            return self._sweep(conn, self._resolve(conn, ref))

    @retried
    def set_sweep_state(self, sweep_id: str, state: SweepState) -> Sweep:
        """Pause, resume, cancel or finish; canceled and finished are final."""
        state = SweepState(state)
        now = self.clock()
        with self.store.transaction(immediate=True, scope=sweep_id) as conn:
            row = self._sweep_row(conn, sweep_id)
            current = SweepState(row["state"])
            if state != current:
                if state not in SWEEP_TRANSITIONS.get(current, set()):
                    raise SweeperError(
                        f"sweep {sweep_id} is {current.value}, so it cannot become {state.value}"
                        + (
                            ": canceled and finished sweeps are final."
                            if current in FINAL_SWEEP_STATES
                            else "."
                        )
                    )
                if state in FINAL_SWEEP_STATES:
                    # A run being re-queued now is then stopped (see the module docstring).
                    sweep_end.lock_running(conn, sweep_id)
                conn.execute(
                    "UPDATE sweeps SET state = ?, updated_at = ? WHERE id = ?",
                    (state.value, now, sweep_id),
                )
                if state in FINAL_SWEEP_STATES:
                    _RUNS.stop_pending(conn, sweep_id, state, now)
            return self._sweep(conn, self._sweep_row(conn, sweep_id))

    # -- claiming ------------------------------------------------------------------

    @retried
    def claim_run(self, sweep_id: str, worker: str, lease_s: float = 60.0) -> Claim:
        """Reap stale runs, then hand out the oldest pending run or a new engine config.

        A spec whose proposals read no runs is proposed first and handed out by one write
        transaction (once this process knows the spec). Bayes and random search on a
        discrete space propose between two write transactions, on runs read in a read
        one; the second hands the proposal out only if nothing made it wrong meanwhile
        (see the module docstring), else the claim proposes again, at most
        `PROPOSE_TRIES` times before it proposes inside the lock.
        """
        known = self._specs.get(sweep_id)
        blind = known is not None and not engine.needs_runs(known)
        # A blind proposal lost to a pending run is simply dropped: it is an independent draw.
        early = engine.propose(known, []) if known is not None and blind else None
        if isinstance(early, engine.Proposal):
            # Most claims of such a sweep: one statement in one round trip (`write_batch`),
            # not the sweep read first. When it inserts nothing, the claim goes on below.
            insertion = self._insertion(
                sweep_id, worker, lease_s, early, self.clock(), if_open=True
            )
            inserted = self.store.write_batch([insertion], scope=sweep_id)
            if inserted:
                return Claim(run=_to_run(inserted[0], []))
        with self.store.transaction(immediate=True, scope=sweep_id) as conn:
            now = self.clock()
            queued = self._claim_without_engine(conn, sweep_id, worker, lease_s, now)
            if isinstance(queued, Claim):
                return queued
            if early is not None:
                return self._hand_out(conn, sweep_id, worker, lease_s, early, now)
            if queued.method == "grid":
                # Grid search proposes the first unused config in a fixed order: concurrent
                # claimers would all propose the same one and all but one lose. It is cheap.
                return self._propose_locked(conn, sweep_id, worker, lease_s, queued)
        spec = queued
        discrete = engine.discrete_space(spec.raw.get("parameters") or {}) is not None
        reads_runs = engine.needs_runs(spec)
        for _ in range(PROPOSE_TRIES):
            runs: list[engine.EngineRun] = []
            if reads_runs:
                with self.store.transaction() as conn:
                    runs = engine_view.engine_runs(conn, sweep_id, history=False)
            outcome = engine.propose(spec, runs)
            with self.store.transaction(immediate=True, scope=sweep_id) as conn:
                now = self.clock()
                queued = self._claim_without_engine(conn, sweep_id, worker, lease_s, now)
                if isinstance(queued, Claim):
                    return queued
                if not (discrete and engine_view.used(conn, sweep_id, outcome)):
                    return self._hand_out(conn, sweep_id, worker, lease_s, outcome, now)
        with self.store.transaction(immediate=True, scope=sweep_id) as conn:
            now = self.clock()
            queued = self._claim_without_engine(conn, sweep_id, worker, lease_s, now)
            if isinstance(queued, Claim):
                return queued
            return self._propose_locked(conn, sweep_id, worker, lease_s, spec)

    def _claim_without_engine(
        self, conn: Connection, sweep_id: str, worker: str, lease_s: float, now: float
    ) -> Claim | SweepSpec:
        """Reap stale runs and answer a claim without the engine, where that is possible:
        the sweep is not running, a pending run is there to hand out, or the sweep is done.

        Returns:
            The Claim, or the sweep's spec when the engine must propose a new config.
        """
        sweep = self._claim_row(conn, sweep_id, now)
        if sweep["stale"]:
            # Crash retries do not count towards run_cap: the row read stays right.
            _RUNS.reap(conn, now)
        if sweep["state"] != SweepState.running.value:
            finished = sweep["state"] == SweepState.finished.value and sweep["done_reason"]
            return Claim(run=None, done=True, reason=finished or f"sweep {sweep['state']}")
        # `stale`: the reap above may have queued a run again.
        if sweep["queued"] or sweep["stale"]:
            pending = _RUNS.claim_pending(conn, sweep_id, worker, lease_s, now, host=self.host)
            if pending is not None:
                # A pending run has no epochs: re-queueing a run deletes them.
                return Claim(run=_to_run(_RUNS.row(conn, pending), []))
        done_reason = sweep["done_reason"] or self._cap_reason(sweep)
        if done_reason is not None:
            return self._done(conn, sweep_id, done_reason, now)
        return self._known_spec(sweep_id, sweep, "spec")

    def _propose_locked(
        self,
        conn: Connection,
        sweep_id: str,
        worker: str,
        lease_s: float,
        spec: SweepSpec,
    ) -> Claim:
        """Propose and hand the proposal out in the caller's write transaction, where no
        other claim can take its config first. The lease starts when the run is handed
        out: a proposal can take seconds (the engine's first import, a bayes fit)."""
        outcome = engine.propose(spec, engine_view.proposal_runs(conn, sweep_id, spec))
        return self._hand_out(conn, sweep_id, worker, lease_s, outcome, self.clock())

    def _hand_out(
        self,
        conn: Connection,
        sweep_id: str,
        worker: str,
        lease_s: float,
        outcome: engine.Proposal | engine.Exhausted,
        now: float,
    ) -> Claim:
        """Insert the proposed config as a run running for `worker`, or end the sweep's
        claims when the engine has nothing more to propose."""
        if isinstance(outcome, engine.Exhausted):
            return self._done(conn, sweep_id, outcome.reason, now)
        # The id is random: on the rare clash nothing is inserted and another is drawn. All
        # rows: SQLite cannot commit while a RETURNING statement is unfinished.
        insertion = functools.partial(self._insertion, sweep_id, worker, lease_s, outcome, now)
        while not (inserted := conn.execute(*insertion()).fetchall()):
            pass
        return Claim(run=_to_run(inserted[0], []))

    def _insertion(
        self,
        sweep_id: str,
        worker: str,
        lease_s: float,
        proposal: engine.Proposal,
        now: float,
        if_open: bool = False,
    ) -> Statement:
        """The statement inserting `proposal` as a run running for `worker` under a new
        random id and returning its row, which inserts nothing when the id clashes.

        Args:
            if_open: insert only if the claim would reach the engine were it to read its
                sweep first (`_OPEN`), decided in the same statement.
        """
        values: tuple[Any, ...] = (
            _RUNS.new_id(),
            sweep_id,
            RunState.running.value,
            dumps(proposal.config),
            dumps(proposal.engine_config),
            proposal.config_key,
            worker,
            self.host,
            None if proposal.search_info is None else dumps(proposal.search_info),
            lease_s,
            now,
            now,
            now,
        )
        placeholders = ", ".join("?" * len(values))
        source = f"VALUES ({placeholders})"
        if if_open:
            stale, stale_params = _RUNS.stale(now)
            source = f"SELECT {placeholders} WHERE {_OPEN} AND NOT {stale}"
            open_params = (sweep_id, SweepState.running.value, sweep_id, RunState.pending.value)
            values = (*values, *open_params, *stale_params)
        return (
            "INSERT INTO runs (id, sweep_id, state, config, engine_config, config_key, worker,"
            f" host, search_info, lease_s, created_at, started_at, heartbeat_at) {source}"
            " ON CONFLICT (id) DO NOTHING RETURNING *",
            values,
        )

    def _done(self, conn: Connection, sweep_id: str, reason: str, now: float) -> Claim:
        """Record why the sweep hands out no more runs and finish it if none is left to end.

        Only then are its claims done: while a run still runs, its agent may die and the
        run come back as pending when its lease runs out, so the claim says "none now"
        (done=False) and the claimer asks again later."""
        sweep_end.lock_running(conn, sweep_id)
        conn.execute(
            "UPDATE sweeps SET done_reason = ? WHERE id = ? AND done_reason IS NULL",
            (reason, sweep_id),
        )
        finished = sweep_end.finish_if_drained(conn, sweep_id, now)
        return Claim(run=None, done=finished, reason=reason)

    @staticmethod
    def _cap_reason(sweep: Row) -> str | None:
        """Why a sweep read for a claim (`_claim_row`) is capped, or None."""
        cap = sweep["run_cap"]
        if cap is None or sweep["started"] < cap:
            return None
        return f"run_cap {cap} reached"

    # -- reporting -----------------------------------------------------------------

    @retried
    def log_epoch(self, run_id: str, worker: str, metrics: dict[str, Any]) -> Control:
        """Append an epoch, update the run's metric (`engine.reported`) and heartbeat, and
        say whether to go on."""
        now = self.clock()
        with self.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
            row = _RUNS.owned(conn, run_id, worker)
            if row is None:
                return Control.lost
            sweep = self._sweep_row(conn, row["sweep_id"])
            epoch = int(metrics.get("epoch", row["epochs"] + 1))
            count = epochs.record(conn, run_id, epoch, metrics)
            spec = self._spec(sweep)
            metric = row["metric"]
            if spec.metric_name is not None:
                value = metrics.get(spec.metric_name)
                program = spec.kind == "program"
                metric = engine.reported(metric, value, spec.metric_goal, program)
            conn.execute(
                "UPDATE runs SET metric = ?, epochs = ?, heartbeat_at = ? WHERE id = ?",
                (metric, count, now, run_id),
            )
            control = SWEEP_CONTROL.get(SweepState(sweep["state"]), Control.proceed)
            if control != Control.proceed or spec.early_terminate is None:
                return control
        with self.store.transaction() as conn:
            runs = engine_view.engine_runs(conn, row["sweep_id"], history=True)
        reason = engine.stop_reason(spec, runs, run_id)
        if reason is None:
            return Control.proceed
        with self.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
            kept = _RUNS.mark_stopping(conn, run_id, worker, reason)
        return Control.stop if kept else Control.lost

    @retried
    def heartbeat(self, run_id: str, worker: str) -> Control:
        """Refresh the run's heartbeat; `lost` if it is no longer this worker's."""
        with self.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
            row = _RUNS.beat(conn, run_id, worker, self.clock())
            if row is None:
                return Control.lost
            sweep = self._sweep_row(conn, row["sweep_id"])
            return SWEEP_CONTROL.get(SweepState(sweep["state"]), Control.proceed)

    @retried
    def finish_run(
        self,
        run_id: str,
        worker: str,
        summary: dict[str, Any],
        state: RunState = RunState.finished,
        reason: str | None = None,
    ) -> bool:
        """End a running run as finished or stopped; a stopped run keeps its stored stop reason."""
        state = RunLedger.finish_state(state)
        now = self.clock()
        with self.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
            row = _RUNS.owned(conn, run_id, worker, also=_SWEEP_OF_RUN)
            if row is None:
                return False
            spec = self._known_spec(row["sweep_id"], row, "sweep_spec")
            metric = (spec.metric_name, spec.metric_goal)
            program = spec.kind == "program"
            ended = _RUNS.finish(
                conn, row, summary, state, reason, metric, now, program, sweep_end.SWEEP_DONE
            )
            # Most runs end while their sweep is not done: nothing more to read then.
            if ended.returned is not None and ended.returned["sweep_done"]:
                sweep_end.finish_if_last(conn, row["sweep_id"], now)
            return True

    @retried
    def fail_run(self, run_id: str, worker: str, error: str, crashed: bool = False) -> bool:
        """End a running run as failed, or as crashed with its config queued again."""
        now = self.clock()
        with self.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
            row = _RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            _RUNS.fail(conn, row, error, now, crashed)
            sweep_end.finish_if_last(conn, row["sweep_id"], now)
            return True

    @retried
    def requeue_run(self, run_id: str, worker: str, reason: str) -> bool:
        """Put a running run back to pending with its epochs and metrics cleared."""
        now = self.clock()
        with self.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
            row = _RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            # Read under the run's lock: a sweep set final meanwhile is seen (set_sweep_state).
            sweep_state = SweepState(self._sweep_row(conn, row["sweep_id"])["state"])
            if _RUNS.requeue(conn, row, reason, sweep_state, now).state == RunState.pending:
                epochs.clear(conn, run_id)
            return True

    @retried
    def reap_stale(self) -> list[Run]:
        """Crash (and re-queue) every running run whose heartbeat is older than its lease."""
        with self.store.transaction(immediate=True, scope=ROWS_ONLY) as conn:
            return [self._run(conn, ended.row["id"]) for ended in _RUNS.reap(conn, self.clock())]

    # -- reading runs --------------------------------------------------------------

    @retried
    def list_runs(self, sweep_id: str, with_history: bool = True) -> list[Run]:
        """Every run of the sweep, oldest first."""
        with self.store.transaction() as conn:
            self._sweep_row(conn, sweep_id)
            rows = conn.execute(
                "SELECT * FROM runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,)
            ).fetchall()
            histories = epochs.histories(conn, sweep_id) if with_history else {}
        return [_to_run(row, histories.get(row["id"], [])) for row in rows]

    @retried
    def get_run(self, run_id: str) -> Run:
        """One run with its history."""
        with self.store.transaction() as conn:
            return self._run(conn, run_id)

    def close(self) -> None:
        """Close this process's store connections."""
        self.store.close()

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _unused_sweep_id(conn: Connection) -> str:
        while True:
            candidate = new_id()
            if conn.execute("SELECT 1 FROM sweeps WHERE id = ?", (candidate,)).fetchone() is None:
                return candidate

    @staticmethod
    def _sweep_row(conn: Connection, sweep_id: str) -> Row:
        """The sweep's row."""
        row = conn.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no sweep with id {sweep_id!r} in the local store")
        return row

    def _claim_row(self, conn: Connection, sweep_id: str, now: float) -> Row:
        """What a claim at `now` reads of its sweep, in one round trip: its state, done
        reason, run_cap and `started` (its first tries, which the cap counts: see
        `sweeper.store.base.FIRST_TRIES`), `queued`, whether it has a pending run, and
        `stale`, whether a run is due to be reaped; its spec only until this process
        has parsed it (a sweep's spec never changes)."""
        stale, stale_params = _RUNS.stale(now)
        spec = "" if sweep_id in self._specs else ", spec"
        row = conn.execute(
            f"SELECT state, done_reason, run_cap, started{spec},"
            " EXISTS (SELECT 1 FROM runs WHERE runs.sweep_id = sweeps.id AND state = ?)"
            f" AS queued, {stale} AS stale FROM sweeps WHERE id = ?",
            (RunState.pending.value, *stale_params, sweep_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no sweep with id {sweep_id!r} in the local store")
        return row

    @staticmethod
    def _resolve(conn: Connection, ref: str) -> Row:
        rows = conn.execute("SELECT * FROM sweeps ORDER BY created_at, rowid").fetchall()
        empty = " (no sweeps yet: run `sweeper create`)"
        return resolve_among(rows, ref, "sweep", "in the local store", empty=empty)

    def _sweep(self, conn: Connection, row: Row) -> Sweep:
        counts = {
            r["state"]: r["n"]
            for r in conn.execute(
                "SELECT state, COUNT(*) AS n FROM runs WHERE sweep_id = ? GROUP BY state",
                (row["id"],),
            )
        }
        spec = self._spec(row)
        return Sweep(
            id=row["id"],
            name=row["name"],
            backend=self.name,
            state=SweepState(row["state"]),
            method=row["method"],
            metric_name=row["metric_name"],
            metric_goal=row["metric_goal"],
            kind=spec.kind,
            run_cap=row["run_cap"],
            spec=spec.raw,
            spec_path=row["spec_path"],
            url=None,
            created_at=at(row["created_at"]),
            run_counts=counts,
        )

    @staticmethod
    def _spec(row: Row) -> SweepSpec:
        return SweepSpec.model_validate_json(row["spec"])

    def _known_spec(self, sweep_id: str, row: Row, column: str) -> SweepSpec:
        """The sweep's spec, parsed from `row[column]` once per process (a sweep's spec
        never changes); a row read after that may leave the column out."""
        if (known := self._specs.get(sweep_id)) is None:
            known = self._specs[sweep_id] = SweepSpec.model_validate_json(row[column])
        return known

    def _run(self, conn: Connection, run_id: str) -> Run:
        return _to_run(_RUNS.row(conn, run_id), epochs.history(conn, run_id))


def _to_run(row: Row, history: list[dict[str, Any]]) -> Run:
    search_info = None if row["search_info"] is None else json.loads(row["search_info"])
    return _RUNS.to_run(row, history, search_info)
