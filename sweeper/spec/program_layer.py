"""The program layer: what can be checked locally of a program sweep (the user's own script).

A program sweep names its script with `program`, or a `command` that runs something other
than the built-in trainer. Its parameters are the user's, so only W&B's schema judges them
(`sweeper.spec.schema`); this layer adds what W&B's agent would trip over when it starts a
run: the program file missing (resolved as `wandb agent` resolves it, relative to the
working directory) and a `${...}` macro W&B's agent does not know. A metric is needed
where the method compares runs (bayes, hyperband); the schema layer checks that for
every kind.

The macro names are listed here rather than read from wandb's
`create_sweep_command_args`: `sweeper validate` must not import wandb (1.7 s); a test
holds the list equal to what wandb's helpers produce.

>>> from pathlib import Path
>>> for problem in program_problems({"program": "nowhere.py",
...         "command": ["${env}", "${interpreter}", "${program}", "${argz}"]}, Path(".")):
...     print(problem[:75])
program: 'nowhere.py' does not exist in the working directory ., where W&B'
command[3]: '${argz}' is not a W&B macro (did you mean "${args}"?); W&B's a
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from sweeper.errors import did_you_mean

#: The macros W&B's agent fills in a `command` (wandb/wandb_agent.py and
#: `wandb.sdk.launch.sweeps.utils.create_sweep_command_args`).
MACROS = (
    "args",
    "args_append_hydra",
    "args_json",
    "args_json_file",
    "args_no_boolean_flags",
    "args_no_equals",
    "args_no_hyphens",
    "args_override_hydra",
    "env",
    "interpreter",
    "program",
)
_MACRO = re.compile(r"\$\{([^}]*)\}")
_ENVVAR = re.compile(r"envvar:[A-Z0-9_]*")


def kind_of(data: dict[str, Any]) -> Literal["trainer", "program"]:
    """'program' when the spec runs a script of its own, else 'trainer'.

    A `command` runs the built-in trainer when it runs `python -m trainer`; any other
    command, or a `program`, is the user's.

    >>> kind_of({"program": "train.py"}), kind_of({"method": "grid"})
    ('program', 'trainer')
    >>> kind_of({"command": ["${env}", "${interpreter}", "-m", "trainer", "${args}"]})
    'trainer'
    """
    if "program" in data:
        return "program"
    command = data.get("command")
    if command is None:
        return "trainer"
    if isinstance(command, list):
        tokens = [str(token) for token in command]
        for i, token in enumerate(tokens[:-1]):
            if token == "-m" and tokens[i + 1] == "trainer":
                return "trainer"
    return "program"


def program_problems(data: dict[str, Any], cwd: Path) -> list[str]:
    """Everything this layer finds in a program sweep's mapping; `cwd` is where the agent runs."""
    problems: list[str] = []
    program = data.get("program")
    command = data.get("command")
    if isinstance(program, str) and not _is_file(cwd / program):
        problems.append(
            f"program: {program!r} does not exist in the working directory {cwd}, "
            "where W&B's agent runs it"
        )
    if isinstance(command, list):
        uses_program = False
        for i, token in enumerate(command):
            for match in _MACRO.finditer(str(token)):
                name = match.group(1)
                uses_program |= name == "program"
                if name not in MACROS and not _ENVVAR.fullmatch(name):
                    hint = re.sub(r'"([^"]+)"', r'"${\1}"', did_you_mean(name, MACROS))
                    known = ", ".join(f"${{{m}}}" for m in MACROS)
                    problems.append(
                        f"command[{i}]: {str(token)!r} is not a W&B macro{hint}; "
                        f"W&B's agent knows {known} and ${{envvar:NAME}}"
                    )
        if uses_program and program is None:
            problems.append("program: missing; the command runs ${program}, so name the script")
    return problems


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        return False
