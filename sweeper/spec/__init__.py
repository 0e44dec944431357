"""Sweep specs: a W&B sweep YAML, loaded and validated before anything is stored.

The package's modules, one layer each:

- `loading`: reading the file, PyYAML's safe loader with duplicate keys refused, plain data;
- `schema`: W&B's own sweep-config schema, alone (usable for any W&B spec);
- `draft7`: the yes-or-no JSON Schema check that spares a valid spec jsonschema's import;
- `trainer_layer`: a trainer sweep's every parameter name and value against `trainer.TrainConfig`;
- `program_layer`: a program sweep's (the user's own script) local checks, and which kind a spec is;
- `messages`: the sentences problems are written in;
- `swept`: which parameters a spec varies (the one definition);
- `sweep_spec`: `SweepSpec` and `parse_spec` / `load_spec` / `spec_from_data`, which run the layers.

Importing the package is light (pydantic only): the layers load when a spec is validated,
and jsonschema only when a spec fails W&B's schema and its problems must be worded.

All problems are reported at once in one `SpecError`. `SweepSpec.raw` is the mapping
exactly as loaded, so the engine sees what W&B would.

>>> spec = parse_spec('''
... method: grid
... metric: {name: val_accuracy, goal: maximize}
... parameters:
...   data_dir: {value: data/inaturalist_12K}
...   lr: {values: [0.001, 0.0001]}
... ''')
>>> spec.grid_size(), spec.swept_parameters()
(2, ['lr'])
"""

from __future__ import annotations

from sweeper.spec.sweep_spec import Parameter, SweepSpec, load_spec, parse_spec, spec_from_data
from sweeper.spec.swept import swept_parameters

__all__ = [
    "Parameter",
    "SweepSpec",
    "load_spec",
    "parse_spec",
    "spec_from_data",
    "swept_parameters",
]
