"""Sweep specs: a W&B sweep YAML, loaded and validated before anything is stored.

Two layers of validation: (1) the W&B sweep-config schema shipped by wandb's
`sweeps` engine, (2) every parameter name and value against `trainer.TrainConfig`.
All problems are reported at once in one `SpecError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SweepSpec(BaseModel):
    """A validated sweep spec. `raw` is the YAML mapping, unchanged, as W&B would get it."""

    model_config = ConfigDict(frozen=True)

    raw: dict[str, Any]
    source: str = Field(description="The file it came from, or '<string>'.")
    name: str | None = None
    method: Literal["bayes", "random", "grid"]
    metric_name: str
    metric_goal: Literal["maximize", "minimize"]
    run_cap: int | None = None
    early_terminate: dict[str, Any] | None = None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file; raise `SpecError` listing every problem."""
    raise NotImplementedError


def parse_spec(text: str, source: str = "<string>") -> SweepSpec:
    """Validate YAML text as a sweep spec; raise `SpecError` listing every problem."""
    raise NotImplementedError


def flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    """Turn the engine's proposal ({"lr": {"value": 1e-3}, "group": {"value": {...}}})
    into the flat trainer config ({"lr": 1e-3, ...}); nested groups are flattened."""
    raise NotImplementedError
