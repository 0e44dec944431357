"""The one definition of a swept parameter: nested groups walked, one value fixed."""

from __future__ import annotations

from typing import Any

import pytest

from sweeper.spec.swept import swept_parameters


@pytest.mark.parametrize(
    ("parameters", "swept"),
    [
        pytest.param({"lr": {"values": [0.1, 0.01]}}, ["lr"], id="values"),
        pytest.param({"lr": {"value": 0.1}}, [], id="value-is-fixed"),
        pytest.param({"lr": {"values": [0.1]}}, [], id="one-value-is-fixed"),
        pytest.param(
            {"lr": {"distribution": "constant", "value": 0.1}}, [], id="constant-is-fixed"
        ),
        pytest.param({"lr": {"min": 0.0, "max": 1.0}}, ["lr"], id="bounds"),
        pytest.param(
            {"lr": {"distribution": "normal", "mu": 0, "sigma": 1}}, ["lr"], id="distribution"
        ),
        pytest.param(
            {
                "a": {
                    "parameters": {
                        "b": {"parameters": {"lr": {"values": [1, 2]}, "x": {"value": 1}}}
                    }
                }
            },
            ["lr"],
            id="nested-recursive",
        ),
        pytest.param(
            {"lr": {"values": [1, 2]}, "g": {"parameters": {"lr": {"values": [3, 4]}}}},
            ["lr"],
            id="once-each",
        ),
        pytest.param({"lr": 0.1, "x": None}, [], id="malformed-skipped"),
    ],
)
def test_swept_parameters(parameters: dict[str, Any], swept: list[str]) -> None:
    assert swept_parameters(parameters) == swept


def test_swept_parameters_of_no_mapping_is_empty() -> None:
    assert swept_parameters(None) == []
