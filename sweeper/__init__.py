"""sweeper: hyperparameter sweeps for fine-tuning image classifiers."""

from __future__ import annotations

__version__ = "0.1.0"
