"""Sweep specs: a W&B sweep YAML, loaded and validated before anything is stored.

Two layers of validation: (1) the W&B sweep-config schema shipped by wandb's
`sweeps` engine, (2) every parameter name and value against `trainer.TrainConfig`.
All problems are reported at once in one `SpecError`.

The YAML is read with PyYAML's safe loader, as `wandb sweep` reads it, except that a
key given twice in one mapping is an error instead of silently keeping the last.
`SweepSpec.raw` is the mapping exactly as loaded, so the engine sees what W&B would.

>>> spec = parse_spec('''
... method: grid
... metric: {name: val_accuracy, goal: maximize}
... parameters:
...   data_dir: {value: data/inaturalist_12K}
...   lr: {values: [0.001, 0.0001]}
... ''')
>>> spec.grid_size()
2
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import jsonschema
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sweeps.config import schema_violations_from_proposed_config
from sweeps.config.schema import (
    DefaultFiller,
    dereferenced_sweep_config_jsonschema,
    format_checker,
    sweep_config_jsonschema,
    validate_categorical_prob,
    validate_min_max,
    validator,
)

from sweeper.errors import SpecError, did_you_mean
from trainer.config import TrainConfig, cross_field_problems

#: Epoch metrics the trainer reports after every epoch: the only ones that can drive a sweep.
SWEEP_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
#: Methods sweeper runs with wandb's engine (`custom` needs a W&B scheduler).
METHODS = ("bayes", "random", "grid")
#: The TrainConfig fields that `trainer.config.cross_field_problems` reads.
CROSS_FIELDS = ("mode", "model", "weights", "unfreeze_from", "freeze_fraction")
#: Combinations of CROSS_FIELDS values checked per spec; beyond it only pairs are checked.
MAX_COMBINATIONS = 512

_MAX_BYTES = 1 << 20
_MAX_DEPTH = 40
_MAX_NODES = 50_000
_MAX_LISTED_VALUES = 10_000
_MAX_REPORTED_COMBINATIONS = 5
#: A normal distribution proposes values within mu ± 3.29 sigma 99.9 % of the time.
_NORMAL_Z = 3.29
#: Distributions that propose one of the listed values.
_LISTED = ("constant", "categorical", "categorical_w_probabilities")
#: Distributions grid search can enumerate (sweeps.grid_search refuses the others).
_GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
#: Names people bring from other sweep scripts (the seed projects among them).
_ALIASES = {
    "learning_rate": "lr",
    "batch": "batch_size",
    "num_epochs": "epochs",
    "optim": "optimizer",
    "base_model": "model",
    "architecture": "model",
    "pretrained": "weights",
    "strategy": "mode",
    "num_filters": "filters",
    "filter_size": "kernel_size",
    "filter_org": "filter_growth",
    "batch_normalization": "batch_norm",
    "data_augmentation": "augment",
    "augmentation": "augment",
    "dense_layer_size": "dense_units",
    "dropout_rate": "dropout",
}

_DEFINITIONS = dereferenced_sweep_config_jsonschema["definitions"]
_NAME_PATTERN = re.compile(_DEFINITIONS["parameters"]["propertyNames"]["pattern"])
_DEFAULT_GOAL: str = _DEFINITIONS["metric"]["properties"]["goal"]["default"]
_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
}
_TOP_LEVEL_WHAT = {
    "metric": "metric",
    "early_terminate": "a hyperband early_terminate",
    "controller": "controller",
    "scheduler": "scheduler",
}


class Parameter(BaseModel):
    """One trainer setting of a spec's `parameters`, as wandb's engine sees it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(
        description="The TrainConfig field (a nested group's label is not part of it)."
    )
    path: str = Field(description="Key path in the spec, e.g. 'parameters.lr'.")
    distribution: str = Field(
        description="W&B distribution: constant, categorical, int_uniform, uniform, ..."
    )
    config: dict[str, Any] = Field(
        description="The parameter's mapping with W&B's defaults filled in."
    )
    count: int | None = Field(
        None, description="Distinct values grid search enumerates; None when continuous."
    )
    values: list[Any] | None = Field(
        None, description="Those values, when there are at most 10,000."
    )


class SweepSpec(BaseModel):
    """A validated sweep spec. `raw` is the YAML mapping, unchanged, as W&B would get it."""

    model_config = ConfigDict(frozen=True)

    raw: dict[str, Any]
    source: str = Field(description="The file it came from, or '<string>'.")
    name: str | None = None
    method: Literal["bayes", "random", "grid"]
    metric_name: str
    metric_goal: Literal["maximize", "minimize"]
    run_cap: int | None = None
    early_terminate: dict[str, Any] | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="What W&B accepts but warns about (deprecated distributions).",
    )

    def parameter_space(self) -> dict[str, Parameter]:
        """Every trainer setting the spec gives, by TrainConfig field name, in spec order."""
        leaves = _walk(self.raw.get("parameters"), "parameters", [])
        space: dict[str, Parameter] = {}
        for leaf in leaves:
            variant = _leaf_variant(leaf)[0]
            if variant is None:
                raise SpecError(self.source, [f"{leaf.path}: not a valid W&B parameter"])
            filled = _fill(leaf, variant)
            distribution = variant.distribution
            count, values = _grid_values(distribution, filled)
            space[leaf.name] = Parameter(
                name=leaf.name,
                path=leaf.path,
                distribution=distribution,
                config=filled,
                count=count,
                values=values,
            )
        return space

    def grid_size(self) -> int | None:
        """Distinct configs when every parameter is discrete (as grid search counts them), else None.

        int_uniform and q_uniform count as discrete, the way wandb's grid search expands them.
        """
        size = 1
        for parameter in self.parameter_space().values():
            if parameter.count is None:
                return None
            size *= parameter.count
        return size


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file; raise `SpecError` listing every problem.

    Missing files, folders, binary or non-UTF-8 files and files over 1 MiB are SpecErrors too.
    """
    source = str(path)
    try:
        file = Path(path)
        if file.is_dir():
            raise SpecError(source, ["is a folder; expected a sweep YAML file"])
        with file.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(source, ["no such file"]) from None
    except PermissionError:
        raise SpecError(source, ["cannot be read: permission denied"]) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise SpecError(source, [f"cannot be read: {reason}"]) from None
    if len(data) > _MAX_BYTES:
        raise SpecError(
            source, [f"is larger than {_MAX_BYTES >> 20} MiB; a sweep spec is a small YAML file"]
        )
    if b"\x00" in data:
        raise SpecError(source, ["is a binary file; expected a sweep YAML text file"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(
            source,
            [
                f"is not UTF-8 text (undecodable byte at offset {e.start}); expected a sweep YAML file"
            ],
        ) from None
    return parse_spec(text, source)


def parse_spec(text: str, source: str = "<string>") -> SweepSpec:
    """Validate YAML text as a sweep spec; raise `SpecError` listing every problem."""
    data = _load_yaml(text, source)
    if data is None:
        raise SpecError(
            source, ["is empty; expected a W&B sweep spec (method, metric, parameters)"]
        )
    if not isinstance(data, dict):
        raise SpecError(
            source,
            [
                f"the top level is {_describe(data)}; expected a mapping with method, metric and parameters"
            ],
        )
    problems = _plain_data_problems(data)
    if problems:
        raise SpecError(source, problems)
    warnings: list[str] = []
    problems = _check(data, warnings)
    if problems:
        raise SpecError(source, problems)
    metric = data["metric"]
    return SweepSpec(
        raw=data,
        source=source,
        name=data.get("name"),
        method=data["method"],
        metric_name=metric["name"],
        metric_goal=metric.get("goal", _DEFAULT_GOAL),
        run_cap=data.get("run_cap"),
        early_terminate=data.get("early_terminate"),
        warnings=warnings,
    )


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn the engine's proposal ({"lr": {"value": 1e-3}, "group": {"value": {...}}})
    into the flat trainer config ({"lr": 1e-3, ...}); nested groups are flattened.

    A plain W&B run config ({"lr": 1e-3, "group": {...}}) flattens the same way; numpy
    scalars become Python numbers and W&B's own `_`-prefixed entries are dropped.

    >>> flatten_config({"lr": {"value": 0.1}, "opt": {"value": {"momentum": 0.9}}})
    {'lr': 0.1, 'momentum': 0.9}
    """
    flat: dict[str, Any] = {}
    for key, item in config.items():
        if str(key).startswith("_"):
            continue
        wrapped = isinstance(item, Mapping) and "value" in item and set(item) <= {"value", "desc"}
        _flatten_into(flat, str(key), item["value"] if wrapped else item)
    return flat


def _flatten_into(flat: dict[str, Any], key: str, value: Any) -> None:
    # No TrainConfig field holds a mapping, so a mapping is always a group of settings.
    if isinstance(value, Mapping):
        for inner_key, inner in value.items():
            _flatten_into(flat, str(inner_key), inner)
        return
    if key in flat:
        raise SpecError(
            "<run config>", [f"{key}: given twice in the run config, so it cannot be flattened"]
        )
    flat[key] = value.item() if isinstance(value, np.generic) else value


# --- YAML loading -------------------------------------------------------------------


class _DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping; `problem` is the sentence for the user."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's SafeLoader (libyaml's when installed), except that a repeated key is an error.

    Plain YAML keeps the last of two equal keys, so a pasted block could silently
    override a setting; the error names the key's path and both lines.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._paths = _node_paths(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` keys may legitimately be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # unhashable key: SafeLoader reports it below
                if first is not key_node:
                    path = _join(self._paths.get(id(node), ""), str(key))
                    mark = key_node.start_mark
                    raise _DuplicateKeyError(
                        f"{path} (line {mark.line + 1}, column {mark.column + 1}): the key {key!r} "
                        f"is given twice in one mapping (first at line {first.start_mark.line + 1}); "
                        "YAML would silently keep only the last, so remove one"
                    )
        return super().construct_mapping(node, deep=deep)


def _node_paths(root: yaml.Node) -> dict[int, str]:
    """Key path of every collection node, by id, so duplicate keys can be named."""
    paths: dict[int, str] = {}
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack and len(paths) < _MAX_NODES:
        node, path = stack.pop()
        if id(node) in paths:
            continue  # an alias: keep the first path
        if isinstance(node, yaml.MappingNode):
            paths[id(node)] = path
            for key_node, value_node in node.value:
                label = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((value_node, _join(path, label)))
        elif isinstance(node, yaml.SequenceNode):
            paths[id(node)] = path
            stack.extend((item, _join(path, i)) for i, item in enumerate(node.value))
    return paths


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except _DuplicateKeyError as e:
        raise SpecError(source, [e.problem]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(part for part in (e.context, e.problem) if part)
        raise SpecError(source, [f"{where}not valid YAML: {what}"]) from None
    except yaml.YAMLError as e:
        raise SpecError(source, [f"not valid YAML text: {' '.join(str(e).split())}"]) from None
    except RecursionError:
        raise SpecError(source, ["is nested too deeply to be a sweep spec"]) from None
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as e:
        # PyYAML's constructors raise these for an explicit tag whose text does not fit it
        # (`!!int abc`, `!!float`, `!!timestamp 2020-13-45`).
        raise SpecError(
            source,
            [f"not valid YAML: a value's explicit tag (like !!int) does not fit its text ({e})"],
        ) from None


class _TooLarge(Exception):
    """The loaded data nests too deeply or has too many values to be a spec."""


def _plain_data_problems(data: dict[str, Any]) -> list[str]:
    """Keys must be text and values plain JSON data: the store and W&B keep specs as JSON."""
    problems: list[str] = []
    try:
        _collect_plain_data_problems(data, "", 0, [0], problems)
    except _TooLarge as e:
        return [str(e)]
    return problems[:20]


def _collect_plain_data_problems(
    value: Any, path: str, depth: int, visited: list[int], problems: list[str]
) -> None:
    visited[0] += 1
    if depth > _MAX_DEPTH or visited[0] > _MAX_NODES:
        # An alias that refers to itself, or aliases that multiply, end up here too.
        top = re.split(r"[.\[]", path, maxsplit=1)[0] or "the spec"
        raise _TooLarge(f"{top}: nested too deeply or too large to be a sweep spec")
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                _collect_plain_data_problems(item, _join(path, key), depth + 1, visited, problems)
            else:
                problems.append(
                    f"{_join(path, str(key))}: the key {key!r} is a YAML {type(key).__name__}; "
                    "keys must be text (quote it)"
                )
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _collect_plain_data_problems(item, _join(path, i), depth + 1, visited, problems)
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path}: {value} is not a finite number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        problems.append(
            f"{path}: {value!r} is a YAML {type(value).__name__}, not plain data "
            "(text, number, true/false, null, list or mapping); quote it if it is text"
        )


# --- Validation ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    """A parameter that is a trainer setting (not a group of nested parameters)."""

    name: str
    path: str
    config: dict[str, Any]


@dataclass(frozen=True)
class _Choices:
    """What a valid leaf can hand the trainer, for the cross-field check."""

    path: str
    values: list[Any]
    continuous: bool


@dataclass(frozen=True)
class _FieldType:
    """A TrainConfig field as the validator needs it."""

    number: Literal["int", "float"] | None
    choices: tuple[Any, ...] | None
    label: str


def _check(data: dict[str, Any], warnings: list[str]) -> list[str]:
    problems = _top_level_problems(data)
    if "parameters" not in data:
        problems.append(
            "parameters: missing; a spec gives the trainer's settings here (data_dir at least)"
        )
        return problems
    before = len(problems)
    leaves = _walk(data["parameters"], "parameters", problems)
    well_formed = len(problems) == before
    choices: dict[str, _Choices] = {}
    seen: dict[str, str] = {}
    for leaf in leaves:
        if leaf.name in seen:
            problems.append(
                f"{leaf.path}: {leaf.name} is already given at {seen[leaf.name]}; a trainer setting appears once"
            )
            continue
        seen[leaf.name] = leaf.path
        leaf_choices = _leaf_problems(leaf, data.get("method"), problems, warnings)
        if leaf_choices is not None:
            choices[leaf.name] = leaf_choices
    for name, field in TrainConfig.model_fields.items():
        if field.is_required() and name not in seen and isinstance(data["parameters"], dict):
            problems.append(
                f"parameters.{name}: missing; TrainConfig has no default for it, so the trainer cannot run "
                f"this spec: add `{name}: {{value: ...}}`"
            )
    if (
        data.get("method") == "bayes"
        and well_formed
        and all(_is_single(leaf.config) for leaf in leaves)
    ):
        problems.append(
            "method: bayes needs at least one parameter that varies, but every parameter has one value"
        )
    if not problems:
        problems += _combination_problems(choices)
    if not problems:
        problems += _engine_schema_problems(data)
    return problems


def _top_level_problems(data: dict[str, Any]) -> list[str]:
    """Layer 1 outside `parameters`: the W&B schema, then what sweeper needs on top."""
    problems: list[str] = []
    # `parameters` is walked leaf by leaf instead: the schema's anyOf errors name no key.
    outside = {key: value for key, value in data.items() if key != "parameters"}
    for error in validator.iter_errors(outside):
        problems += _top_level_messages(error)
    run_cap = data.get("run_cap")
    if isinstance(run_cap, float):  # JSON schema's "integer" accepts 5.0
        problems.append(f"run_cap: expected an integer, found {run_cap!r}")
    method = data.get("method")
    if method == "custom" or "scheduler" in data:
        problems.append(f"method: custom schedulers run only on W&B; sweeper runs {_or(METHODS)}")
    if "metrics" in data:
        problems.append(
            "metrics: multi-objective sweeps need a W&B custom scheduler; give one `metric`"
        )
    metric = data.get("metric")
    if "metric" not in data and "metrics" not in data:
        problems.append(
            "metric: missing; sweeper needs it to pick the best run "
            "(for example `metric: {name: val_accuracy, goal: maximize}`)"
        )
    elif isinstance(metric, dict) and isinstance(metric.get("name"), str):
        problems += _metric_problems(metric)
    return problems


def _top_level_messages(error: jsonschema.ValidationError) -> list[str]:
    path = _join("", *error.absolute_path)
    if (
        path == "early_terminate"
        and error.validator == "oneOf"
        and isinstance(error.instance, dict)
    ):
        hyperband = jsonschema.Draft7Validator(
            _DEFINITIONS["hyperband_stopping"], format_checker=format_checker
        )
        messages: list[str] = []
        for inner in hyperband.iter_errors(error.instance):
            if inner.validator == "anyOf":
                messages.append("early_terminate: hyperband needs min_iter, or both max_iter and s")
            else:
                messages += _schema_messages(
                    [inner], "early_terminate", "a hyperband early_terminate"
                )
        return messages
    if not error.absolute_path and error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        messages = []
        for key in error.instance:
            if key in allowed:
                continue
            if key in TrainConfig.model_fields:
                messages.append(
                    f"{key}: W&B rejects unknown top-level keys; trainer settings go under parameters "
                    f"as `{key}: {{value: ...}}`"
                )
            else:
                messages.append(
                    f"{key}: not a W&B sweep key{did_you_mean(key, allowed)}; expected {_or(allowed)}"
                )
        return messages
    first = str(error.absolute_path[0]) if error.absolute_path else ""
    return _schema_messages([error], "", _TOP_LEVEL_WHAT.get(first, "a W&B sweep spec"))


def _metric_problems(metric: dict[str, Any]) -> list[str]:
    name = metric["name"]
    if name == "test_accuracy" or name.startswith("test_"):
        return [
            f"metric.name: {name!r} is measured once, after the last epoch, so it cannot drive a sweep; "
            f"use one of the epoch metrics {_or(SWEEP_METRICS)}"
        ]
    if name not in SWEEP_METRICS:
        return [
            f"metric.name: {name!r} is not a metric the trainer reports{did_you_mean(name, SWEEP_METRICS)}; "
            f"expected {_or(SWEEP_METRICS)}"
        ]
    goal = metric.get("goal", _DEFAULT_GOAL)
    wanted = "maximize" if name.endswith("accuracy") else "minimize"
    if goal != wanted and goal in ("maximize", "minimize"):
        extreme = "lowest" if goal == "minimize" else "highest"
        given = "" if "goal" in metric else f" (W&B's default goal is {_DEFAULT_GOAL})"
        return [
            f"metric.goal: {goal} would search for the {extreme} {name}{given}; use goal: {wanted}"
        ]
    return []


def _walk(params: Any, path: str, problems: list[str]) -> list[_Leaf]:
    """Leaves of a `parameters` mapping, nested groups flattened; structural problems appended."""
    if not isinstance(params, dict):
        problems.append(
            f"{path}: expected a mapping of parameter names to settings, found {_describe(params)}"
        )
        return []
    if not params:
        problems.append(f"{path}: is empty; give at least one parameter")
        return []
    leaves: list[_Leaf] = []
    for key, item in params.items():
        item_path = _join(path, key)
        if not isinstance(item, dict):
            problems.append(
                f"{item_path}: expected a mapping such as {{value: ...}}, {{values: [...]}} or a distribution, "
                f"found {_describe(item)}"
            )
        elif "parameters" in item:
            if not _NAME_PATTERN.match(key):
                problems.append(
                    f"{item_path}: {key!r} is not a W&B parameter name (letters, digits, _ . -)"
                )
            problems += [
                f"{_join(item_path, extra)}: a group of nested parameters holds only `parameters`"
                for extra in item
                if extra != "parameters"
            ]
            leaves += _walk(item["parameters"], _join(item_path, "parameters"), problems)
        else:
            leaves.append(_Leaf(key, item_path, item))
    return leaves


def _leaf_problems(
    leaf: _Leaf, method: Any, problems: list[str], warnings: list[str]
) -> _Choices | None:
    """Check one leaf against the W&B schema and its TrainConfig field; return its valid choices."""
    field = TrainConfig.model_fields.get(leaf.name)
    if field is None:
        hint = f' (did you mean "{_ALIASES[leaf.name]}"?)' if leaf.name in _ALIASES else ""
        hint = hint or did_you_mean(leaf.name, TrainConfig.model_fields)
        problems.append(
            f"{leaf.path}: {leaf.name!r} is not a trainer setting{hint}; "
            "parameter names are TrainConfig fields (trainer/config.py)"
        )
    variant, schema_problems = _leaf_variant(leaf)
    if variant is None:
        problems += schema_problems
        return None
    try:
        filled = _fill(leaf, variant)
    except ValueError:
        low, high = leaf.config["min"], leaf.config["max"]
        problems.append(f"{_join(leaf.path, 'min')}: min {low!r} must be less than max {high!r}")
        return None
    try:
        validate_categorical_prob(leaf.name, filled)
    except ValueError as e:
        problems.append(f"{_join(leaf.path, 'probabilities')}: {_drop_name(leaf.name, str(e))}")
    deprecated = _deprecations().get(variant.definition)
    if deprecated:
        warnings.append(f"{leaf.path}: {deprecated}")
    if method == "grid" and variant.distribution not in _GRID_DISTRIBUTIONS:
        problems.append(
            f"{leaf.path}: grid search enumerates value, values, int_uniform and q_uniform only, "
            f"not {variant.distribution}; use method random or bayes, or list the values"
        )
    if field is None:
        return None
    return _field_problems(leaf, variant.distribution, filled, _field_type(leaf.name), problems)


@dataclass(frozen=True)
class _Variant:
    """One leaf schema of the W&B sweep schema (param_uniform has several)."""

    definition: str  # the schema definition, as sweeps names parameter types: "param_uniform"
    distribution: str
    required: frozenset[str]
    validator: jsonschema.Draft7Validator
    filler: jsonschema.Draft7Validator  # sets the schema's defaults while validating


@functools.cache
def _variants() -> list[_Variant]:
    """Every leaf schema of the W&B schema, in the schema's order (the order sweeps tries them)."""
    variants = []
    for reference in sweep_config_jsonschema["definitions"]["parameter"]["anyOf"]:
        definition = reference["$ref"].rsplit("/", 1)[-1]
        schema = _DEFINITIONS[definition]
        for variant in schema.get("anyOf", [schema]):
            if "parameters" in variant.get("properties", {}):
                continue  # nested groups are walked, not validated as leaves
            variants.append(
                _Variant(
                    definition=definition,
                    distribution=variant["properties"]["distribution"]["enum"][0],
                    required=frozenset(variant.get("required", ())),
                    validator=jsonschema.Draft7Validator(variant, format_checker=format_checker),
                    filler=DefaultFiller(variant, format_checker=format_checker),
                )
            )
    return variants


def _leaf_variant(leaf: _Leaf) -> tuple[_Variant | None, list[str]]:
    """The schema variant a leaf matches, as sweeps' fill_parameter would pick it.

    When none matches, the problems are those of the closest variant (fewest errors).
    """
    if "distribution" in leaf.config:
        given = leaf.config["distribution"]
        candidates = [v for v in _variants() if v.distribution == given]
        if not candidates:
            names = sorted({v.distribution for v in _variants()})
            hint = did_you_mean(given, names) if isinstance(given, str) else ""
            return None, [
                f"{_join(leaf.path, 'distribution')}: {_describe(given)} is not a W&B distribution"
                f"{hint}; expected {_or(names)}"
            ]
    else:
        candidates = [v for v in _variants() if "distribution" not in v.required]
    # Variants whose required keys are all present first: usually the first one tried matches.
    candidates.sort(key=lambda v: not v.required <= leaf.config.keys())
    closest: tuple[_Variant, list[jsonschema.ValidationError]] | None = None
    for variant in candidates:
        errors = list(variant.validator.iter_errors(leaf.config))
        if not errors:
            return variant, []
        if closest is None or len(errors) < len(closest[1]):
            closest = (variant, errors)
    assert closest is not None  # every distribution has a variant
    what = f"a {closest[0].distribution} parameter"
    return None, _schema_messages(closest[1], leaf.path, what)


def _fill(leaf: _Leaf, variant: _Variant) -> dict[str, Any]:
    """The leaf with the schema's defaults filled in (distribution, q, mu, sigma), as sweeps fills it.

    Raises ValueError when min is not less than max (sweeps' own check).
    """
    filled = copy.deepcopy(leaf.config)
    variant.filler.validate(filled)
    validate_min_max(leaf.name, filled)
    return filled


@functools.cache
def _deprecations() -> dict[str, str]:
    """Parameter types W&B warns about (log_uniform and kin take exponents), with the warning."""
    from sweeps.params import PARAM_DEPRECATION_MAP  # imports scipy: keep it off import time

    return dict(PARAM_DEPRECATION_MAP)


def _field_problems(
    leaf: _Leaf, distribution: str, config: dict[str, Any], ftype: _FieldType, problems: list[str]
) -> _Choices | None:
    """Layer 2: every value the leaf can propose must be a valid value of its TrainConfig field."""
    if distribution in _LISTED:
        if distribution == "constant":
            listed = [(_join(leaf.path, "value"), config["value"])]
        else:
            listed = [(_join(leaf.path, "values", i), v) for i, v in enumerate(config["values"])]
        valid = []
        for path, value in listed:
            problem = _value_problem(leaf.name, value, ftype)
            if problem:
                problems.append(f"{path}: {problem}")
            else:
                valid.append(value)
        return _Choices(leaf.path, valid, continuous=False) if valid else None
    if ftype.number is None:
        problems.append(
            f"{leaf.path}: {distribution} draws numbers, but {leaf.name} takes {ftype.label}; "
            "use value or values"
        )
        return None
    if ftype.number == "int" and not _proposes_integers(leaf, distribution, problems):
        return None
    valid = []
    for key, value in _endpoints(distribution, config):
        problem = _value_problem(leaf.name, value, ftype)
        if problem:
            where = (
                f" (99.9 % of its draws lie within mu ± {_NORMAL_Z} sigma)"
                if key == "sigma"
                else ""
            )
            problems.append(
                f"{_join(leaf.path, key)}: {distribution} can propose {value:.6g}{where}, but {problem}"
            )
        else:
            valid.append(value)
    return _Choices(leaf.path, valid[:1], continuous=True) if valid else None


def _proposes_integers(leaf: _Leaf, distribution: str, problems: list[str]) -> bool:
    """An int field needs int_uniform or a q_ distribution with an integer q and integer bounds."""
    name = leaf.name
    if distribution == "int_uniform":
        return True
    if not distribution.startswith("q_"):
        problems.append(
            f"{leaf.path}: {distribution} draws real numbers, but {name} is an integer; "
            "use int_uniform, values, or a q_ distribution with an integer q"
        )
        return False
    q = leaf.config.get("q")
    if not isinstance(q, int) or isinstance(q, bool):
        found = "missing (the default q is 1.0, a float)" if q is None else f"{q!r}"
        problems.append(
            f"{_join(leaf.path, 'q')}: {name} is an integer, so q must be an integer; found {found}"
        )
        return False
    ok = True
    if distribution in ("q_uniform", "q_log_uniform_values"):
        for key in ("min", "max"):
            if not isinstance(leaf.config[key], int):
                problems.append(
                    f"{_join(leaf.path, key)}: {name} is an integer, so the bounds must be integers; "
                    f"found {leaf.config[key]!r}"
                )
                ok = False
    return ok


def _endpoints(distribution: str, c: dict[str, Any]) -> list[tuple[str, Any]]:
    """The extreme values a distribution proposes, each with the key that sets it.

    Normal and log-normal distributions are unbounded: their central 99.9 % is checked.
    """
    q = c.get("q", 1)

    def quantized(x: float) -> float:
        # What the engine does: np.round(x / q) * q, integers when q is an integer.
        return round(x / q) * q if math.isfinite(x) else x

    low_key, high_key = "min", "max"
    if distribution in ("int_uniform", "uniform", "log_uniform_values", "inv_log_uniform_values"):
        low, high = c["min"], c["max"]
    elif distribution == "q_uniform":
        # Grid search walks np.arange(min, max, q); the other methods round a uniform draw.
        grid_last = c["min"] + (math.ceil((c["max"] - c["min"]) / q) - 1) * q
        return [
            ("min", min(c["min"], quantized(c["min"]))),
            ("max", max(quantized(c["max"]), grid_last)),
        ]
    elif distribution == "q_log_uniform_values":
        low, high = quantized(c["min"]), quantized(c["max"])
    elif distribution in ("log_uniform", "q_log_uniform"):
        low, high = _exp(c["min"]), _exp(c["max"])
    elif distribution == "inv_log_uniform":
        low, high, low_key, high_key = _exp(-c["max"]), _exp(-c["min"]), "max", "min"
    elif distribution in ("normal", "q_normal"):
        low, high = c["mu"] - _NORMAL_Z * c["sigma"], c["mu"] + _NORMAL_Z * c["sigma"]
        low_key = high_key = "sigma"
    elif distribution in ("log_normal", "q_log_normal"):
        low, high = _exp(c["mu"] - _NORMAL_Z * c["sigma"]), _exp(c["mu"] + _NORMAL_Z * c["sigma"])
        low_key = high_key = "sigma"
    else:  # beta, q_beta: values in [0, 1]
        low, high = 0.0, 1.0
        low_key = high_key = "distribution"
    if distribution.startswith("q_") and distribution != "q_log_uniform_values":
        low, high = quantized(low), quantized(high)
    return [(low_key, low), (high_key, high)]


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _grid_values(distribution: str, c: dict[str, Any]) -> tuple[int | None, list[Any] | None]:
    """How many distinct values grid search enumerates, and those values when few enough."""
    from sweeps.grid_search import yaml_hash  # imports scipy: only when a store asks

    if distribution in _LISTED:
        listed = [c["value"]] if distribution == "constant" else c["values"]
        distinct = list({yaml_hash(value): value for value in listed}.values())
        return len(distinct), distinct
    if distribution == "int_uniform":
        count = c["max"] - c["min"] + 1
        return count, list(range(c["min"], c["max"] + 1)) if count <= _MAX_LISTED_VALUES else None
    if distribution == "q_uniform":
        count = math.ceil((c["max"] - c["min"]) / c["q"])
        if count > _MAX_LISTED_VALUES:
            return count, None
        values = np.arange(c["min"], c["max"], c["q"]).tolist()
        return len(values), values
    return None, None


@functools.cache
def _field_type(name: str) -> _FieldType:
    annotation = TrainConfig.model_fields[name].annotation
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return _FieldType(None, choices, f"one of {_or(choices)}")
    if annotation is bool:
        return _FieldType(None, None, "true or false")
    if annotation is int:
        return _FieldType("int", None, "an integer")
    if annotation is float:
        return _FieldType("float", None, "a number")
    return _FieldType(None, None, "text")


def _value_problem(name: str, value: Any, ftype: _FieldType) -> str | None:
    """Why `value` is not a valid `name` on its own (strictly typed), or None.

    Rules between fields are left to the per-combination check.
    """
    try:
        TrainConfig.model_validate({"data_dir": ".", name: value}, strict=True)
    except ValidationError as e:
        errors = [err for err in e.errors() if err["loc"][:1] == (name,)]
        if errors:
            reason = errors[0]["msg"].removeprefix("Value error, ")
            return f"{_describe(value)} is not a valid {name}: {reason}{_value_hint(value, ftype)}"
    return None


def _value_hint(value: Any, ftype: _FieldType) -> str:
    if isinstance(value, str) and ftype.choices:
        return did_you_mean(value, [c for c in ftype.choices if isinstance(c, str)])
    if isinstance(value, str) and ftype.number and _looks_numeric(value):
        return (
            " (PyYAML reads a number without a decimal point, such as 1e-3, as text: write 1.0e-3)"
        )
    if isinstance(value, float) and ftype.number == "int" and value.is_integer():
        return f" (write {int(value)})"
    if isinstance(value, str) and ftype.label == "true or false":
        return " (write true or false without quotes)"
    return ""


def _combination_problems(choices: dict[str, _Choices]) -> list[str]:
    """Apply `cross_field_problems` to every combination of the CROSS_FIELDS values the spec allows.

    Each other field is held at one valid value. Up to MAX_COMBINATIONS combinations are
    built; a larger product is checked pair by pair (every rule today involves two fields).
    """
    base = {name: choice.values[0] for name, choice in choices.items()}
    involved = [name for name in CROSS_FIELDS if name in choices]
    failures: dict[str, list[dict[str, Any]]] = {}
    for combination in _combinations(involved, choices):
        config = TrainConfig.model_construct(**{**base, **combination})
        for problem in cross_field_problems(config):
            failures.setdefault(problem, []).append(combination)
    problems = []
    for problem, combinations in list(failures.items())[:_MAX_REPORTED_COMBINATIONS]:
        shown = ", ".join(
            f"{choices[name].path}=" + ("<a number>" if choices[name].continuous else repr(value))
            for name, value in combinations[0].items()
        )
        more = (
            f" ({len(combinations) - 1} more combinations fail the same way)"
            if len(combinations) > 1
            else ""
        )
        problems.append(
            f"{shown or 'parameters'}: the trainer cannot run this combination: {problem}{more}"
        )
    if len(failures) > _MAX_REPORTED_COMBINATIONS:
        problems.append(
            f"parameters: {len(failures) - _MAX_REPORTED_COMBINATIONS} more cross-field problems"
        )
    return problems


def _combinations(
    involved: Sequence[str], choices: dict[str, _Choices]
) -> Iterator[dict[str, Any]]:
    values = [choices[name].values for name in involved]
    if math.prod(len(v) for v in values) <= MAX_COMBINATIONS:
        for combination in itertools.product(*values):
            yield dict(zip(involved, combination, strict=True))
        return
    built = 0
    for (i, first), (j, second) in itertools.combinations(enumerate(involved), 2):
        for a, b in itertools.product(values[i], values[j]):
            if built == MAX_COMBINATIONS:
                return
            built += 1
            yield {first: a, second: b}


def _engine_schema_problems(data: dict[str, Any]) -> list[str]:
    """The sweeps package's own verdict, last: whatever this module's checks missed."""
    try:
        violations = schema_violations_from_proposed_config(data)
    except (ValueError, TypeError, KeyError, jsonschema.ValidationError) as e:
        return [f"W&B's sweep schema rejects the spec: {e}"]
    deprecations = tuple(_deprecations().values())
    return [f"W&B's sweep schema: {v}" for v in violations if not v.endswith(deprecations)]


# --- Message helpers ----------------------------------------------------------------


def _schema_messages(
    errors: Sequence[jsonschema.ValidationError], base: str, what: str
) -> list[str]:
    """One sentence per jsonschema error, naming the key path."""
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    messages: list[str] = []
    for error in errors:
        if error.validator == "format" and tuple(error.absolute_path) in typed:
            continue
        messages += _schema_message(error, _join(base, *error.absolute_path), what)
    return list(dict.fromkeys(messages))


def _schema_message(error: jsonschema.ValidationError, path: str, what: str) -> list[str]:
    kind, expected, found = error.validator, error.validator_value, error.instance
    if kind == "required" and isinstance(found, dict):
        return [
            f"{_join(path, key)}: missing; {what} needs {_and(expected)}"
            for key in expected
            if key not in found
        ]
    if kind == "additionalProperties" and isinstance(found, dict):
        allowed = sorted(error.schema.get("properties", {}))
        return [
            f"{_join(path, key)}: unexpected key{did_you_mean(key, allowed)}; {what} takes {_and(allowed)}"
            for key in found
            if key not in allowed
        ]
    if kind == "enum":
        hint = (
            did_you_mean(found, [e for e in expected if isinstance(e, str)])
            if isinstance(found, str)
            else ""
        )
        return [f"{path}: {_describe(found)} is not allowed{hint}; expected {_or(expected)}"]
    if kind == "type":
        wanted = _TYPE_WORDS.get(str(expected), str(expected))
        hint = (
            " (PyYAML reads 1e-3 without a decimal point as text: write 1.0e-3)"
            if _looks_numeric(found)
            else ""
        )
        return [f"{path}: expected {wanted}, found {_describe(found)}{hint}"]
    if kind == "format":
        wanted = "an integer" if expected == "integer" else "a number with a decimal point"
        return [f"{path}: expected {wanted}, found {_describe(found)}"]
    if kind in ("minItems", "minProperties"):
        return [f"{path}: is empty; give at least one"]
    if kind in ("minimum", "exclusiveMinimum"):
        sign = ">" if kind == "exclusiveMinimum" else ">="
        return [f"{path}: {_describe(found)} is out of range; expected a number {sign} {expected}"]
    return [f"{path}: {error.message}"]


def _join(base: str, *parts: str | int) -> str:
    path = base
    for part in parts:
        path = (
            f"{path}[{part}]"
            if isinstance(part, int)
            else (f"{path}.{part}" if path else str(part))
        )
    return path


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float | str):
        return repr(value)
    return f"a {type(value).__name__}"


def _looks_numeric(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_single(config: dict[str, Any]) -> bool:
    return "value" in config and config.get("distribution", "constant") == "constant"


def _drop_name(name: str, message: str) -> str:
    for prefix in (f"Parameter {name}: ", f"{name}: ", f"{name} "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _or(items: Sequence[Any]) -> str:
    shown = [repr(i) if isinstance(i, str) else str(i) for i in items]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _and(items: Sequence[Any]) -> str:
    shown = [str(i) for i in items]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
