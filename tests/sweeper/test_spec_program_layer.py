"""The program layer: program sweeps judged by W&B's schema and local checks, not TrainConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from sweeper.errors import SpecError
from sweeper.spec import parse_spec
from sweeper.spec.program_layer import MACROS, kind_of

PROGRAM_SPEC = """\
method: grid
metric: {name: score, goal: maximize}
program: train.py
parameters:
  learning_rate: {values: [0.1, 0.01]}
  optimizer:
    parameters:
      name: {value: adam}
      momentum: {values: [0.9, 0.99]}
  use_bn: {values: [true, false]}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("import wandb\n")
    return tmp_path


def test_macros_are_the_ones_wandbs_helpers_fill() -> None:
    filled = set(create_sweep_command_args({"args": {}})) - {"args_dict"}
    assert set(MACROS) == filled | {"env", "interpreter", "program", "args_json_file"}


def test_a_program_sweep_takes_the_users_own_nested_parameters(project: Path) -> None:
    spec = parse_spec(PROGRAM_SPEC, cwd=project)
    assert spec.kind == "program"
    assert list(spec.parameter_space()) == ["learning_rate", "name", "momentum", "use_bn"]
    assert spec.grid_size() == 8


def test_a_spec_without_program_is_a_trainer_sweep_with_the_trainers_checks(
    project: Path,
) -> None:
    text = PROGRAM_SPEC.replace("program: train.py\n", "")
    with pytest.raises(SpecError, match="'learning_rate' is not a trainer setting"):
        parse_spec(text, cwd=project)


def test_a_missing_program_is_reported_where_the_agent_looks(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(PROGRAM_SPEC, cwd=tmp_path)
    assert caught.value.problems == [
        f"program: 'train.py' does not exist in the working directory {tmp_path}, "
        "where W&B's agent runs it"
    ]


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (["${env}", "${interpreter}", "${program}", "${args}"], "program"),
        (["python", "other.py", "${args_json}"], "program"),
        (["${env}", "${interpreter}", "-m", "trainer", "${args}"], "trainer"),
    ],
)
def test_a_command_is_a_program_sweep_unless_it_runs_the_trainer(
    command: list[str], kind: str
) -> None:
    assert kind_of({"command": command}) == kind


def test_an_unknown_macro_is_reported_with_a_hint(project: Path) -> None:
    text = PROGRAM_SPEC + 'command: ["${env}", "${interpreter}", "${program}", "${args_jsn}"]\n'
    with pytest.raises(SpecError) as caught:
        parse_spec(text, cwd=project)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(
        "command[3]: '${args_jsn}' is not a W&B macro (did you mean \"${args_json}\"?)"
    )


def test_every_wandb_macro_and_envvar_are_accepted(project: Path) -> None:
    tokens = ", ".join(f'"${{{m}}}"' for m in MACROS)
    text = PROGRAM_SPEC + f'command: [{tokens}, "--dir=${{envvar:HOME}}"]\n'
    assert parse_spec(text, cwd=project).kind == "program"


def test_a_command_running_program_needs_it(project: Path) -> None:
    text = PROGRAM_SPEC.replace("program: train.py\n", "") + 'command: [python, "${program}"]\n'
    with pytest.raises(SpecError, match="program: missing"):
        parse_spec(text, cwd=project)
