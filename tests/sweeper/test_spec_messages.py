"""The sentences spec problems are written in."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from sweeper.spec.messages import and_list, describe, join, or_list, schema_messages


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        ({}, "a mapping"),
        ([1], "a list"),
        ("x", "'x'"),
        (1.5, "1.5"),
    ],
)
def test_describe_writes_values_as_yaml_does(value: Any, text: str) -> None:
    assert describe(value) == text


def test_lists_and_paths() -> None:
    assert join("", "metric", "name") == "metric.name"
    assert join("parameters.lr", "values", 2) == "parameters.lr.values[2]"
    assert or_list(["a"]) == "'a'"
    assert and_list(["min", "max", "q"]) == "min, max and q"


def test_schema_messages_name_the_key_path_and_the_choices() -> None:
    schema = {
        "type": "object",
        "properties": {"goal": {"enum": ["maximize", "minimize"]}},
        "additionalProperties": False,
    }
    errors = list(jsonschema.Draft7Validator(schema).iter_errors({"goal": "maximise", "nme": 1}))
    messages = schema_messages(errors, "metric", "metric")
    assert sorted(messages) == [
        "metric.goal: 'maximise' is not allowed (did you mean \"maximize\"?); expected 'maximize' or 'minimize'",
        "metric.nme: unexpected key; metric takes goal",
    ]
