"""W&B's schema layer: a spec checked against W&B's own sweep-config JSON schema, alone.

The schema is the file that wandb's `sweeps` package ships (`sweeps/config/schema.json`),
read from the package's folder without importing the package: `import sweeps` imports
the whole engine and scipy with it (1.4 s), which `sweeper validate` does not need.
What the schema cannot express is checked in code right after it, as the engine does
(min < max, probabilities that sum to 1, grid search's distributions, bayes needing
something to vary).

A valid spec is checked without importing jsonschema (a fifth of `sweeper validate`'s
start-up): `draft7` gives the verdict over W&B's same file, and jsonschema is imported only
for a document that fails, to word each problem (`errors`).

This layer knows nothing of the trainer: `wandb_problems` validates any W&B sweep spec,
whatever its parameters mean (a program sweep's are the user's own). The trainer layer
(`sweeper.spec.trainer_layer`) checks the leaves this layer accepts.

>>> problems, warnings = wandb_problems({
...     "method": "grid", "metric": {"name": "loss"},
...     "parameters": {"lr": {"values": [0.1, 0.01]}, "opt": {"distribution": "uniform", "min": 0, "max": 1}},
... })
>>> problems
['parameters.opt: grid search enumerates value, values, int_uniform and q_uniform only, not uniform; use method random or bayes, or list the values']
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import math
import numbers
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import did_you_mean
from sweeper.spec import draft7
from sweeper.spec.messages import describe, join, or_list, schema_messages
from sweeper.spec.swept import swept_parameters

if TYPE_CHECKING:
    import jsonschema

#: Methods sweeper runs with wandb's engine (`custom` needs a W&B scheduler).
METHODS = ("bayes", "random", "grid")
#: Distributions that propose one of the listed values.
LISTED = ("constant", "categorical", "categorical_w_probabilities")
#: Distributions grid search can enumerate (sweeps.grid_search refuses the others).
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")

_MAX_LISTED_VALUES = 10_000
_TOP_LEVEL_WHAT = {
    "metric": "metric",
    "early_terminate": "a hyperband early_terminate",
    "controller": "controller",
    "scheduler": "scheduler",
}


def schema_path() -> Path:
    """Where wandb's `sweeps` package keeps its sweep-config JSON schema.

    `find_spec` locates the installed package without running its `__init__`.
    """
    found = importlib.util.find_spec("sweeps")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("wandb's sweep engine (pip package `sweeps`) is not installed")
    return Path(next(iter(found.submodule_search_locations))) / "config" / "schema.json"


#: W&B's schema as its `sweeps` package reads it.
SCHEMA: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
#: The schema's definitions; those used below (leaf parameters, metric, hyperband) hold no $ref.
DEFINITIONS: dict[str, Any] = SCHEMA["definitions"]
_NAME_PATTERN = re.compile(DEFINITIONS["parameters"]["propertyNames"]["pattern"])
DEFAULT_GOAL: str = DEFINITIONS["metric"]["properties"]["goal"]["default"]


def errors(schema: dict[str, Any], instance: Any) -> list[jsonschema.ValidationError]:
    """jsonschema's errors for `instance` under `schema` (W&B's or one of its definitions).

    None when `draft7` finds it valid, so that jsonschema is imported only for a failure.
    """
    try:
        if draft7.is_valid(schema, instance):
            return []
    except draft7.Unsupported:
        pass  # jsonschema decides
    return list(validator(schema).iter_errors(instance))


def validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    """jsonschema's Draft 7 validator for `schema`, with W&B's formats."""
    import jsonschema

    return jsonschema.Draft7Validator(schema, format_checker=_format_checker())


@functools.cache
def _format_checker() -> jsonschema.FormatChecker:
    """The formats W&B's schema names (`draft7.FORMATS`), as `sweeps.config.schema` checks
    them: that module imports the engine, so its checker cannot be borrowed without scipy."""
    import jsonschema

    checker = jsonschema.FormatChecker()
    for name, check in draft7.FORMATS.items():
        checker.checks(name)(check)
    return checker


@dataclass(frozen=True)
class Leaf:
    """A parameter that is a setting (not a group of nested parameters)."""

    name: str
    path: str
    config: dict[str, Any]


@dataclass(frozen=True)
class CheckedLeaf:
    """A leaf W&B's schema accepts: its distribution and its mapping with defaults filled in."""

    leaf: Leaf
    distribution: str
    filled: dict[str, Any]


@dataclass(frozen=True)
class SchemaCheck:
    """What the schema layer found: problems, W&B's warnings, and the leaves it accepts."""

    problems: list[str]
    warnings: list[str]
    leaves: list[Leaf]
    checked: list[CheckedLeaf]


def wandb_problems(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Every problem W&B's schema finds in a loaded spec mapping, and W&B's warnings."""
    result = check(data)
    problems = result.problems or document_problems(data)
    return problems, result.warnings


def check(data: dict[str, Any], settings: Collection[str] = ()) -> SchemaCheck:
    """The schema layer over a loaded spec mapping, top level and every leaf.

    `settings` are names that belong under `parameters`, so that one given at the top
    level gets a hint to move it there.
    """
    problems = top_level_problems(data, settings)
    warnings: list[str] = []
    if "parameters" not in data:
        problems.append("parameters: missing; a spec gives the settings it searches or fixes here")
        return SchemaCheck(problems, warnings, [], [])
    before = len(problems)
    leaves = walk(data["parameters"], "parameters", problems)
    well_formed = len(problems) == before
    checked: list[CheckedLeaf] = []
    seen: dict[str, str] = {}
    for leaf in leaves:
        if leaf.name in seen:
            problems.append(
                f"{leaf.path}: {leaf.name} is already given at {seen[leaf.name]}; a setting appears once"
            )
            continue
        seen[leaf.name] = leaf.path
        accepted = leaf_problems(leaf, data.get("method"), problems, warnings)
        if accepted is not None:
            checked.append(accepted)
    if data.get("method") == "bayes" and well_formed and not swept_parameters(data["parameters"]):
        problems.append(
            "method: bayes needs at least one parameter that varies, but every parameter has one value"
        )
    return SchemaCheck(problems, warnings, leaves, checked)


def document_problems(data: dict[str, Any]) -> list[str]:
    """W&B's schema on the whole document, last: whatever the checks by part missed."""
    return [f"W&B's sweep schema: {e.message}" for e in errors(SCHEMA, data)]


def top_level_problems(data: dict[str, Any], settings: Collection[str] = ()) -> list[str]:
    """Outside `parameters`: the W&B schema, then what sweeper needs on top."""
    problems: list[str] = []
    # `parameters` is walked leaf by leaf instead: the schema's anyOf errors name no key.
    outside = {key: value for key, value in data.items() if key != "parameters"}
    for error in errors(SCHEMA, outside):
        problems += _top_level_messages(error, settings)
    run_cap = data.get("run_cap")
    if isinstance(run_cap, float):  # JSON schema's "integer" accepts 5.0
        problems.append(f"run_cap: expected an integer, found {run_cap!r}")
    if data.get("method") == "custom" or "scheduler" in data:
        problems.append(
            f"method: custom schedulers run only on W&B; sweeper runs {or_list(METHODS)}"
        )
    if "metrics" in data:
        problems.append(
            "metrics: multi-objective sweeps need a W&B custom scheduler; give one `metric`"
        )
    if "metric" not in data and "metrics" not in data:
        # W&B runs grid and random search without a metric; bayes and hyperband compare runs.
        needs = []
        if data.get("method") == "bayes":
            needs.append("bayes search")
        if "early_terminate" in data:
            needs.append("early_terminate")
        if needs:
            problems.append(
                f"metric: missing; without one {' and '.join(needs)} cannot compare runs "
                "(for example `metric: {name: val_accuracy, goal: maximize}`)"
            )
    return problems


def _top_level_messages(error: jsonschema.ValidationError, settings: Collection[str]) -> list[str]:
    path = join("", *error.absolute_path)
    if (
        path == "early_terminate"
        and error.validator == "oneOf"
        and isinstance(error.instance, dict)
    ):
        messages: list[str] = []
        for inner in errors(DEFINITIONS["hyperband_stopping"], error.instance):
            if inner.validator == "anyOf":
                messages.append("early_terminate: hyperband needs min_iter, or both max_iter and s")
            else:
                messages += schema_messages(
                    [inner], "early_terminate", "a hyperband early_terminate"
                )
        return messages
    if not error.absolute_path and error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        messages = []
        for key in error.instance:
            if key in allowed:
                continue
            if key in settings:
                messages.append(
                    f"{key}: W&B rejects unknown top-level keys; trainer settings go under parameters "
                    f"as `{key}: {{value: ...}}`"
                )
            else:
                messages.append(
                    f"{key}: not a W&B sweep key{did_you_mean(key, allowed)}; expected {or_list(allowed)}"
                )
        return messages
    first = str(error.absolute_path[0]) if error.absolute_path else ""
    return schema_messages([error], "", _TOP_LEVEL_WHAT.get(first, "a W&B sweep spec"))


def walk(params: Any, path: str, problems: list[str]) -> list[Leaf]:
    """Leaves of a `parameters` mapping, nested groups flattened; structural problems appended."""
    if not isinstance(params, dict):
        problems.append(
            f"{path}: expected a mapping of parameter names to settings, found {describe(params)}"
        )
        return []
    if not params:
        problems.append(f"{path}: is empty; give at least one parameter")
        return []
    leaves: list[Leaf] = []
    for key, item in params.items():
        item_path = join(path, key)
        if not isinstance(item, dict):
            problems.append(
                f"{item_path}: expected a mapping such as {{value: ...}}, {{values: [...]}} or a distribution, "
                f"found {describe(item)}"
            )
        elif "parameters" in item:
            if not _NAME_PATTERN.match(key):
                problems.append(
                    f"{item_path}: {key!r} is not a W&B parameter name (letters, digits, _ . -)"
                )
            problems += [
                f"{join(item_path, extra)}: a group of nested parameters holds only `parameters`"
                for extra in item
                if extra != "parameters"
            ]
            leaves += walk(item["parameters"], join(item_path, "parameters"), problems)
        else:
            leaves.append(Leaf(key, item_path, item))
    return leaves


def leaf_problems(
    leaf: Leaf, method: Any, problems: list[str], warnings: list[str]
) -> CheckedLeaf | None:
    """Check one leaf against W&B's schema; the leaf with its defaults when it passes."""
    variant, found = leaf_variant(leaf)
    if variant is None:
        problems += found
        return None
    try:
        filled = fill(leaf, variant)
    except ValueError:
        low, high = leaf.config["min"], leaf.config["max"]
        problems.append(f"{join(leaf.path, 'min')}: min {low!r} must be less than max {high!r}")
        return None
    problems += _probability_problems(leaf, filled)
    deprecated = deprecation(variant)
    if deprecated:
        warnings.append(f"{leaf.path}: {deprecated}")
    if method == "grid" and variant.distribution not in GRID_DISTRIBUTIONS:
        problems.append(
            f"{leaf.path}: grid search enumerates value, values, int_uniform and q_uniform only, "
            f"not {variant.distribution}; use method random or bayes, or list the values"
        )
    return CheckedLeaf(leaf, variant.distribution, filled)


def _probability_problems(leaf: Leaf, filled: dict[str, Any]) -> list[str]:
    """The engine's `validate_categorical_prob`, which lives in a module that imports the engine."""
    values, probabilities = filled.get("values"), filled.get("probabilities")
    if values is None or probabilities is None:
        return []
    path = join(leaf.path, "probabilities")
    if len(values) != len(probabilities):
        return [
            f"{path}: values {values} and probabilities {probabilities} are not the same length"
        ]
    # np.isclose's tolerances, as the engine compares.
    if abs(sum(probabilities) - 1.0) > 1e-8 + 1e-5:
        return [f"{path}: Probabilities {probabilities} do not sum to 1"]
    return []


@dataclass(frozen=True)
class Variant:
    """One leaf schema of the W&B sweep schema (param_uniform has several)."""

    definition: str  # the schema definition, as sweeps names parameter types: "param_uniform"
    distribution: str
    required: frozenset[str]
    schema: dict[str, Any]


@functools.cache
def variants() -> list[Variant]:
    """Every leaf schema of the W&B schema, in the schema's order (the order sweeps tries them)."""
    found = []
    for reference in DEFINITIONS["parameter"]["anyOf"]:
        definition = reference["$ref"].rsplit("/", 1)[-1]
        schema = DEFINITIONS[definition]
        for variant in schema.get("anyOf", [schema]):
            if "parameters" in variant.get("properties", {}):
                continue  # nested groups are walked, not validated as leaves
            found.append(
                Variant(
                    definition=definition,
                    distribution=variant["properties"]["distribution"]["enum"][0],
                    required=frozenset(variant.get("required", ())),
                    schema=variant,
                )
            )
    return found


def leaf_variant(leaf: Leaf) -> tuple[Variant | None, list[str]]:
    """The schema variant a leaf matches, as sweeps' fill_parameter would pick it.

    When none matches, the problems are those of the closest variant (fewest errors).
    """
    if "distribution" in leaf.config:
        given = leaf.config["distribution"]
        candidates = [v for v in variants() if v.distribution == given]
        if not candidates:
            names = sorted({v.distribution for v in variants()})
            hint = did_you_mean(given, names) if isinstance(given, str) else ""
            return None, [
                f"{join(leaf.path, 'distribution')}: {describe(given)} is not a W&B distribution"
                f"{hint}; expected {or_list(names)}"
            ]
    else:
        candidates = [v for v in variants() if "distribution" not in v.required]
    # Variants whose required keys are all present first: usually the first one tried matches.
    candidates.sort(key=lambda v: not v.required <= leaf.config.keys())
    closest: tuple[Variant, list[jsonschema.ValidationError]] | None = None
    for variant in candidates:
        found = errors(variant.schema, leaf.config)
        if not found:
            return variant, []
        if closest is None or len(found) < len(closest[1]):
            closest = (variant, found)
    assert closest is not None  # every distribution has a variant
    what = f"a {closest[0].distribution} parameter"
    return None, schema_messages(closest[1], leaf.path, what)


def fill(leaf: Leaf, variant: Variant) -> dict[str, Any]:
    """The leaf with the schema's defaults filled in (distribution, q, mu, sigma), as sweeps fills it.

    Raises ValueError when min is not less than max (sweeps' own check).
    """
    filled = copy.deepcopy(leaf.config)
    try:
        draft7.fill_defaults(variant.schema, filled)
    except draft7.Unsupported:
        _default_filler(variant.schema).validate(filled)
    low, high = filled.get("min"), filled.get("max")
    if isinstance(low, numbers.Real) and isinstance(high, numbers.Real) and low >= high:
        raise ValueError(f"{leaf.name}: min {low} is not less than max {high}")
    return filled


def _default_filler(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    """A validator that also fills in the schema's defaults, jsonschema's documented recipe
    (the same as the engine's `DefaultFiller`)."""
    from jsonschema import validators

    def fill_defaults(
        validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        errored = False
        for error in validators.Draft7Validator.VALIDATORS["properties"](
            validator, properties, instance, schema
        ):
            errored = True
            yield error
        if not errored:
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, subschema["default"])

    filler = validators.extend(validators.Draft7Validator, {"properties": fill_defaults})
    return filler(schema, format_checker=_format_checker())


def deprecation(variant: Variant) -> str | None:
    """W&B's warning for a parameter type it deprecates (log_uniform and kin take exponents).

    W&B deprecated exactly the distributions that gained a `_values` successor; only for
    those is the engine's own message looked up, since its module imports scipy.
    """
    if f"{variant.distribution}_values" not in {v.distribution for v in variants()}:
        return None
    from sweeps.params import PARAM_DEPRECATION_MAP

    return PARAM_DEPRECATION_MAP.get(variant.definition)


def grid_values(distribution: str, c: dict[str, Any]) -> tuple[int | None, list[Any] | None]:
    """How many distinct values grid search enumerates, and those values when few enough."""
    from sweeps.grid_search import yaml_hash  # imports the engine: only when a store asks

    if distribution in LISTED:
        listed = [c["value"]] if distribution == "constant" else c["values"]
        distinct = list({yaml_hash(value): value for value in listed}.values())
        return len(distinct), distinct
    if distribution == "int_uniform":
        count = c["max"] - c["min"] + 1
        return count, list(range(c["min"], c["max"] + 1)) if count <= _MAX_LISTED_VALUES else None
    if distribution == "q_uniform":
        import numpy as np

        count = math.ceil((c["max"] - c["min"]) / c["q"])
        if count > _MAX_LISTED_VALUES:
            return count, None
        values = np.arange(c["min"], c["max"], c["q"]).tolist()
        return len(values), values
    return None, None
