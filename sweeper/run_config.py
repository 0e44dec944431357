"""A run's config: the engine's proposal or a W&B run config, flattened for the trainer.

Backends call `flatten_config` at run time on what the engine proposed or what W&B's
controller handed out; the result is `Run.config`, the trainer's settings by name.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from sweeper.errors import SpecError


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn the engine's proposal ({"lr": {"value": 1e-3}, "group": {"value": {...}}})
    into the flat trainer config ({"lr": 1e-3, ...}); nested groups are flattened.

    A plain W&B run config ({"lr": 1e-3, "group": {...}}) flattens the same way; numpy
    scalars become Python numbers and W&B's own `_`-prefixed entries are dropped.

    >>> flatten_config({"lr": {"value": 0.1}, "opt": {"value": {"momentum": 0.9}}})
    {'lr': 0.1, 'momentum': 0.9}
    """
    flat: dict[str, Any] = {}
    for key, item in config.items():
        if str(key).startswith("_"):
            continue
        wrapped = isinstance(item, Mapping) and "value" in item and set(item) <= {"value", "desc"}
        _flatten_into(flat, str(key), item["value"] if wrapped else item)
    return flat


def _flatten_into(flat: dict[str, Any], key: str, value: Any) -> None:
    # No TrainConfig field holds a mapping, so a mapping is always a group of settings.
    if isinstance(value, Mapping):
        for inner_key, inner in value.items():
            _flatten_into(flat, str(inner_key), inner)
        return
    if key in flat:
        raise SpecError(
            "<run config>", [f"{key}: given twice in the run config, so it cannot be flattened"]
        )
    # Only the engine makes numpy scalars, so without numpy loaded there are none: `sweeper
    # status` flattens W&B run configs without paying for the import.
    numpy = sys.modules.get("numpy")
    flat[key] = value.item() if numpy is not None and isinstance(value, numpy.generic) else value
