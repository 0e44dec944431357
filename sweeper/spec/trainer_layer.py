"""The trainer layer: every parameter of a spec checked against the trainer's `TrainConfig`.

It runs on the leaves W&B's schema layer accepted (`sweeper.spec.schema.check`): every
name must be a TrainConfig field, every value a leaf can propose a valid value of that
field (strictly typed: PyYAML's `1e-3` is text), every required field given, and every
combination of the fields that rules between fields read (`trainer.config.CROSS_FIELDS`)
one the trainer can run. The metric must be one the trainer reports each epoch.

>>> from sweeper.spec.schema import check
>>> data = {"method": "random", "metric": {"name": "val_loss"},
...         "parameters": {"data_dir": {"value": "d"}, "lr": {"values": ["1e-3"]}}}
>>> trainer_problems(data, check(data))
["parameters.lr.values[0]: '1e-3' is not a valid lr: Input should be a valid number (PyYAML reads a number without a decimal point, such as 1e-3, as text: write 1.0e-3)"]
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError

from sweeper.errors import did_you_mean
from sweeper.spec.messages import describe, join, looks_numeric, or_list
from sweeper.spec.schema import DEFAULT_GOAL, LISTED, CheckedLeaf, SchemaCheck
from trainer.config import CROSS_FIELDS, PARAMETER_ALIASES, TrainConfig, cross_field_problems
from trainer.metrics import SWEEP_METRICS

#: Combinations of CROSS_FIELDS values checked per spec; beyond it only pairs are checked.
MAX_COMBINATIONS = 512

_MAX_REPORTED_COMBINATIONS = 5
#: A normal distribution proposes values within mu ± 3.29 sigma 99.9 % of the time.
_NORMAL_Z = 3.29


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


def trainer_problems(data: dict[str, Any], schema: SchemaCheck) -> list[str]:
    """The trainer layer over a spec mapping that W&B's schema layer checked into `schema`."""
    problems: list[str] = []
    metric = data.get("metric")
    if isinstance(metric, dict) and isinstance(metric.get("name"), str):
        problems += metric_problems(metric)
    if "parameters" not in data:
        return problems  # the schema layer reports it
    accepted = {checked.leaf.path: checked for checked in schema.checked}
    choices: dict[str, _Choices] = {}
    for leaf in schema.leaves:
        if leaf.name in choices:
            continue  # given twice: the schema layer reports it
        if leaf.name not in TrainConfig.model_fields:
            hint = (
                f' (did you mean "{PARAMETER_ALIASES[leaf.name]}"?)'
                if leaf.name in PARAMETER_ALIASES
                else did_you_mean(leaf.name, TrainConfig.model_fields)
            )
            problems.append(
                f"{leaf.path}: {leaf.name!r} is not a trainer setting{hint}; "
                "parameter names are TrainConfig fields (trainer/config.py)"
            )
        elif leaf.path in accepted:
            leaf_choices = _field_problems(accepted[leaf.path], problems)
            if leaf_choices is not None:
                choices[leaf.name] = leaf_choices
    given = {leaf.name for leaf in schema.leaves}
    if isinstance(data["parameters"], dict):
        problems += [
            f"parameters.{name}: missing; TrainConfig has no default for it, so the trainer cannot run "
            f"this spec: add `{name}: {{value: ...}}`"
            for name, field in TrainConfig.model_fields.items()
            if field.is_required() and name not in given
        ]
    if not problems and not schema.problems:
        problems += _combination_problems(choices)
    return problems


def metric_problems(metric: dict[str, Any]) -> list[str]:
    """The sweep metric must be an epoch metric the trainer reports, with the goal that fits it."""
    name = metric["name"]
    if name == "test_accuracy" or name.startswith("test_"):
        return [
            f"metric.name: {name!r} is measured once, after the last epoch, so it cannot drive a sweep; "
            f"use one of the epoch metrics {or_list(SWEEP_METRICS)}"
        ]
    if name not in SWEEP_METRICS:
        return [
            f"metric.name: {name!r} is not a metric the trainer reports{did_you_mean(name, SWEEP_METRICS)}; "
            f"expected {or_list(SWEEP_METRICS)}"
        ]
    goal = metric.get("goal", DEFAULT_GOAL)
    wanted = "maximize" if name.endswith("accuracy") else "minimize"
    if goal != wanted and goal in ("maximize", "minimize"):
        extreme = "lowest" if goal == "minimize" else "highest"
        given = "" if "goal" in metric else f" (W&B's default goal is {DEFAULT_GOAL})"
        return [
            f"metric.goal: {goal} would search for the {extreme} {name}{given}; use goal: {wanted}"
        ]
    return []


def _field_problems(checked: CheckedLeaf, problems: list[str]) -> _Choices | None:
    """Every value the leaf can propose must be a valid value of its TrainConfig field."""
    leaf, distribution, config = checked.leaf, checked.distribution, checked.filled
    ftype = _field_type(leaf.name)
    if distribution in LISTED:
        if distribution == "constant":
            listed = [(join(leaf.path, "value"), config["value"])]
        else:
            listed = [(join(leaf.path, "values", i), v) for i, v in enumerate(config["values"])]
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
    if ftype.number == "int" and not _proposes_integers(checked, distribution, problems):
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
                f"{join(leaf.path, key)}: {distribution} can propose {value:.6g}{where}, but {problem}"
            )
        else:
            valid.append(value)
    return _Choices(leaf.path, valid[:1], continuous=True) if valid else None


def _proposes_integers(checked: CheckedLeaf, distribution: str, problems: list[str]) -> bool:
    """An int field needs int_uniform or a q_ distribution with an integer q and integer bounds."""
    leaf = checked.leaf
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
            f"{join(leaf.path, 'q')}: {name} is an integer, so q must be an integer; found {found}"
        )
        return False
    ok = True
    if distribution in ("q_uniform", "q_log_uniform_values"):
        for key in ("min", "max"):
            if not isinstance(leaf.config[key], int):
                problems.append(
                    f"{join(leaf.path, key)}: {name} is an integer, so the bounds must be integers; "
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


@functools.cache
def _field_type(name: str) -> _FieldType:
    annotation = TrainConfig.model_fields[name].annotation
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return _FieldType(None, choices, f"one of {or_list(choices)}")
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
            return f"{describe(value)} is not a valid {name}: {reason}{_value_hint(value, ftype)}"
    return None


def _value_hint(value: Any, ftype: _FieldType) -> str:
    if isinstance(value, str) and ftype.choices:
        return did_you_mean(value, [c for c in ftype.choices if isinstance(c, str)])
    if isinstance(value, str) and ftype.number and looks_numeric(value):
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
