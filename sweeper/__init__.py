"""sweeper: hyperparameter sweeps for fine-tuning image classifiers."""

from __future__ import annotations

import warnings

# wandb's sweeps engine declares a pydantic v1 config key; its warning would reach every user.
warnings.filterwarnings("ignore", "Valid config keys have changed in V2", UserWarning)

__version__ = "0.1.0"
