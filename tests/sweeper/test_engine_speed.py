"""The engine's faster internals give what W&B's own give, to the bit, for the same seeds."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sweeps
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern
from sweeps import bayes_search
from sweeps.random_search import random_search_next_runs

from sweeper import engine, engine_speed
from sweeper.models import RunState

from .conftest import SEEDS_PARAMETERS, MakeSpec

BOUNDS: dict[str, Callable[[np.random.Generator, int], list[list[Any]]]] = {
    "bayes' own, unit floats": lambda rng, d: [[0.0, 1.0]] * d,
    "floats": lambda rng, d: [sorted(rng.uniform(-3, 3, size=2).tolist()) for _ in range(d)],
    "ints": lambda rng, d: [
        [int(lo), int(lo + rng.integers(1, 50))] for lo in rng.integers(-9, 9, d)
    ],
    "ints and floats": lambda rng, d: [[0, 5], *[[0.0, 1.0]] * d],
    "none": lambda rng, d: [],
}


@pytest.mark.parametrize("bounds", BOUNDS)
@pytest.mark.parametrize("seed", range(30))
def test_random_sample_is_wandbs_for_the_same_seed(bounds: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X_bounds = BOUNDS[bounds](rng, int(rng.integers(1, 9)))
    rows = int(rng.choice([1, 2, 17, 1000]))
    np.random.seed(seed)
    ours = engine_speed.random_sample(X_bounds, rows)
    after = np.random.random_sample()
    np.random.seed(seed)
    theirs = engine_speed.WANDB_RANDOM_SAMPLE(X_bounds, rows)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
    # ...and the stream goes on where W&B's leaves it.
    assert np.random.random_sample() == after


def fitted(seed: int) -> tuple[GaussianProcessRegressor, np.ndarray]:
    """A GP fitted the way bayes search fits one, and test points, some on its training
    points (where the variance is rounding noise around 0, possibly negative)."""
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(2, 61)), int(rng.integers(1, 7))
    X = rng.uniform(size=(n, d))
    if seed % 3 == 0:  # repeated configs, as a discrete space gives
        X = X[rng.integers(0, max(1, n // 3), size=n)]
    y = rng.normal(size=n)
    gp = engine_speed.DiagonalGaussianProcess(
        kernel=Matern(nu=1.5), n_restarts_optimizer=2, alpha=1e-7, random_state=2
    ).fit(X, y)
    test = np.vstack([rng.uniform(size=(int(rng.choice([1, 999])), d)), X[: min(n, 5)]])
    return gp, test


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
def test_the_predicted_variances_are_wandbs_covariance_diagonal(seed: int) -> None:
    gp, test = fitted(seed)
    mean, cov = gp.predict(test, return_cov=True)
    theirs_mean, theirs_cov = GaussianProcessRegressor.predict(gp, test, return_cov=True)
    assert np.array_equal(mean, theirs_mean)
    # What bayes search reads of it: the standard deviations (NaN where rounding made the
    # variance negative, as in W&B's).
    assert np.array_equal(np.sqrt(np.diag(cov)), np.sqrt(np.diag(theirs_cov)), equal_nan=True)
    # Without return_cov it is scikit-learn's predict.
    assert np.array_equal(gp.predict(test), theirs_mean)
    std = gp.predict(test, return_std=True)[1]
    assert np.array_equal(std, GaussianProcessRegressor.predict(gp, test, return_std=True)[1])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
def test_variances_rounded_below_zero_stay_as_wandbs(seed: int) -> None:
    # An ill-conditioned fit (smooth kernel, no nugget) predicted at its training points.
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(30, 2))
    gp = engine_speed.DiagonalGaussianProcess(
        kernel=Matern(nu=1.5, length_scale=3.0), optimizer=None, alpha=1e-16
    ).fit(X, rng.normal(size=30))
    theirs = np.diag(GaussianProcessRegressor.predict(gp, X, return_cov=True)[1])
    ours = np.diag(gp.predict(X, return_cov=True)[1])
    assert (theirs < 0).any()
    assert np.array_equal(ours, theirs)


CONTINUOUS = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
    "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
}
SPACES: dict[str, dict[str, Any]] = {
    "head": SEEDS_PARAMETERS,
    "continuous": CONTINUOUS,
    "int_uniform": {"epochs": {"min": 1, "max": 20}, "batch": {"min": 8, "max": 128}},
    "mixed": {
        **CONTINUOUS,
        "epochs": {"distribution": "int_uniform", "min": 1, "max": 20},
        "batch_size": {"values": [32, 64, 128]},
        "mode": {"value": "head"},
    },
}


def history(spec: Any, size: int, seed: int) -> list[engine.EngineRun]:
    """`size` runs of the space drawn by W&B's random search, most finished with a metric,
    some failed, crashed or still running (the GP's fantasies)."""
    random.seed(seed)
    rng = np.random.default_rng(seed)
    config = {"method": "random", "parameters": spec.raw["parameters"]}
    states = [RunState.finished] * 6 + [RunState.failed, RunState.crashed, RunState.running]
    runs = []
    for i, draw in enumerate(random_search_next_runs(config, n=size)):
        config_ = engine.plain(draw.config)
        flat = {k: v["value"] for k, v in config_.items()}
        state = states[int(rng.integers(len(states)))] if i >= 2 else RunState.finished
        runs.append(
            engine.EngineRun(
                id=f"r{i}",
                state=state,
                engine_config=config_,
                config_key=engine.config_key(flat),
                history=[{"val_accuracy": float(v)} for v in rng.uniform(size=2)]
                if state != RunState.running or i % 2
                else [],
            )
        )
    return runs


CASES = [
    (space, size, goal, seed)
    for seed, (space, size, goal) in enumerate(
        (space, size, goal)
        for space in SPACES
        for size in (2, 7, 21, 60)
        for goal in ("maximize", "minimize")
    )
]


@pytest.mark.parametrize(("space", "size", "goal", "seed"), CASES)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_bayes_proposal_is_the_one_wandbs_own_engine_makes(
    make_spec: MakeSpec,
    use_wandb_engine: Callable[[], None],
    space: str,
    size: int,
    goal: str,
    seed: int,
) -> None:
    spec = make_spec(SPACES[space], method="bayes", goal=goal)
    runs = history(spec, size, seed)

    def proposed() -> engine.Proposal | engine.Exhausted:
        np.random.seed(seed)
        random.seed(seed)  # a repeat's unused config picked among equals
        return engine.propose(spec, runs)

    ours = proposed()
    assert sweeps.bayes_search.sklearn_gaussian is engine_speed.gaussian_process_namespace
    use_wandb_engine()
    assert proposed() == ours


SEARCHED: dict[str, dict[str, Any]] = {
    "constant": {"value": "head"},
    "categorical": {"values": [1, "b", 2.5, None]},
    "categorical with probabilities": {"values": [1, 2, 3], "probabilities": [0.2, 0.5, 0.3]},
    "int_uniform": {"min": -3, "max": 9},
    "uniform": {"min": -1.0, "max": 2.0},
    "q_uniform": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
    "q_uniform, int q": {"distribution": "q_uniform", "min": 0, "max": 100, "q": 5},
    "log_uniform": {"distribution": "log_uniform", "min": -9.0, "max": -1.0},
    "log_uniform_values": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
    "inv_log_uniform": {"distribution": "inv_log_uniform", "min": 0.0, "max": 3.0},
    "inv_log_uniform_values": {"distribution": "inv_log_uniform_values", "min": 1.0, "max": 9.0},
    "q_log_uniform": {"distribution": "q_log_uniform", "min": 0.0, "max": 5.0, "q": 2},
    "q_log_uniform_values": {
        "distribution": "q_log_uniform_values",
        "min": 1.0,
        "max": 1000.0,
        "q": 0.5,
    },
    "normal": {"distribution": "normal", "mu": 1.0, "sigma": 2.0},
    "q_normal": {"distribution": "q_normal", "mu": 0.0, "sigma": 3.0, "q": 1},
    "log_normal": {"distribution": "log_normal", "mu": 0.0, "sigma": 1.0},
    "q_log_normal": {"distribution": "q_log_normal", "mu": 2.0, "sigma": 1.0, "q": 0.5},
    "beta": {"distribution": "beta", "a": 2.0, "b": 5.0},
    "q_beta": {"distribution": "q_beta", "a": 2.0, "b": 5.0, "q": 0.05},
    "group": {"parameters": {"lr": {"min": 0.1, "max": 0.2}, "n": {"values": [1, 2]}}},
}


def typed(value: Any) -> Any:
    """A config with each value's type spelled out, so 1 and 1.0 or np.int64 compare unequal."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    return (type(value), value)


@pytest.mark.parametrize("searched", SEARCHED)
@pytest.mark.parametrize("n", [0, 1, 16, 64])
def test_random_search_draws_are_wandbs_for_the_same_seed(searched: str, n: int) -> None:
    config = {
        "method": "random",
        "parameters": {"x": SEARCHED[searched], "dropout": {"min": 0.0, "max": 0.5}},
    }
    random.seed(n)
    ours = engine_speed.random_search_next_runs(config, n=n)
    after = random.random()
    random.seed(n)
    theirs = engine_speed.WANDB_RANDOM_SEARCH(config, n=n)
    assert [typed(run.config) for run in ours] == [typed(run.config) for run in theirs]
    assert random.random() == after


def test_the_engine_runs_with_the_faster_internals(make_spec: MakeSpec) -> None:
    engine.propose(make_spec({"lr": {"min": 0.001, "max": 0.1}}, method="random"), [])
    assert bayes_search.random_sample is engine_speed.random_sample
    assert sweeps.random_search.random_search_next_runs is engine_speed.random_search_next_runs
