"""Errors the trainer raises. The trainer is a library: it imports nothing from sweeper."""

from __future__ import annotations


class TrainerError(Exception):
    """A problem the user can fix (missing data, bad weights file); the message says how."""


class DataError(TrainerError):
    """The dataset folder is missing, empty, or its train and test classes differ."""


class WeightsError(TrainerError):
    """Pretrained weights or a checkpoint cannot be found or loaded."""


class OutOfMemoryError(TrainerError):
    """The device ran out of memory; the message names the batch size to lower."""


class Interrupted(Exception):
    """Training was asked to stop at a batch boundary (`stop_event` was set)."""
