"""The engine glue: run conversion, config flattening, repeat handling, hyperband reasons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sweeps

from sweeper import engine
from sweeper.errors import SpecError
from sweeper.models import RunState
from sweeper.run_config import flatten_config

from .conftest import SEEDS_PARAMETERS, MakeSpec

#: W&B's own check of one parameter against its schema, as the engine calls it.
FILL_PARAMETER = sweeps.config.fill_parameter


def engine_run(
    run_id: str,
    config: dict[str, Any],
    state: RunState = RunState.finished,
    history: list[float] | None = None,
) -> engine.EngineRun:
    """A stored run of a flat (un-nested) config, with val_accuracy per epoch."""
    return engine.EngineRun(
        id=run_id,
        state=state,
        engine_config={k: {"value": v} for k, v in config.items()},
        config_key=engine.config_key(config),
        history=[{"epoch": i + 1, "val_accuracy": v} for i, v in enumerate(history or [])],
    )


def test_config_key_ignores_order_and_integer_floats() -> None:
    assert engine.config_key({"a": 1.0, "b": [2.0, 0.5]}) == engine.config_key(
        {"b": [2, 0.5], "a": 1}
    )
    assert engine.config_key({"a": 1}) != engine.config_key({"a": True})


def test_proposals_from_nested_groups_are_flat(make_spec: MakeSpec) -> None:
    parameters = {"optim": {"parameters": {"lr": {"values": [0.1, 0.01]}}}, "epochs": {"value": 5}}
    proposal = engine.propose(make_spec(parameters), [])
    assert isinstance(proposal, engine.Proposal)
    assert proposal.config == {"lr": 0.1, "epochs": 5}
    assert proposal.engine_config == {"epochs": {"value": 5}, "optim": {"value": {"lr": 0.1}}}


@pytest.mark.parametrize(
    ("parameters", "size"),
    [
        (SEEDS_PARAMETERS, 24),
        (
            {
                "g": {"parameters": {"a": {"values": [1, 2]}, "b": {"values": [3, 4, 5]}}},
                "c": {"value": 0},
            },
            6,
        ),
        ({"a": {"values": [1, 2], "distribution": "categorical"}}, 2),
    ],
)
def test_discrete_space_enumerates_every_config(parameters: dict[str, Any], size: int) -> None:
    space = engine.discrete_space(parameters)
    assert space is not None and len(space) == size
    assert len({engine.config_key(flatten_config(c)) for c in space}) == size


@pytest.mark.parametrize(
    "parameters",
    [
        {"lr": {"min": 0.0001, "max": 0.1}},
        {
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "a": {"values": [1]},
        },
        {"g": {"parameters": {"lr": {"distribution": "int_uniform", "min": 1, "max": 4}}}},
    ],
)
def test_continuous_space_is_not_enumerated(parameters: dict[str, Any]) -> None:
    assert engine.discrete_space(parameters) is None


@pytest.mark.parametrize(
    ("state", "engine_state"),
    [
        (RunState.pending, "pending"),
        (RunState.running, "running"),
        (RunState.finished, "finished"),
        (RunState.stopped, "finished"),
        (RunState.failed, "failed"),
        (RunState.crashed, "crashed"),
    ],
)
def test_to_sweep_run_maps_states(make_spec: MakeSpec, state: RunState, engine_state: str) -> None:
    run = engine.to_sweep_run(
        engine_run("r1", {"lr": 0.1}, state), make_spec({"lr": {"values": [0.1]}})
    )
    assert run.state == engine_state
    assert run.name == "r1" and run.config == {"lr": {"value": 0.1}}


@pytest.mark.parametrize(("goal", "best"), [("maximize", 0.8), ("minimize", 0.5)])
def test_summary_metric_is_the_best_epoch_not_the_last(
    make_spec: MakeSpec, goal: str, best: float
) -> None:
    spec = make_spec({"lr": {"values": [0.1]}}, goal=goal)
    run = engine.to_sweep_run(engine_run("r1", {"lr": 0.1}, history=[0.5, 0.8, 0.6]), spec)
    assert run.summary_metrics == {"val_accuracy": best}
    assert len(run.history) == 3


def test_a_program_runs_summary_metric_is_its_stored_metric(make_spec: MakeSpec) -> None:
    spec = make_spec({"lr": {"values": [0.1]}}, kind="program")
    stored = engine_run("r1", {"lr": 0.1}, history=[0.5, 0.8, 0.6])
    stored.metric = 0.6
    assert engine.to_sweep_run(stored, spec).summary_metrics == {"val_accuracy": 0.6}


def test_a_sweep_without_a_metric_gives_the_engine_none(make_spec: MakeSpec) -> None:
    spec = make_spec({"lr": {"values": [0.1, 0.2]}}, metric=False)
    run = engine.to_sweep_run(engine_run("r1", {"lr": 0.1}, history=[0.5]), spec)
    assert run.summary_metrics == {}
    proposal = engine.propose(spec, [engine_run("r1", {"lr": 0.1})])
    assert isinstance(proposal, engine.Proposal) and proposal.config == {"lr": 0.2}


@pytest.mark.parametrize(
    ("current", "value", "program", "metric"),
    [
        (0.8, 0.6, False, 0.8),
        (0.8, 0.6, True, 0.6),
        (0.8, float("nan"), True, 0.8),
        (None, None, True, None),
    ],
)
def test_reported_keeps_the_best_or_for_a_program_the_latest(
    current: float | None, value: float | None, program: bool, metric: float | None
) -> None:
    assert engine.reported(current, value, "maximize", program) == metric


def test_grid_proposes_in_order_then_is_exhausted(make_spec: MakeSpec) -> None:
    parameters = {"a": {"values": [1, 2]}, "b": {"values": ["x", "y"]}}
    spec = make_spec(parameters)
    runs: list[engine.EngineRun] = []
    for i in range(4):
        proposal = engine.propose(spec, runs)
        assert isinstance(proposal, engine.Proposal)
        runs.append(engine_run(f"r{i}", proposal.config))
    assert [r.engine_config["a"]["value"] for r in runs] == [1, 1, 2, 2]
    outcome = engine.propose(spec, runs)
    assert outcome == engine.Exhausted(reason="grid exhausted: all 4 configs ran")


def test_random_search_never_repeats_a_used_config(make_spec: MakeSpec) -> None:
    parameters = {"a": {"values": list(range(6))}, "b": {"value": "fixed"}}
    spec = make_spec(parameters, method="random")
    runs = [engine_run(f"r{a}", {"a": a, "b": "fixed"}) for a in range(5)]
    proposal = engine.propose(spec, runs)
    assert isinstance(proposal, engine.Proposal)
    assert proposal.config == {"a": 5, "b": "fixed"}
    runs.append(engine_run("r5", proposal.config, RunState.running))
    assert engine.propose(spec, runs) == engine.Exhausted(
        reason="search space exhausted: all 6 configs ran"
    )


def test_fallback_pick_is_recorded_in_search_info(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec({"a": {"values": [1, 2, 3]}}, method="random")
    monkeypatch.setattr(engine.random, "choice", lambda items: items[0])
    # Two used configs out of three: the engine will often repeat one; force it to.
    monkeypatch.setattr(
        sweeps, "next_runs", lambda *a, **k: [sweeps.SweepRun(config={"a": {"value": 1}})]
    )
    proposal = engine.propose(spec, [engine_run("r1", {"a": 1}), engine_run("r2", {"a": 2})])
    assert isinstance(proposal, engine.Proposal)
    assert proposal.config == {"a": 3}
    assert proposal.search_info is not None
    assert proposal.search_info == {
        "repeats_skipped": 1,
        "picked": "the engine proposed an already-used config; picked an unused config at "
        "random (1 of the 3-config space were left)",
    }


def _engine_proposes(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]) -> list[int]:
    """Make the engine propose `config` (flat) on every call; the calls, counted."""
    calls: list[int] = []

    def proposes(*args: Any, **kwargs: Any) -> list[sweeps.SweepRun]:
        calls.append(1)
        return [sweeps.SweepRun(config={k: {"value": v} for k, v in config.items()})]

    monkeypatch.setattr(sweeps, "next_runs", proposes)
    return calls


def test_a_bayes_repeat_becomes_the_nearest_unused_config_in_one_engine_call(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec({"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}}, method="bayes")
    used = [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}, {"a": 1, "b": "y"}]
    calls = _engine_proposes(monkeypatch, {"a": 1, "b": "x"})
    proposal = engine.propose(spec, [engine_run(f"r{i}", c) for i, c in enumerate(used)])
    # The engine's CDF coordinates: a 1/3, 2/3, 1 and b 1/2, 1. From (1, x), (2, y) is
    # 1/3 and 1/2 away (squared 0.36), (3, x) 2/3 away (0.44), (3, y) further.
    assert isinstance(proposal, engine.Proposal)
    assert proposal.config == {"a": 2, "b": "y"}
    assert calls == [1]
    assert proposal.search_info == {
        "repeats_skipped": 1,
        "picked": "the engine proposed an already-used config; picked the unused config "
        "nearest to it in the engine's normalized space (3 of the 6-config space were left)",
    }


def test_unused_configs_equally_near_a_bayes_repeat_are_picked_at_random(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec({"a": {"values": [1, 2, 3]}, "b": {"value": "fixed"}}, method="bayes")
    _engine_proposes(monkeypatch, {"a": 2, "b": "fixed"})
    offered: list[list[str]] = []
    monkeypatch.setattr(engine.random, "choice", lambda items: offered.append(items) or items[-1])
    proposal = engine.propose(spec, [engine_run("r1", {"a": 2, "b": "fixed"})])
    assert offered == [[engine.config_key({"a": a, "b": "fixed"}) for a in (1, 3)]]
    assert isinstance(proposal, engine.Proposal) and proposal.config == {"a": 3, "b": "fixed"}


def test_a_bayes_repeat_in_a_space_with_groups_becomes_an_unused_config(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    parameters = {"opt": {"parameters": {"lr": {"values": [0.1, 0.01]}, "m": {"value": 0.9}}}}
    spec = make_spec(parameters, method="bayes")
    used = {"opt": {"lr": 0.1, "m": 0.9}}
    monkeypatch.setattr(
        sweeps,
        "next_runs",
        lambda *a, **k: [sweeps.SweepRun(config={"opt": {"value": used["opt"]}})],
    )
    run = engine.EngineRun(
        id="r1",
        state=RunState.finished,
        engine_config={"opt": {"value": used["opt"]}},
        config_key=engine.config_key(flatten_config({"opt": {"value": used["opt"]}})),
    )
    proposal = engine.propose(spec, [run])
    assert isinstance(proposal, engine.Proposal)
    assert proposal.engine_config == {"opt": {"value": {"lr": 0.01, "m": 0.9}}}


def test_a_discrete_space_is_keyed_once_per_parameters_section(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    enumerated: list[dict[str, Any]] = []
    real = engine.discrete_space

    def counted(parameters: dict[str, Any]) -> Any:
        enumerated.append(parameters)
        return real(parameters)

    monkeypatch.setattr(engine, "discrete_space", counted)
    engine._keyed_space_of.cache_clear()
    grid = make_spec({"a": {"values": [1, 2, 3]}})
    for runs in ([], [engine_run("r0", {"a": 1})]):
        assert isinstance(engine.propose(grid, runs), engine.Proposal)
    assert len(enumerated) == 1
    # A section JSON would not give back equal (NaN != NaN) is keyed every time.
    with_nan = make_spec({"a": {"values": [1, float("nan")]}})
    for _ in range(2):
        assert isinstance(engine.propose(with_nan, []), engine.Proposal)
    assert len(enumerated) == 3


def test_crashed_config_may_be_proposed_again(make_spec: MakeSpec) -> None:
    spec = make_spec({"a": {"values": [1]}}, method="random")
    proposal = engine.propose(spec, [engine_run("r1", {"a": 1}, RunState.crashed)])
    assert isinstance(proposal, engine.Proposal) and proposal.config == {"a": 1}


def test_bayes_search_info_is_json_safe(make_spec: MakeSpec) -> None:
    spec = make_spec({"lr": {"min": 0.001, "max": 0.1}}, method="bayes")
    runs = [
        engine_run(f"r{i}", {"lr": lr}, history=[acc])
        for i, (lr, acc) in enumerate([(0.01, 0.5), (0.05, 0.7)])
    ]
    proposal = engine.propose(spec, runs)
    assert isinstance(proposal, engine.Proposal)
    assert 0.001 <= proposal.config["lr"] <= 0.1
    assert proposal.search_info is not None
    assert not any(isinstance(v, np.generic | np.ndarray) for v in proposal.search_info.values())


@pytest.mark.parametrize(
    ("method", "parameters", "needed"),
    [
        ("random", {"lr": {"min": 0.001, "max": 0.1}}, False),
        ("random", {"lr": {"values": [0.1, 0.01]}}, True),
        ("bayes", {"lr": {"min": 0.001, "max": 0.1}}, True),
        ("grid", {"lr": {"values": [0.1, 0.01]}}, True),
    ],
)
def test_needs_runs_only_where_history_or_repeats_matter(
    make_spec: MakeSpec, method: str, parameters: dict[str, Any], needed: bool
) -> None:
    assert engine.needs_runs(make_spec(parameters, method=method)) is needed


def test_random_search_on_a_continuous_space_draws_ahead_in_one_engine_call(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = sweeps.next_runs

    def counted(config: dict[str, Any], runs: list[Any], validate: bool, n: int) -> Any:
        calls.append(n)
        return real(config, runs, validate, n)

    monkeypatch.setattr(sweeps, "next_runs", counted)
    monkeypatch.setattr(engine, "_drawn", {})
    spec = make_spec({"lr": {"min": 0.001, "max": 0.1}}, method="random")
    other = make_spec({"lr": {"min": 0.5, "max": 0.9}}, method="random")
    drawn = [engine.propose(spec, []) for _ in range(engine.DRAWN_AHEAD + 1)]
    assert calls == [engine.DRAWN_AHEAD, engine.DRAWN_AHEAD]
    lrs = [p.config["lr"] for p in drawn if isinstance(p, engine.Proposal)]
    assert len(set(lrs)) == len(drawn) and all(0.001 <= lr <= 0.1 for lr in lrs)
    # Another sweep's space has draws of its own.
    proposal = engine.propose(other, [])
    assert isinstance(proposal, engine.Proposal) and 0.5 <= proposal.config["lr"] <= 0.9
    assert len(calls) == 3


MIXED_BAYES_PARAMETERS: dict[str, Any] = {
    "lr": {"min": 0.0001, "max": 0.01},
    "dropout": {"values": [0, 0.2, 0.3]},
    "mode": {"value": "head"},
}


@pytest.mark.parametrize("finished", [0, 1, 5])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_bayes_proposal_is_the_engines_own_for_the_same_history_and_seed(
    make_spec: MakeSpec, use_wandb_engine: Callable[[], None], finished: int
) -> None:
    spec = make_spec(MIXED_BAYES_PARAMETERS, method="bayes")
    rng = np.random.default_rng(finished)
    runs = [
        engine_run(
            f"r{i}",
            {"lr": float(rng.uniform(0.0001, 0.01)), "dropout": 0.2 * (i % 2), "mode": "head"},
            history=[float(rng.uniform())],
        )
        for i in range(finished)
    ]
    np.random.seed(7)
    proposal = engine.propose(spec, runs)
    assert isinstance(proposal, engine.Proposal)
    # The engine alone, as W&B runs it: its own schema checks and internals.
    use_wandb_engine()
    np.random.seed(7)
    (direct,) = sweeps.next_runs(
        spec.raw, [engine.to_sweep_run(r, spec) for r in runs], validate=False, n=1
    )
    assert direct is not None
    assert proposal.engine_config == engine.plain(direct.config)
    assert proposal.search_info == engine.plain(direct.search_info)


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the parameters W&B's schema check is called for, from now on."""
    names: list[str] = []

    def counted(name: str, config: dict[str, Any]) -> Any:
        names.append(name)
        return FILL_PARAMETER(name, config)

    monkeypatch.setattr(sweeps.config, "fill_parameter", counted)
    engine._filled.cache_clear()
    return names


def test_each_parameter_is_checked_against_the_schema_once_per_spec(
    make_spec: MakeSpec, checked: list[str]
) -> None:
    spec = make_spec(SEEDS_PARAMETERS, method="bayes")
    runs: list[engine.EngineRun] = []
    for i in range(4):
        proposal = engine.propose(spec, runs)
        assert isinstance(proposal, engine.Proposal)
        runs.append(engine_run(f"r{i}", proposal.config, history=[0.1 * i]))
    assert sorted(checked) == sorted(SEEDS_PARAMETERS)
    # Another space's parameters are checked once too.
    engine.propose(make_spec({"lr": {"min": 0.001, "max": 0.1}}, method="bayes"), [])
    assert len(checked) == len(SEEDS_PARAMETERS) + 1


def test_a_checked_parameter_is_handed_out_as_a_copy_and_errors_come_back(
    checked: list[str],
) -> None:
    first = engine._fill_parameter_once("a", {"values": [1, 2]})
    assert first == FILL_PARAMETER("a", {"values": [1, 2]})
    assert first is not None
    first[1]["values"].append(3)
    assert engine._fill_parameter_once("a", {"values": [1, 2]}) == FILL_PARAMETER(
        "a", {"values": [1, 2]}
    )
    # A group of parameters is not one parameter: the engine catches this and unnests it.
    group = {"parameters": {"b": {"value": 1}}}
    for _ in range(2):
        with pytest.raises(sweeps.config.ParamValidationError):
            engine._fill_parameter_once("g", group)
    assert checked == ["a", "g"]
    # What JSON would not give back as it was (a tuple) is checked every time.
    for _ in range(2):
        assert engine._fill_parameter_once("t", {"values": (1, 2)}) == FILL_PARAMETER(
            "t", {"values": (1, 2)}
        )
    assert checked == ["a", "g", "t", "t"]


def test_engine_errors_become_spec_errors(make_spec: MakeSpec) -> None:
    spec = make_spec({"lr": {"distribution": "uniform"}}, method="bayes")
    with pytest.raises(SpecError, match=r"t\.yaml: the sweep engine cannot run this spec"):
        engine.propose(spec, [])


HYPERBAND = {"type": "hyperband", "min_iter": 1, "eta": 2}


def test_hyperband_stops_a_weak_run_with_a_reason(make_spec: MakeSpec) -> None:
    spec = make_spec({"a": {"values": [1, 2, 3]}}, early_terminate=HYPERBAND)
    runs = [
        engine_run("good", {"a": 1}, history=[0.8]),
        engine_run("fair", {"a": 2}, history=[0.7]),
        engine_run("weak", {"a": 3}, RunState.running, history=[0.3]),
    ]
    assert (
        engine.stop_reason(spec, runs, "weak") == "hyperband: below the 0.7 cut at epoch 1, band 1"
    )


def test_hyperband_keeps_a_strong_run_and_specs_without_it(make_spec: MakeSpec) -> None:
    runs = [
        engine_run("good", {"a": 1}, history=[0.8]),
        engine_run("fair", {"a": 2}, history=[0.7]),
        engine_run("best", {"a": 3}, RunState.running, history=[0.9]),
    ]
    assert (
        engine.stop_reason(
            make_spec({"a": {"values": [1, 2, 3]}}, early_terminate=HYPERBAND), runs, "best"
        )
        is None
    )
    assert engine.stop_reason(make_spec({"a": {"values": [1, 2, 3]}}), runs, "best") is None


def test_hyperband_minimize_reason_says_above(make_spec: MakeSpec) -> None:
    spec = make_spec({"a": {"values": [1, 2, 3]}}, early_terminate=HYPERBAND, goal="minimize")
    runs = [
        engine_run("good", {"a": 1}, history=[0.2]),
        engine_run("fair", {"a": 2}, history=[0.3]),
        engine_run("weak", {"a": 3}, RunState.running, history=[0.9]),
    ]
    assert (
        engine.stop_reason(spec, runs, "weak") == "hyperband: above the 0.3 cut at epoch 1, band 1"
    )
