"""Fixtures for the demo tests: a demo dataset spec small enough to build in a second."""

from __future__ import annotations

import pytest

from demo.dataset import DemoDataSpec


@pytest.fixture
def small_spec() -> DemoDataSpec:
    """30 originals per digit, 2 source copies, 5 labelled target images per class, and
    3 letters of 20 images each."""
    return DemoDataSpec(
        max_per_class=30,
        source_copies=2,
        target_train_per_class=5,
        source_letters="AKZ",
        letter_images=20,
    )
