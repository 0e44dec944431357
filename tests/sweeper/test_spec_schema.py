"""W&B's schema layer alone: its file read without the engine, specs whose parameters are
the user's own, and the one definition of a swept parameter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sweeps

from sweeper.spec import loading, messages, schema, swept_parameters, wandb_problems
from sweeper.spec.schema import SCHEMA, schema_path


def program_spec(**parameters: Any) -> dict[str, Any]:
    return {
        "program": "train.py",
        "method": "bayes",
        "metric": {"name": "eval/f1", "goal": "maximize"},
        "parameters": parameters,
    }


def test_the_schema_is_the_file_wandbs_sweeps_package_ships() -> None:
    from sweeps.config.schema import sweep_config_jsonschema

    assert schema_path().parent.parent.samefile(sweeps.__path__[0])
    assert SCHEMA == sweep_config_jsonschema == json.loads(schema_path().read_text())


def test_the_schema_layer_does_not_import_the_engine() -> None:
    code = (
        "import sys, sweeper.spec.schema\n"
        "print(sorted(m for m in ('sweeps', 'scipy', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", [schema, messages, loading])
def test_the_schema_layer_does_not_depend_on_the_trainer(module: ModuleType) -> None:
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
        )
    }
    assert not {m for m in imported if m.startswith(("trainer", "sweeper.spec.trainer_layer"))}


def test_a_program_spec_with_the_users_own_parameters_passes() -> None:
    spec = program_spec(
        hidden={"values": [64, 128]},
        opt={"parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1}}},
    )
    assert wandb_problems(spec) == ([], [])


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"hidden": {"distribution": "unifrom", "min": 0, "max": 1}}, 'did you mean "uniform"'),
        ({"hidden": {"min": 4, "max": 2}}, "parameters.hidden.min: min 4 must be less than max 2"),
        (
            {"hidden": {"values": [1, 2], "probabilities": [0.5, 0.6]}},
            "parameters.hidden.probabilities: Probabilities [0.5, 0.6] do not sum to 1",
        ),
        ({"hidden": {"value": 1}}, "method: bayes needs at least one parameter that varies"),
        ({"hidden": {"values": [1]}}, "method: bayes needs at least one parameter that varies"),
    ],
)
def test_wandb_problems_name_the_key(parameters: dict[str, Any], fragment: str) -> None:
    problems, _ = wandb_problems(program_spec(**parameters))
    assert any(fragment in p for p in problems), problems


def test_deprecated_distributions_warn_in_wandbs_words() -> None:
    problems, warnings = wandb_problems(
        program_spec(lr={"distribution": "log_uniform", "min": -9.2, "max": -2.3})
    )
    assert problems == []
    assert len(warnings) == 1
    assert warnings[0].startswith("parameters.lr: uses log_uniform")


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
