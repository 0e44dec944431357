"""The yes-or-no Draft 7 check (sweeper/spec/draft7.py) says what jsonschema says: over the
spec corpus, over random documents, on the keyword edge cases; it fills the same defaults;
and what it does not know goes to jsonschema."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper.spec import draft7, schema
from sweeper.spec.schema import DEFINITIONS, SCHEMA
from tests.sweeper.test_sweep_spec import DISTRIBUTIONS, INVALID, make

#: Every schema the layer validates with: the whole sweep schema and its definitions.
SCHEMAS: dict[str, Any] = {
    "sweep": SCHEMA,
    **{name: DEFINITIONS[name] for name in ("metric", "hyperband_stopping", "scheduler")},
    **{f"{v.definition}-{i}": v.schema for i, v in enumerate(schema.variants())},
}


def _corpus() -> list[Any]:
    """Documents of the spec tests that load as YAML: invalid ones of every layer, and one
    spec per W&B distribution."""
    texts = [(p.id, p.values[0]) for p in INVALID] + [
        (p.id, make({p.values[0]: p.values[1]}, method="random")) for p in DISTRIBUTIONS
    ]
    documents = []
    for name, text in texts:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict):
            documents.append(pytest.param(data, id=name))
    return documents


CORPUS = _corpus()


def jsonschema_valid(schema_: Any, instance: Any) -> bool:
    return bool(schema.validator(schema_).is_valid(instance))


def verdicts(instance: Any, valid: Any) -> dict[str, bool]:
    """The verdict of `valid` for `instance` and each of its parameters, under every schema."""
    leaves = schema.walk(instance.get("parameters"), "parameters", [])
    return {
        f"{name} {what}": valid(schema_, value)
        for name, schema_ in SCHEMAS.items()
        for what, value in [("document", instance), *((leaf.path, leaf.config) for leaf in leaves)]
    }


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 50


@pytest.mark.parametrize("document", CORPUS)
def test_verdicts_match_jsonschemas_over_the_spec_corpus(document: dict[str, Any]) -> None:
    assert verdicts(document, draft7.is_valid) == verdicts(document, jsonschema_valid)


_KEYS = st.sampled_from(
    ["distribution", "min", "max", "q", "mu", "sigma", "a", "b", "value", "values", "probabilities"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from([v.distribution for v in schema.variants()] + ["maximize", "x"])
)
_VALUES = _SCALARS | st.lists(_SCALARS, max_size=3) | st.dictionaries(_KEYS, _SCALARS, max_size=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(_KEYS, _VALUES, max_size=4),
    st.dictionaries(st.sampled_from(["method", "metric", "run_cap", "early_terminate"]), _VALUES),
)
def test_verdicts_match_jsonschemas_over_random_documents(
    leaf: dict[str, Any], top: dict[str, Any]
) -> None:
    document = {**top, "parameters": {"p": leaf}}
    assert verdicts(document, draft7.is_valid) == verdicts(document, jsonschema_valid)


@pytest.mark.parametrize(
    ("schema_", "instance", "valid"),
    [
        ({"type": "integer"}, True, False),
        ({"type": "number"}, False, False),
        ({"type": "integer"}, 1.0, True),
        ({"type": "integer"}, 1.5, False),
        ({"type": ["string", "null"]}, None, True),
        ({"enum": [1]}, True, False),
        ({"enum": [True]}, 1, False),
        ({"enum": [[1, "a"]]}, [1, "a"], True),
        ({"enum": [{"a": 0}]}, {"a": False}, False),
        ({"format": "integer"}, True, True),  # W&B's own check: isinstance(value, int)
        ({"format": "float"}, 1, False),
        ({"exclusiveMinimum": 0}, 0, False),
        ({"minimum": 0}, True, True),  # not a number: minimum does not apply
        ({"properties": {"a": False}}, {"b": 1}, True),
        ({"additionalProperties": False, "properties": {"a": {}}}, {"a": 1, "b": 2}, False),
        ({"additionalProperties": {"type": "string"}}, {"a": "x"}, True),
        ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, 1, False),
        ({"dependencies": {"a": ["b"]}}, {"a": 1}, False),
        ({"dependencies": {"a": {"required": ["b"]}}}, {"a": 1, "b": 2}, True),
        ({"items": [{"type": "string"}]}, ["a", 1], True),
        ({"items": {"type": "string"}}, ["a", 1], False),
        ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"ab": 1, "A": 2}, False),
        ({"$ref": "#/definitions/n", "type": "string", "definitions": {"n": {}}}, 1, True),
    ],
)
def test_keyword_edge_cases_as_jsonschema_decides_them(
    schema_: dict[str, Any], instance: Any, valid: bool
) -> None:
    assert draft7.is_valid(schema_, instance) is valid
    assert jsonschema_valid(schema_, instance) is valid


@pytest.mark.parametrize(
    "schema_",
    [
        {"maxLength": 2},
        {"format": "email"},
        {"$ref": "other.json#/a"},
        {"additionalProperties": False, "patternProperties": {"^x": {}}},
        {"type": "decimal"},
    ],
)
def test_what_it_does_not_know_is_left_to_jsonschema(schema_: dict[str, Any]) -> None:
    with pytest.raises(draft7.Unsupported):
        draft7.is_valid(schema_, "abc" if "maxLength" in schema_ else {"a": 1})


def test_the_layer_words_an_unsupported_keyword_with_jsonschema() -> None:
    assert [e.validator for e in schema.errors({"maxLength": 2}, "abc")] == ["maxLength"]
    assert schema.errors({"maxLength": 2}, "ab") == []


@pytest.mark.parametrize(("name", "parameter", "distribution"), DISTRIBUTIONS)
def test_defaults_are_filled_as_jsonschemas_recipe_fills_them(
    name: str, parameter: dict[str, Any], distribution: str
) -> None:
    leaf = schema.Leaf(name, f"parameters.{name}", parameter)
    variant, _ = schema.leaf_variant(leaf)
    assert variant is not None and variant.distribution == distribution
    by_recipe = copy.deepcopy(parameter)
    schema._default_filler(variant.schema).validate(by_recipe)
    assert schema.fill(leaf, variant) == by_recipe


def test_defaults_under_a_combinator_are_left_to_jsonschema() -> None:
    with pytest.raises(draft7.Unsupported):
        draft7.fill_defaults({"anyOf": [{"properties": {"a": {"default": 1}}}]}, {})


def test_a_valid_spec_is_checked_without_jsonschema_an_invalid_one_with_it() -> None:
    code = (
        "import sys\n"
        "from sweeper.spec import parse_spec\n"
        "from sweeper.errors import SpecError\n"
        "parse_spec(sys.argv[1])\n"
        "print('jsonschema' in sys.modules)\n"
        "try:\n"
        "    parse_spec(sys.argv[2])\n"
        "except SpecError:\n"
        "    print('jsonschema' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, make(), make(method="bayesian")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["False", "True"]


def test_the_invalid_document_still_gets_jsonschemas_wording() -> None:
    document = {"method": "grid", "parameters": {"p": {"value": 1}}, "kind": "job"}
    assert schema.document_problems(document) == [
        f"W&B's sweep schema: {e.message}"
        for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(document)
    ]
