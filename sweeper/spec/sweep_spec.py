"""`SweepSpec`, the validated spec, and `parse_spec` / `load_spec`, which build it.

Validation runs in layers, each its own module: loading (`loading`: safe YAML, plain
data), W&B's schema (`schema`), then the trainer's settings (`trainer_layer`) for a
trainer sweep or the local checks of a program sweep (`program_layer`: the user's own
script and parameter names), then W&B's schema once more on the whole document. All
problems of a layer are reported at once in one `SpecError`, W&B's before the others.

The layers are imported when a spec is validated, not with this module: a stored spec
(`SweepSpec.model_validate_json`) needs none of them, and `sweeper ls` and `status`
should not pay for jsonschema and W&B's schema file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sweeper.errors import SpecError
from sweeper.spec.swept import swept_parameters


class Parameter(BaseModel):
    """One setting of a spec's `parameters`, as wandb's engine sees it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(
        description="The setting's name: a TrainConfig field, or a program's own parameter "
        "(a nested group's label is not part of it)."
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
    kind: Literal["trainer", "program"] = Field(
        "trainer",
        description="trainer: the built-in trainer's settings; program: the user's own script.",
    )
    metric_name: str | None = Field(
        description="None for a grid or random sweep without a metric, as W&B allows."
    )
    metric_goal: Literal["maximize", "minimize"]
    run_cap: int | None = None
    early_terminate: dict[str, Any] | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="What W&B accepts but warns about (deprecated distributions).",
    )

    def parameter_space(self) -> dict[str, Parameter]:
        """Every setting the spec gives, by name (a trainer sweep's are TrainConfig fields), in spec order."""
        from sweeper.spec import schema

        leaves = schema.walk(self.raw.get("parameters"), "parameters", [])
        space: dict[str, Parameter] = {}
        for leaf in leaves:
            variant = schema.leaf_variant(leaf)[0]
            if variant is None:
                raise SpecError(self.source, [f"{leaf.path}: not a valid W&B parameter"])
            filled = schema.fill(leaf, variant)
            distribution = variant.distribution
            count, values = schema.grid_values(distribution, filled)
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

    def swept_parameters(self) -> list[str]:
        """Names of the parameters the spec varies, in spec order (`sweeper.spec.swept`)."""
        return swept_parameters(self.raw.get("parameters"))


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file; raise `SpecError` listing every problem.

    Missing files, folders, binary or non-UTF-8 files and files over 1 MiB are SpecErrors too.
    """
    from sweeper.spec.loading import read_text

    return parse_spec(read_text(path), str(path))


def parse_spec(text: str, source: str = "<string>", cwd: Path | None = None) -> SweepSpec:
    """Validate YAML text as a sweep spec; raise `SpecError` listing every problem.

    `cwd` is where agents will run a program sweep's script (default: the working directory).
    """
    from sweeper.spec.loading import load_yaml

    return spec_from_data(load_yaml(text, source), source, cwd)


def spec_from_data(
    data: Any,
    source: str = "<dict>",
    cwd: Path | None = None,
    kind: Literal["trainer", "program"] | None = None,
) -> SweepSpec:
    """Validate a loaded spec (a mapping, as from YAML or `sweeper.sweep(config)`).

    `kind` overrides what the spec says it is (`program_layer.kind_of`): a config for
    `sweeper.agent(function=f)` names no program, yet its parameters are the user's.

    >>> spec_from_data({"method": "grid", "metric": {"name": "loss"},
    ...                 "parameters": {"width": {"values": [8, 16]}}}, kind="program").kind
    'program'
    """
    from sweeper.spec import schema
    from sweeper.spec.loading import plain_data_problems
    from sweeper.spec.messages import describe
    from sweeper.spec.program_layer import kind_of, program_problems

    if data is None:
        raise SpecError(
            source, ["is empty; expected a W&B sweep spec (method, metric, parameters)"]
        )
    if not isinstance(data, dict):
        raise SpecError(
            source,
            [
                f"the top level is {describe(data)}; expected a mapping with method, metric and parameters"
            ],
        )
    problems = plain_data_problems(data)
    if problems:
        raise SpecError(source, problems)
    kind = kind or kind_of(data)
    if kind == "program":
        checked = schema.check(data)
        problems = checked.problems + program_problems(data, cwd or Path.cwd())
    else:
        from sweeper.spec.trainer_layer import trainer_problems
        from trainer.config import TrainConfig

        checked = schema.check(data, settings=TrainConfig.model_fields)
        problems = checked.problems + trainer_problems(data, checked)
    if problems:
        raise SpecError(source, problems)
    problems = schema.document_problems(data)
    if problems:
        raise SpecError(source, problems)
    metric = data.get("metric") or {}
    return SweepSpec(
        raw=data,
        source=source,
        name=data.get("name"),
        kind=kind,
        method=data["method"],
        metric_name=metric.get("name"),
        metric_goal=metric.get("goal", schema.DEFAULT_GOAL),
        run_cap=data.get("run_cap"),
        early_terminate=data.get("early_terminate"),
        warnings=checked.warnings,
    )
