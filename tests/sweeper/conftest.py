"""Fixtures for the store, engine and local-backend tests (specs built directly, a real store)
and for the CLI tests (spec files)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from sweeper.backends.local import LocalBackend
from sweeper.paths import Home
from sweeper.spec import SweepSpec
from sweeper.store import SCHEMA_VERSION
from tests.sweeper.cli_testkit import GRID

#: The seed projects' Part B space: 2 * 3 * 2 * 2 = 24 configs.
SEEDS_PARAMETERS: dict[str, Any] = {
    "epochs": {"values": [5, 10]},
    "dropout": {"values": [0, 0.2, 0.3]},
    "batch_size": {"values": [32, 64]},
    "lr": {"values": [1e-3, 1e-4]},
    "mode": {"value": "head"},
}

MakeSpec = Callable[..., SweepSpec]


def build_spec(
    parameters: dict[str, Any],
    method: Literal["bayes", "random", "grid"] = "grid",
    run_cap: int | None = None,
    early_terminate: dict[str, Any] | None = None,
    goal: Literal["maximize", "minimize"] = "maximize",
    name: str | None = None,
    kind: Literal["trainer", "program"] = "trainer",
    metric: bool = True,
) -> SweepSpec:
    """A SweepSpec as `load_spec` would return it for the equivalent YAML.

    Built directly, not through `parse_spec` (tests/specs.py): the engine and store tests
    sweep abstract names (`a`, `b`) and pass specs the trainer layer rejects on purpose (an
    engine error, a minimized val_accuracy). Once the spec package can check W&B's schema
    without the trainer layer, this should go through that.
    """
    raw: dict[str, Any] = {"method": method, "parameters": parameters}
    if metric:
        raw["metric"] = {"name": "val_accuracy", "goal": goal}
    if run_cap is not None:
        raw["run_cap"] = run_cap
    if early_terminate is not None:
        raw["early_terminate"] = early_terminate
    if name is not None:
        raw["name"] = name
    return SweepSpec(
        raw=raw,
        source="t.yaml",
        name=name,
        method=method,
        kind=kind,
        metric_name="val_accuracy" if metric else None,
        metric_goal=goal,
        run_cap=run_cap,
        early_terminate=early_terminate,
    )


@pytest.fixture
def make_spec() -> MakeSpec:
    """`build_spec` as a fixture, so tests need not import from conftest."""
    return build_spec


class FakeClock:
    """Epoch seconds that move only when a test says so (`advance`) or when the code under
    test sleeps on it (`sleep`, recorded in `slept`): leases expire and retries back off
    without real waiting."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


@pytest.fixture
def use_wandb_engine(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A call that switches to W&B's engine as installed for the rest of the test: sweeps'
    own check of each parameter and its own internals where `sweeper.engine` puts faster
    ones (`sweeper.engine_speed`)."""
    import sweeps.config
    import sweeps.params

    from sweeper import engine, engine_speed

    def use() -> None:
        engine._sweeps()  # sets up the faster ones once per process, so before this
        monkeypatch.setattr(sweeps.params, "fill_parameter", sweeps.config.fill_parameter)
        for module, name, own in engine_speed.WANDB_OWN:
            monkeypatch.setattr(module, name, own)

    return use


@pytest.fixture
def clock() -> FakeClock:
    """The time the `backend` fixture sees; `clock.advance(s)` moves it."""
    return FakeClock()


@pytest.fixture
def backend(isolated_env: Any, clock: FakeClock) -> Iterator[LocalBackend]:
    """A local backend on a fresh store under the test's SWEEPER_HOME, on the test's clock."""
    local = LocalBackend(Home(), clock=clock)
    yield local
    local.close()


def fake_accuracy(config: dict[str, Any]) -> float:
    """A deterministic val_accuracy with structure for bayes to learn: small lr and dropout help."""
    return round(
        0.55
        + 0.1 * (config["lr"] == 1e-4)
        + config["dropout"] / 4
        + 0.02 * (config["batch_size"] == 64),
        4,
    )


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """A valid 2 x 2 grid spec (`cli_testkit.GRID`) on disk."""
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    return path


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    """The grid spec with one misspelt parameter name (`dropuot`)."""
    path = tmp_path / "bad.yaml"
    path.write_text(GRID.replace("dropout:", "dropuot:"))
    return path


def capped_sweep_with_a_retry(backend: LocalBackend, make_spec: MakeSpec) -> str:
    """A grid sweep capped at 3 runs, two of them claimed and the first crashed, so its
    config is queued again: 3 runs, of which 2 count towards the cap (first tries)."""
    sweep = backend.create_sweep(make_spec({"a": {"values": [1, 2, 3, 4]}}, run_cap=3))
    first = backend.claim_run(sweep.id, "w1").run
    assert first is not None and backend.claim_run(sweep.id, "w1").run is not None
    assert backend.fail_run(first.id, "w1", "killed", crashed=True)
    return sweep.id


def check_first_tries_counted(home: Home, capped: str, empty: str) -> None:
    """Open the store at `home`, migrated from before it counted first tries, and check
    the count it backfilled: `capped` (`capped_sweep_with_a_retry`) has 2, `empty` none,
    and `capped` hands out the retry (not counted) and one new config, then stops."""
    after = LocalBackend(home)
    try:
        assert after.store.schema_version == SCHEMA_VERSION
        with after.store.transaction() as conn:
            counted = dict(conn.execute("SELECT id, started FROM sweeps").fetchall())
        assert counted == {capped: 2, empty: 0}
        handed: list[int] = []
        while (run := after.claim_run(capped, "w2").run) is not None:
            handed.append(run.config["a"])
        assert handed == [1, 3]
    finally:
        after.close()
