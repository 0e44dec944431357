"""W&B's schema layer alone: its file read without the engine, specs whose parameters are
the user's own."""

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

from sweeper.spec import loading, messages, schema
from sweeper.spec.schema import SCHEMA, schema_path, wandb_problems


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
