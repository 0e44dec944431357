"""The one place that talks to wandb's open-source sweep engine (`import sweeps`).

The engine is pure: it takes the sweep config and the run history and proposes the
next config (`sweeps.next_run`) or the runs hyperband would stop (`sweeps.stop_runs`).
This module turns stored runs into `sweeps.SweepRun` objects, calls the engine, and
returns plain values: a flat trainer config with the reason it was proposed, or a
human sentence saying why a run should stop.

On top of the engine it adds one guarantee W&B's bayes and random search lack: on a
discrete space (every parameter a `value` or a list of `values`) a config that already
ran or is running is never proposed again.

The engine (and scipy and scikit-learn with it, 1.5 s) is imported on the first call, not
with this module: `sweeper ls` and `status` open the backends but never propose. On import
its check of each parameter against W&B's schema is memoized and three of its internals
are replaced by faster ones that compute the same values (see `_sweeps`).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import math
import os
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field

from sweeper.errors import SpecError
from sweeper.models import RunState
from sweeper.run_config import flatten_config

if TYPE_CHECKING:
    from sweeps import SweepRun
    from threadpoolctl import ThreadpoolController

    from sweeper.spec import SweepSpec

_T = TypeVar("_T")

#: Configs random search on a continuous space draws per engine call (see `propose`).
#: With one `ppf` call per parameter per engine call (`engine_speed`), the call's fixed
#: cost dominates: 64 instead of 16 took a draw from 0.31 to 0.19 ms CPU (loaded dev CPU).
DRAWN_AHEAD = 64
#: Per (process, sweep config): random configs drawn ahead and not handed out yet.
_drawn: dict[tuple[int, str], list[Proposal]] = {}

#: Our run states as the engine knows them: a stopped run ended normally for its purposes.
_ENGINE_STATE = {
    RunState.pending: "pending",
    RunState.running: "running",
    RunState.finished: "finished",
    RunState.stopped: "finished",
    RunState.failed: "failed",
    RunState.crashed: "crashed",
}

#: What the engine's own code raises on a spec it cannot run.
_ENGINE_ERRORS = (ValueError, KeyError, TypeError, AssertionError)


class EngineRun(BaseModel):
    """What the engine needs to know about one stored run."""

    id: str
    state: RunState
    engine_config: dict[str, Any] = Field(description='Engine form: {"lr": {"value": 0.001}, ...}.')
    config_key: str
    metric: float | None = Field(
        None, description="The run's sweep metric as stored (`sweeper.models.Run.metric`)."
    )
    history: list[dict[str, Any]] = Field(
        default_factory=list, description="Per-epoch metrics; hyperband needs them."
    )


class Proposal(BaseModel):
    """A config to train next and why the engine chose it."""

    config: dict[str, Any] = Field(description="Flat trainer config.")
    engine_config: dict[str, Any]
    config_key: str
    search_info: dict[str, Any] | None = None


class Exhausted(BaseModel):
    """The engine has nothing more to propose."""

    reason: str


def config_key(config: Mapping[str, Any]) -> str:
    """A canonical string for a flat config, equal for configs the trainer cannot tell apart.

    >>> config_key({"lr": 0.001, "epochs": 5.0}) == config_key({"epochs": 5, "lr": 1e-3})
    True
    """
    return json.dumps(_canonical(dict(config)), sort_keys=True, separators=(",", ":"))


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into Python values, so it is JSON-safe."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return plain(value.tolist())
    return value


def discrete_space(parameters: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Every config (engine form) of a space made only of `value` / `values` parameters
    and groups of them, in the engine's grid order; None when any parameter is continuous.

    >>> len(discrete_space({"a": {"values": [1, 2]}, "b": {"value": 3}, "c": {"values": [4, 5, 6]}}))
    6
    """
    choices = _choices(parameters)
    if choices is None:
        return None
    names = sorted(choices)
    return [
        {name: {"value": value} for name, value in zip(names, combo, strict=True)}
        for combo in itertools.product(*(choices[n] for n in names))
    ]


def _choices(parameters: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    """Per parameter, its possible values (a group's are dicts of its members' values)."""
    choices: dict[str, list[Any]] = {}
    for name, param in parameters.items():
        if not isinstance(param, Mapping):
            return None
        if "value" in param:
            choices[name] = [param["value"]]
        elif "values" in param and param.get("distribution", "categorical") == "categorical":
            choices[name] = list(param["values"])
        elif isinstance(param.get("parameters"), Mapping):
            members = _choices(param["parameters"])
            if members is None:
                return None
            keys = sorted(members)
            choices[name] = [
                dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(members[k] for k in keys))
            ]
        else:
            return None
    return choices


def _engine_config(spec: SweepSpec) -> dict[str, Any]:
    """The sweep config the engine reads: the raw spec with metric and method as validated."""
    config = dict(spec.raw)
    config["method"] = spec.method
    if spec.metric_name is not None:
        metric = dict(config.get("metric") or {})
        metric.update(name=spec.metric_name, goal=spec.metric_goal)
        config["metric"] = metric
    if spec.early_terminate is not None:
        config["early_terminate"] = spec.early_terminate
    return config


def better(best: float | None, value: Any, goal: str) -> float | None:
    """The better of the best so far and a new value; non-numbers and NaN are ignored.

    >>> better(0.7, 0.6, "maximize"), better(None, float("nan"), "minimize")
    (0.7, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return best
    if best is None:
        return float(value)
    return float(max(best, value) if goal == "maximize" else min(best, value))


def reported(current: float | None, value: Any, goal: str, program: bool) -> float | None:
    """A run's metric once it reports `value`: the trainer's best epoch so far; a program
    run's latest value, its summary as W&B keeps it (non-numbers and NaN are ignored).

    >>> reported(0.7, 0.6, "maximize", program=False), reported(0.7, 0.6, "maximize", program=True)
    (0.7, 0.6)
    >>> reported(0.7, "n/a", "maximize", program=True)
    0.7
    """
    if not program:
        return better(current, value, goal)
    latest = better(None, value, goal)
    return current if latest is None else latest


def best_metric(
    history: Sequence[Mapping[str, Any]], metric: str, goal: str, start: float | None = None
) -> float | None:
    """The best finite value of `metric` over the epochs (and `start`) under `goal`, or None.

    >>> best_metric([{"acc": 0.5}, {"acc": 0.7}, {"acc": 0.6}], "acc", "maximize")
    0.7
    """
    best = start
    for epoch in history:
        best = better(best, epoch.get(metric), goal)
    return best


def to_sweep_run(run: EngineRun, spec: SweepSpec) -> SweepRun:
    """The engine's view of a stored run. Its summary metric is a trainer run's best epoch,
    not the last; a program run's is its stored metric, the summary value W&B's
    controller would read."""
    sweeps = _sweeps()
    name = spec.metric_name
    if name is None:
        value = None
    elif spec.kind == "program":
        value = run.metric
    else:
        value = best_metric(run.history, name, spec.metric_goal, start=run.metric)
    return sweeps.SweepRun(
        name=run.id,
        state=_ENGINE_STATE[run.state],
        config=run.engine_config,
        summary_metrics={} if name is None or value is None else {name: value},
        history=run.history,
    )


def needs_runs(spec: SweepSpec) -> bool:
    """Whether `propose` reads the runs: random search on a continuous space never does,
    so a caller can skip loading them."""
    return spec.method != "random" or discrete_space(spec.raw.get("parameters") or {}) is not None


def propose(spec: SweepSpec, runs: Sequence[EngineRun]) -> Proposal | Exhausted:
    """The next config to train, or why there is none.

    On a discrete space a config that is used (any run of it that did not crash) is
    never proposed. The engine is asked once; when it proposes a used config, bayes gets
    the unused config nearest to it in the engine's normalized space (ties at random):
    the GP chose that region, and one engine call per claim instead of up to three found
    the best config as early (bench/bayes_dedupe.py). Random search gets an unused config
    at random, which is what asking again until one comes up would give, less the calls.
    `search_info` says so.

    Random search on a continuous space reads no runs, so its configs are independent
    draws: this process draws `DRAWN_AHEAD` of them in one engine call (each call builds
    the space's parameters anew) and hands them out one by one. A forked child draws its
    own.

    Raises:
        SpecError: the engine cannot run this spec.
    """
    space = _keyed_space(spec.raw.get("parameters") or {})
    if space is None and spec.method == "random":
        return _drawn_ahead(spec)
    # A crashed run's config lives on in its re-queued retry, which is itself a run.
    used = {r.config_key for r in runs if r.state != RunState.crashed}
    keyed = space or {}
    unused = {key: c for key, c in keyed.items() if key not in used}
    if space is not None and not unused:
        return _exhausted(spec, len(keyed))

    # Random search ignores the history; building SweepRuns for it would cost O(runs) per claim.
    engine_runs = [to_sweep_run(r, spec) for r in runs] if spec.method != "random" else []
    (suggestion,) = _next_runs(spec, engine_runs, 1)
    if suggestion is None:
        return _exhausted(spec, len({r.config_key for r in runs}))
    proposal = _proposal(suggestion.config, suggestion.search_info)
    if space is None or proposal.config_key not in used:
        return proposal

    if spec.method == "bayes":
        candidates = _call(spec, lambda: _nearest(spec, proposal.engine_config, unused))
        how = "the unused config nearest to it in the engine's normalized space"
    else:
        candidates = sorted(unused)
        how = "an unused config at random"
    chosen = unused[random.choice(candidates)]
    return _proposal(
        chosen,
        {
            "repeats_skipped": 1,
            "picked": (
                f"the engine proposed an already-used config; picked {how} "
                f"({len(unused)} of the {len(keyed)}-config space were left)"
            ),
        },
    )


def _keyed_space(parameters: Mapping[str, Any]) -> Mapping[str, dict[str, Any]] | None:
    """`discrete_space` by config key, None for a continuous space; computed once per
    parameters section and shared, so read only: every claim asks, and keying the seeds'
    24 configs costs 3 ms. A section that JSON does not carry exactly is keyed every time
    (the memo's key is its JSON, as in `_fill_parameter_once`)."""
    if (key := _exact_json(parameters, sort_keys=True)) is None:
        return _key_space(parameters)
    return _keyed_space_of(key)


@functools.lru_cache(maxsize=64)
def _keyed_space_of(parameters_json: str) -> Mapping[str, dict[str, Any]] | None:
    return _key_space(json.loads(parameters_json))


def _key_space(parameters: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    space = discrete_space(parameters)
    return None if space is None else {config_key(flatten_config(c)): c for c in space}


def _nearest(
    spec: SweepSpec, proposed: dict[str, Any], unused: Mapping[str, dict[str, Any]]
) -> list[str]:
    """The keys of the unused configs (engine form) nearest to `proposed`, sorted.

    Distances are taken where the engine's GP sees configs: each parameter's value as its
    CDF in [0, 1] (`HyperParameterSet.normalize_runs_as_array`), so a config one step
    away in one parameter is near.
    """
    sweeps = _sweeps()
    from sweeps.params import HyperParameterSet

    keys = sorted(unused)
    params = HyperParameterSet.from_config(_engine_config(spec)["parameters"])
    points = params.normalize_runs_as_array(
        [sweeps.SweepRun(config=c) for c in [proposed, *(unused[k] for k in keys)]]
    )
    distances = ((points[1:] - points[0]) ** 2).sum(axis=1)
    # Equal distances computed from different CDF sums may differ in the last bits.
    return [k for k, d in zip(keys, distances, strict=True) if d <= distances.min() + 1e-9]


def _drawn_ahead(spec: SweepSpec) -> Proposal:
    """The next of this process's random configs drawn ahead for `spec` (see `propose`)."""
    key = (os.getpid(), json.dumps(_engine_config(spec), sort_keys=True, default=str))
    drawn = _drawn.setdefault(key, [])
    if not drawn:
        drawn.extend(
            _proposal(run.config, run.search_info)
            for run in _next_runs(spec, [], DRAWN_AHEAD)
            if run is not None
        )
    return drawn.pop(0)


def _next_runs(spec: SweepSpec, runs: list[SweepRun], n: int) -> Sequence[SweepRun | None]:
    """`sweeps.next_runs` on one BLAS/OpenMP thread."""
    from sklearn.exceptions import ConvergenceWarning

    sweeps = _sweeps()

    # Bayes fits a GP to a few hundred points: extra BLAS/OpenMP threads only fight the
    # training processes for cores (4x slower measured on a busy host).
    with _threadpools().limit(limits=1), warnings.catch_warnings():
        # The GP's fit warns when a length scale hits its bound: normal on small or
        # flat histories, and nothing a user can act on.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _call(spec, lambda: sweeps.next_runs(_engine_config(spec), runs, False, n))


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The thread pools of the libraries the engine loaded (scipy's BLAS, OpenMP), found
    once: `threadpool_limits` would scan the process's mapped libraries on every call."""
    _sweeps()  # loads scipy and scikit-learn, whose pools are limited
    from sklearn.exceptions import ConvergenceWarning  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.cache
def _sweeps() -> ModuleType:
    """wandb's engine, imported once, with its check of each parameter memoized.

    Every engine call builds the sweep's parameters anew (`sweeps.params.HyperParameter`),
    and each is checked against W&B's JSON schema by trying its parameter kinds one after
    another (`sweeps.config.fill_parameter`): 11 ms of a 100-300 ms bayes proposal for the
    seeds' 8 parameters, redone on every claim for a spec that never changes. The engine
    offers no way to pass parameters it has checked, so the function it calls is replaced
    by `_fill_parameter_once`, which calls it once per (name, config) and hands out copies
    of what it returned: the engine sees exactly what it would have computed.

    Bayes' test points and GP prediction and random search's draws are computed by the
    stand-ins of `sweeper.engine_speed` (same values, a fraction of the time).
    """
    import sweeps
    import sweeps.params

    from sweeper import engine_speed

    sweeps.params.fill_parameter = _fill_parameter_once
    engine_speed.install()
    return sweeps


def _fill_parameter_once(name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """`sweeps.config.fill_parameter`, computed once per (name, config) in this process.

    The key is the config as JSON, which the check reads back: a config that JSON does
    not carry exactly (a tuple, a non-string key, NaN) is checked every time instead.
    """
    if (key := _exact_json(config)) is None:
        return _fill_parameter(name, config)
    outcome = _filled(name, key)
    if isinstance(outcome, Exception):
        raise outcome.with_traceback(None)
    return copy.deepcopy(outcome)


def _exact_json(value: Any, sort_keys: bool = False) -> str | None:
    """`value` as JSON, the key of a memo that reads it back; None where JSON does not give
    back an equal value (a tuple, a non-string key, NaN), which is then computed every time.

    >>> _exact_json({"b": 1, "a": [2]}, sort_keys=True), _exact_json({"x": (1, 2)})
    ('{"a": [2], "b": 1}', None)
    """
    try:
        key = json.dumps(value, sort_keys=sort_keys)
    except (TypeError, ValueError):
        return None
    return key if json.loads(key) == value else None


@functools.cache
def _filled(name: str, config_json: str) -> tuple[str, dict[str, Any]] | Exception | None:
    """What `fill_parameter` returns or raises for a parameter: a group of parameters
    raises (ParamValidationError), bounds in the wrong order too (ValueError)."""
    from sweeps.config import ParamValidationError

    try:
        return _fill_parameter(name, json.loads(config_json))
    except (ParamValidationError, ValueError) as e:
        return e


def _fill_parameter(name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    import sweeps.config

    result: tuple[str, dict[str, Any]] | None = sweeps.config.fill_parameter(name, config)
    return result


def _proposal(engine_config: dict[str, Any], search_info: dict[str, Any] | None) -> Proposal:
    engine_config = plain(engine_config)
    flat = flatten_config(engine_config)
    return Proposal(
        config=flat,
        engine_config=engine_config,
        config_key=config_key(flat),
        search_info=plain(search_info) if search_info else None,
    )


def _exhausted(spec: SweepSpec, count: int) -> Exhausted:
    space = "grid" if spec.method == "grid" else "search space"
    return Exhausted(reason=f"{space} exhausted: all {count} configs ran")


def _call(spec: SweepSpec, call: Callable[[], _T]) -> _T:
    from jsonschema import ValidationError

    try:
        return call()
    except (*_ENGINE_ERRORS, ValidationError) as e:
        message = e.message if isinstance(e, ValidationError) else str(e)
        raise SpecError(spec.source, [f"the sweep engine cannot run this spec: {message}"]) from e


def stop_reason(spec: SweepSpec, runs: Sequence[EngineRun], run_id: str) -> str | None:
    """Why hyperband stops `run_id` now ("hyperband: below the 0.62 cut at epoch 3, band 2"),
    or None when it goes on or the spec has no `early_terminate`.

    Raises:
        SpecError: the engine cannot run this spec's early_terminate section.
    """
    if spec.early_terminate is None:
        return None
    sweeps = _sweeps()
    engine_runs = [to_sweep_run(r, spec) for r in runs]
    to_stop = _call(
        spec, lambda: sweeps.stop_runs(_engine_config(spec), engine_runs, validate=False)
    )
    for run in to_stop:
        if run.name == run_id:
            return _hyperband_reason(run, spec)
    return None


def _hyperband_reason(run: SweepRun, spec: SweepSpec) -> str:
    info = run.early_terminate_info or {}
    bands: list[int] = list(info.get("bands") or [])
    thresholds: list[float] = list(info.get("thresholds") or [])
    reached = len(run.metric_history(spec.metric_name, filter_invalid=True))
    passed = [i for i, band in enumerate(bands) if band <= reached]
    if not passed:
        return "hyperband: stopped by the sweep's early_terminate rule"
    index = passed[-1]
    # The engine minimises internally: a maximised metric's cuts come back negated.
    cut = float(-thresholds[index] if spec.metric_goal == "maximize" else thresholds[index])
    side = "below" if spec.metric_goal == "maximize" else "above"
    return f"hyperband: {side} the {cut:.4g} cut at epoch {bands[index]}, band {index + 1}"
