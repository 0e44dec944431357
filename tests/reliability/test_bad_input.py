"""Bad input: fuzzed sweep specs and messy datasets.

Specs: `sweeper validate` on mutated copies of the shipped specs and on random YAML text and
bytes never fails with anything but its one-paragraph error (exit 2), and every spec it
accepts is one the trainer can run: the engine proposes configs for it and each builds a
`TrainConfig`, as the worker builds it. Datasets: a run on a folder full of bad files trains
on the good ones and lists what it skipped and why; a class with no image fails the run with
a message naming it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sweeper import engine
from sweeper.backends.local import LocalBackend
from sweeper.cli import app
from sweeper.models import RunState
from sweeper.paths import Home
from sweeper.spec import SweepSpec, load_spec
from tests.reliability.reliability_kit import (
    MESSY_CLASSES,
    MESSY_CONVERTED,
    MESSY_GOOD_PER_CLASS,
    MESSY_SKIPPED,
    sweeper,
    write_messy_folder,
    write_spec,
)
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    path.name: yaml.safe_load(path.read_text()) for path in sorted((ROOT / "sweeps").glob("*.yaml"))
}
#: Proposals checked per accepted spec (each one told to the engine as a finished run).
PROPOSALS = 3
#: Names a mutation may use: spec keys, distribution keys and TrainConfig fields.
NAMES = sorted(
    {
        *TrainConfig.model_fields,
        "method", "metric", "name", "goal", "parameters", "run_cap", "early_terminate",
        "value", "values", "distribution", "min", "max", "mu", "sigma", "q", "probabilities",
        "type", "min_iter", "max_iter", "eta", "s", "description", "learning_rate",
    }
)  # fmt: skip
FIELDS = sorted(TrainConfig.model_fields)
#: Values that are valid somewhere in a spec or a TrainConfig, and their near misses.
PLAUSIBLE = [
    "resnet18", "cnn", "scratch", "head", "partial", "full", "none", "imagenet", "w.pt", "layer3",
    "grid", "bayes", "random", "uniform", "log_uniform_values", "int_uniform", "q_uniform",
    "categorical", "hyperband", "maximize", "val_loss", "sgd", "cosine", "1e-3", True,
    0, 1, 2, 3, -1, 16, 64, 1e-4, 1e-3, 0.2, 0.5, 0.99, 1.0, 2**40,
]  # fmt: skip
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(PLAUSIBLE)
)


def _field_pool(name: str) -> list[Any]:
    """Values a TrainConfig field accepts at the edges (its bounds, its choices, its default)
    and just past them, so the fuzzer hits the validator's boundaries often."""
    field = TrainConfig.model_fields[name]
    pool: list[Any] = [] if field.is_required() or field.default is None else [field.default]
    for arg in (field.annotation, *get_args(field.annotation)):
        if get_origin(arg) is Literal:
            pool += [*get_args(arg), f"{get_args(arg)[0]}x"]
    for constraint in field.metadata:
        for bound in ("ge", "gt", "le", "lt"):
            edge = getattr(constraint, bound, None)
            if edge is not None:
                pool += [edge, edge + 1, edge - 1, edge / 2, edge * 1.5]
    return pool or PLAUSIBLE


@st.composite
def parameters_for(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A W&B parameter for field `name`: a value, a list of values, or a distribution."""
    value = st.sampled_from(_field_pool(name))
    numbers = st.sampled_from(
        [v for v in _field_pool(name) if isinstance(v, int | float)] or [0, 1]
    )
    kind = draw(st.sampled_from(["value", "values", "distribution"]))
    if kind == "value":
        return {"value": draw(value)}
    if kind == "values":
        return {"values": draw(st.lists(value, min_size=1, max_size=3))}
    distribution = draw(
        st.sampled_from(["uniform", "log_uniform_values", "int_uniform", "q_uniform"])
    )
    return {"distribution": distribution, "min": draw(numbers), "max": draw(numbers)}


VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
#: Pieces of YAML syntax and spec vocabulary that random text is assembled from.
TOKENS = [
    "\n", "  ", "    ", ": ", ":", "- ", "-", "{", "}", "[", "]", ", ", "'", '"', "#", "|", ">",
    "&a ", "*a", "<<: *a", "---", "...", "~", "!!str ", "!!int ", "!!binary ", "%YAML 1.2\n",
    "!!python/object/apply:os.system ", "?", "\t", "\\u00e9", "method", "grid", "bayes",
    "metric", "name", "goal", "val_accuracy", "parameters", "lr", "values", "value",
    "distribution", "min", "max", "data_dir", "epochs", "1e-3", "0.1", "5", "-1", ".nan",
]  # fmt: skip
RANDOM_YAML = st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), max_size=40).map("".join)

runner = CliRunner()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a loaded YAML tree, the root's () first."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A shipped spec with 1-3 structural mutations (keys deleted, renamed or added, values
    replaced anywhere), or with 1-3 trainer parameters set to a random value, list or
    distribution and a random method: the mutations most likely to pass validation, so the
    "accepted means runnable" half of the property is exercised too."""
    spec = copy.deepcopy(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))])
    if draw(st.booleans()):
        spec["method"] = draw(st.sampled_from(["grid", "random", "bayes"]))
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.sampled_from(FIELDS))
            spec["parameters"][name] = draw(parameters_for(name))
        return spec
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(spec))[1:] or [("method",)]))
        parent: Any = spec
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        operation = draw(st.sampled_from(["delete", "replace", "rename", "add"]))
        if operation == "replace" or not isinstance(parent, dict | list):
            parent[key] = draw(VALUES)
        elif operation == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.append(draw(VALUES))
        elif operation == "rename":
            parent[draw(st.sampled_from(NAMES))] = parent.pop(key)
        else:
            parent[draw(st.sampled_from(NAMES))] = draw(VALUES)
    return spec


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow
@FUZZ
@given(spec=mutated_specs())
def test_validate_on_mutated_specs_rejects_cleanly_or_accepts_only_runnable_specs(
    tmp_path: Path, spec: dict[str, Any]
) -> None:
    _validate(tmp_path, yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))


@pytest.mark.slow
@FUZZ
@given(text=RANDOM_YAML)
# Found by this fuzzer: PyYAML raised IndexError/KeyError/ValueError out of `validate`.
@example(text="!!int ")
@example(text="!!bool")
@example(text="a: !!timestamp 2020-13-45")
def test_validate_on_random_yaml_text_rejects_cleanly(tmp_path: Path, text: str) -> None:
    _validate(tmp_path, text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200))
def test_validate_on_random_bytes_rejects_cleanly(tmp_path: Path, data: bytes) -> None:
    _validate(tmp_path, data)


def test_every_shipped_spec_is_accepted_and_runnable(tmp_path: Path) -> None:
    # The fuzzers mutate these; if they stopped validating, the mutations would prove little.
    for name, spec in SHIPPED.items():
        assert _validate(tmp_path, yaml.safe_dump(spec, sort_keys=False)) == 0, name


def test_yaml_tags_that_would_run_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"method: !!python/object/apply:os.system ['touch {marker}']\n"
    assert _validate(tmp_path, text) == 2
    assert not marker.exists()


def _validate(tmp_path: Path, content: str | bytes) -> int:
    """`sweeper validate` on `content`; the exit code, after checking nothing else escaped."""
    file = tmp_path / "fuzz.yaml"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content, encoding="utf-8", errors="surrogatepass")
    result = runner.invoke(app, ["validate", str(file)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{content!r}"
    )
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 0:
        _assert_trainer_can_run(load_spec(file))
    return result.exit_code


def _assert_trainer_can_run(spec: SweepSpec) -> None:
    """Configs the engine proposes for `spec` build a TrainConfig, as the worker builds it."""
    runs: list[engine.EngineRun] = []
    for index in range(PROPOSALS):
        outcome = engine.propose(spec, runs)
        if isinstance(outcome, engine.Exhausted):
            break
        TrainConfig(**{**outcome.config, "checkpoint_dir": "ckpt", "cache_dir": "cache"})
        runs.append(
            engine.EngineRun(
                id=f"run{index}",
                state=RunState.finished,
                engine_config=outcome.engine_config,
                config_key=outcome.config_key,
                metric=0.5 + index / 10,
            )
        )


# --- messy datasets --------------------------------------------------------------------------

TINY_CNN = {
    "model": "cnn",
    "mode": "scratch",
    "weights": "none",
    "image_size": 16,
    "batch_size": 4,
    "num_workers": 0,
    "filters": 4,
    "dense_units": 8,
    "epochs": 1,
}


@pytest.mark.slow
@pytest.mark.usefixtures("agent_env")
def test_messy_data_trains_on_the_good_images_and_an_empty_class_fails_clearly(
    messy_folder: Path, tmp_path: Path
) -> None:
    empty = write_messy_folder(tmp_path / "with-empty-class", empty_class="empty class ✓")
    parameters = {name: {"value": value} for name, value in TINY_CNN.items()}
    parameters["data_dir"] = {"values": [str(messy_folder), str(empty)]}
    spec = write_spec(tmp_path / "messy.yaml", parameters)
    assert sweeper("create", spec, "--backend", "local").returncode == 0
    agent = sweeper("agent", "--gpus", "none", "--heartbeat", "2")
    assert agent.returncode == 0, agent.stdout + agent.stderr
    assert "Traceback" not in agent.stdout + agent.stderr

    sweep = LocalBackend(Home()).list_sweeps()[0]
    runs = {
        Path(run.config["data_dir"]).name: run for run in LocalBackend(Home()).list_runs(sweep.id)
    }
    good, failed = runs[messy_folder.name], runs[empty.name]
    assert good.state == RunState.finished, good.reason
    assert good.summary["class_names"] == sorted(MESSY_CLASSES)
    skipped = {
        line.split(": ", 1)[0].rsplit("/", 1)[-1]: line for line in good.summary["skipped_files"]
    }
    assert set(skipped) == set(MESSY_SKIPPED)
    for name, word in MESSY_SKIPPED.items():
        assert word in skipped[name]
    assert not set(MESSY_CONVERTED) & set(skipped)  # grayscale, RGBA and 16-bit PNGs are converted
    log = Home().log_path(sweep.id, good.id).read_text()
    assert f"skipped {len(MESSY_SKIPPED)} file(s)" in log and "bomb.png: decompression bomb" in log
    # The test set (val/) is clean: every one of its images was evaluated.
    assert sum(sum(row) for row in good.summary["confusion_matrix"]) == 2 * MESSY_GOOD_PER_CLASS

    assert failed.state == RunState.failed
    assert failed.reason is not None and failed.reason.startswith("DataError")
    assert "empty class ✓" in failed.reason
    status = sweeper("status", "--json")
    assert status.returncode == 0 and "Traceback" not in status.stdout + status.stderr
    assert {run["reason"] for run in json.loads(status.stdout)["runs"]} == {None, failed.reason}
