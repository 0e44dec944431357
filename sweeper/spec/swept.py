"""Which parameters a sweep varies: the one definition that `status`, the agent's table and the
report columns all use (through `Sweep.swept_parameters` and `SweepSpec.swept_parameters`).

It reads a spec's `parameters` mapping as stored, with no schema and no trainer, so it
answers for any sweep, a W&B sweep made outside sweeper included, and costs no import.
"""

from __future__ import annotations

from typing import Any


def swept_parameters(parameters: Any) -> list[str]:
    """Names of the parameters a sweep varies, in spec order: the one definition sweeper uses.

    Nested groups are walked (their leaves keep their own names, as the trainer gets them).
    A parameter is fixed when it has one value: `value:`, or a `values:` list of one
    element. Every other leaf (several values, a distribution, min/max bounds) is swept.
    Malformed entries are skipped: this reads specs that are already stored.

    >>> swept_parameters({
    ...     "lr": {"values": [1e-3, 1e-4]}, "epochs": {"value": 5}, "mode": {"values": ["head"]},
    ...     "opt": {"parameters": {"dropout": {"min": 0.0, "max": 0.5}}},
    ... })
    ['lr', 'dropout']
    """
    names: list[str] = []
    if not isinstance(parameters, dict):
        return names
    for name, body in parameters.items():
        if not isinstance(body, dict):
            continue
        if "parameters" in body:
            names += [n for n in swept_parameters(body["parameters"]) if n not in names]
        elif not _is_fixed(body) and name not in names:
            names.append(name)
    return names


def _is_fixed(body: dict[str, Any]) -> bool:
    if body.get("distribution", "constant") == "constant" and "value" in body:
        return True
    values = body.get("values")
    return isinstance(values, list) and len(values) == 1
