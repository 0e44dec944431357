"""What the sweep engine reads of the local store: a sweep's runs as `engine.EngineRun`,
and whether a proposed config is used already (the dedupe a claim checks under its lock)."""

from __future__ import annotations

import json

from sweeper import engine
from sweeper.backends import epochs
from sweeper.models import RunState
from sweeper.spec import SweepSpec
from sweeper.store.base import Connection


def engine_runs(conn: Connection, sweep_id: str, history: bool) -> list[engine.EngineRun]:
    """The sweep's runs as the engine reads them, with their epochs when `history`."""
    histories = epochs.histories(conn, sweep_id) if history else {}
    # Rows come from our own table, so pydantic's validation is skipped: claims stay O(1) per run.
    return [
        engine.EngineRun.model_construct(
            id=r["id"],
            state=RunState(r["state"]),
            engine_config=json.loads(r["engine_config"]),
            config_key=r["config_key"],
            metric=r["metric"],
            history=histories.get(r["id"], []),
        )
        for r in conn.execute(
            "SELECT id, state, engine_config, config_key, metric FROM runs WHERE sweep_id = ? ORDER BY rowid",
            (sweep_id,),
        )
    ]


def proposal_runs(conn: Connection, sweep_id: str, spec: SweepSpec) -> list[engine.EngineRun]:
    """The runs `engine.propose` reads for this spec (none for random search on a
    continuous space)."""
    return engine_runs(conn, sweep_id, history=False) if engine.needs_runs(spec) else []


def used(conn: Connection, sweep_id: str, outcome: engine.Proposal | engine.Exhausted) -> bool:
    """Whether the proposed config is used now, as `engine.propose` counts it (a run of it
    in any state but crashed, whose retry is a run itself). An exhausted space is never
    undone (runs are only ever added), so that outcome always stands."""
    if isinstance(outcome, engine.Exhausted):
        return False
    return (
        conn.execute(
            "SELECT 1 FROM runs WHERE sweep_id = ? AND config_key = ? AND state != ? LIMIT 1",
            (sweep_id, outcome.config_key, RunState.crashed.value),
        ).fetchone()
        is not None
    )
