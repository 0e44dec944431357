"""sweeper: hyperparameter sweeps for fine-tuning image classifiers.

`sweeper.sweep` and `sweeper.agent` are the Python API (`sweeper.api`), loaded on first
use so that `import sweeper` (and the CLI's start-up) stays light.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

# wandb's sweeps engine declares a pydantic v1 config key; its warning would reach every user.
warnings.filterwarnings("ignore", "Valid config keys have changed in V2", UserWarning)

__version__ = "0.1.0"
__all__ = ["__version__", "agent", "sweep"]

_API = ("sweep", "agent")


def __getattr__(name: str) -> Any:
    if name in _API:
        # By name: the core never imports this entry point (tests/test_architecture.py).
        return getattr(importlib.import_module("sweeper.api"), name)
    raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
