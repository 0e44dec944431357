"""Sweep specs for tests, made the way users make them: YAML text through the real parser."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from sweeper.spec import SweepSpec, parse_spec

#: A two-config grid named `grid`, as YAML text, that W&B's schema and sweeper's both accept:
#: what the W&B backend and its sweep references create.
WANDB_GRID = """
name: grid
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  data_dir: {value: data/tiny}
  lr: {values: [0.001, 0.0001]}
"""


def parsed_spec(raw: Mapping[str, Any], source: str = "<test>") -> SweepSpec:
    """`raw` (what a sweep YAML file holds) written as YAML and validated by `parse_spec`, so a
    test's spec is one `sweeper create` would accept.

    >>> spec = parsed_spec({
    ...     "method": "grid",
    ...     "metric": {"name": "val_accuracy", "goal": "maximize"},
    ...     "parameters": {"data_dir": {"value": "data"}, "lr": {"values": [0.1, 0.01]}},
    ... })
    >>> spec.method, spec.metric_name, spec.source
    ('grid', 'val_accuracy', '<test>')
    """
    return parse_spec(yaml.safe_dump(dict(raw), sort_keys=False), source)
