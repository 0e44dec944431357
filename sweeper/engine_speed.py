"""Faster stand-ins for three internals of wandb's sweep engine that compute the same values.

W&B's engine spends most of a bayes proposal on work whose result it throws away or could
get in one numpy call, and most of a random draw on one scipy call per parameter per run.
It offers no options for either, so `install` puts these stand-ins where its own code
looks them up, and only there (never into numpy, scipy or scikit-learn themselves):

- `random_sample`: bayes' 1000 test points, drawn by one numpy call instead of a Python
  loop of scalar draws, from the same global RandomState stream in the same order, so a
  seed gives the identical array.
- `gaussian_process`: bayes asks its Gaussian process for the n x n covariance of those
  test points and reads only its diagonal; `DiagonalGaussianProcess` computes the diagonal
  alone, with the same floating-point operations per entry.
- `random_search_next_runs`: random search with one `ppf` call per parameter on an array
  of draws, from the same Python `random` stream in the same order as W&B's loop.

Same GP, kernel, optimizer restarts and number of test points: W&B's search, faster.
tests/sweeper/test_engine_speed.py checks each against W&B's own over many seeds.
"""

from __future__ import annotations

import random
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import sweeps.bayes_search
import sweeps.random_search
from numpy.lib.stride_tricks import as_strided
from scipy.linalg import solve_triangular
from sklearn import gaussian_process
from sweeps.config.cfg import SweepConfig
from sweeps.params import HyperParameter, HyperParameterSet
from sweeps.run import SweepRun

#: W&B's own functions, as imported (`install` replaces them where the engine reads them).
WANDB_RANDOM_SAMPLE = sweeps.bayes_search.random_sample
WANDB_GAUSSIAN_PROCESS: ModuleType = sweeps.bayes_search.sklearn_gaussian
WANDB_RANDOM_SEARCH = sweeps.random_search.random_search_next_runs
#: (module, name, W&B's own object) for each name `install` sets.
WANDB_OWN: tuple[tuple[ModuleType, str, Any], ...] = (
    (sweeps.bayes_search, "random_sample", WANDB_RANDOM_SAMPLE),
    (sweeps.bayes_search, "sklearn_gaussian", WANDB_GAUSSIAN_PROCESS),
    (sweeps.random_search, "random_search_next_runs", WANDB_RANDOM_SEARCH),
)

#: Test points per block when taking the diagonal of V.T @ V (see `_diagonal_of_gram`).
_BLOCK = 64


def install() -> None:
    """Point wandb's engine at the stand-ins of this module (idempotent)."""
    sweeps.bayes_search.random_sample = random_sample
    sweeps.bayes_search.sklearn_gaussian = gaussian_process_namespace
    sweeps.random_search.random_search_next_runs = random_search_next_runs


def uninstall() -> None:
    """Give wandb's engine back its own functions (what bench/engine_speed.py compares)."""
    for module, name, own in WANDB_OWN:
        setattr(module, name, own)


def random_sample(X_bounds: Any, num_test_samples: int) -> np.ndarray:
    """`sweeps.bayes_search.random_sample` in one numpy call: the same array for the same
    seed of numpy's global RandomState.

    W&B's loop draws row by row, one scalar per column: `np.random.uniform()` scaled to the
    column's bounds, or `np.random.randint(lo, hi)` where the lower bound is a Python int.
    One call with `size=(rows, columns)` draws the same stream in the same (row-major)
    order, elementwise alike, when every column is of one kind; mixed columns interleave
    two kinds of draw, so W&B's own loop draws them.

    >>> import numpy as np
    >>> np.random.seed(0); ours = random_sample([[0.0, 1.0], [2.0, 4.0]], 3)
    >>> np.random.seed(0); bool((ours == WANDB_RANDOM_SAMPLE([[0.0, 1.0], [2.0, 4.0]], 3)).all())
    True
    """
    bounds = [(lo, hi) for lo, hi in X_bounds]
    shape = (int(num_test_samples), len(bounds))
    if not bounds:
        return np.empty(shape)
    if all(type(lo) is int and type(hi) is int for lo, hi in bounds):
        low, high = (np.array(side, dtype=np.int64) for side in zip(*bounds, strict=True))
        return np.random.randint(low, high, size=shape).astype(float)
    if all(isinstance(lo, float) and isinstance(hi, float) for lo, hi in bounds):
        low, high = (np.array(side, dtype=float) for side in zip(*bounds, strict=True))
        draws: np.ndarray = np.random.uniform(size=shape) * (high - low) + low
        return draws
    result: np.ndarray = WANDB_RANDOM_SAMPLE(X_bounds, num_test_samples)
    return result


class DiagonalGaussianProcess(gaussian_process.GaussianProcessRegressor):
    """scikit-learn's GP regressor whose `predict(X, return_cov=True)` computes only the
    diagonal of the covariance, the one part W&B's bayes search reads (`np.diag`).

    For 1000 test points the full covariance is a 1000 x 1000 kernel matrix and a product
    of the same size, most of a bayes proposal's time. The diagonal is computed with the
    operations scikit-learn's covariance path does per entry (the kernel's diagonal minus
    the diagonal of V.T @ V, no clipping of negative rounding), so it is the same to the
    bit wherever the BLAS computes an entry of a product alike whatever the product's
    shape: OpenBLAS, as numpy ships it, does (checked by the tests on every run). It is
    handed back as a read-only n x n view whose diagonal is the variances and whose rows
    all repeat them: nothing else of it is the covariance.
    """

    def predict(self, X: Any, return_std: bool = False, return_cov: bool = False) -> Any:
        """`GaussianProcessRegressor.predict`; with `return_cov`, the view described above."""
        if not return_cov or self.normalize_y:
            return super().predict(X, return_std=return_std, return_cov=return_cov)
        mean = super().predict(X)
        X = np.asarray(X, dtype=float)
        # scikit-learn's own steps: Algorithm 2.1 of Rasmussen & Williams, lines 5 and 6.
        V = solve_triangular(
            self.L_, self.kernel_(X, self.X_train_).T, lower=True, check_finite=False
        )
        variance = self.kernel_.diag(X) - _diagonal_of_gram(V)
        step = variance.strides[0]
        return mean, as_strided(
            variance, shape=(len(variance),) * 2, strides=(0, step), writeable=False
        )


def _diagonal_of_gram(V: np.ndarray) -> np.ndarray:
    """The diagonal of V.T @ V from products of blocks of V's columns: each entry is then
    summed by the same BLAS kernel in the same order as in the full product (a dot product
    or einsum sums in another order and may differ in the last bit), at a fraction of the cost.
    """
    parts = [V[:, i : i + _BLOCK] for i in range(0, V.shape[1], _BLOCK)]
    return np.concatenate([np.diag(part.T @ part) for part in parts])


#: What `sweeps.bayes_search` reads as `sklearn_gaussian`: scikit-learn's kernels, our GP.
gaussian_process_namespace = SimpleNamespace(
    GaussianProcessRegressor=DiagonalGaussianProcess, kernels=gaussian_process.kernels
)


def random_search_next_runs(
    sweep_config: Any, validate: bool = False, n: int = 1
) -> list[SweepRun]:
    """`sweeps.random_search.random_search_next_runs` with one `ppf` call per parameter.

    W&B's loop sets each parameter of each run to `ppf(random.uniform(0.0, 1.0))`, one
    draw per parameter in order (constants included); here the same draws are taken in
    the same order from Python's `random` and each parameter's `ppf` maps its column at
    once, so a seed of `random` gives the same configs.
    """
    if validate:
        sweep_config = SweepConfig(sweep_config)
    if sweep_config["method"] != "random":
        raise ValueError("Invalid sweep configuration for random_search_next_run.")
    params = HyperParameterSet.from_config(sweep_config["parameters"])
    draws = np.array([random.uniform(0.0, 1.0) for _ in range(n * len(params))])
    draws = draws.reshape(n, len(params))
    columns = [_ppf(param, draws[:, j]) for j, param in enumerate(params)]
    runs = []
    for i in range(n):
        for param, column in zip(params, columns, strict=True):
            param.value = column[i]
        runs.append(SweepRun(config=params.to_config()))
    return runs


def _ppf(param: HyperParameter, x: np.ndarray) -> list[Any]:
    """`param.ppf` of each draw in `x`, each value what `param.ppf(draw)` returns for it."""
    if param.type == HyperParameter.CONSTANT:
        return [param.ppf(0.0)] * len(x)
    if param.type == HyperParameter.CATEGORICAL_PROB:
        # W&B's ppf of an array compares the other way round from its ppf of a scalar
        # (`cdf >= p` against `x >= cdf`); sampling calls the scalar one.
        cdf = np.cumsum(param.config["probabilities"])
        return [param.config["values"][i] for i in np.argmin(x[:, None] >= cdf, axis=-1)]
    return list(param.ppf(x))
