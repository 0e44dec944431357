"""What trainer/config.py tells the spec validator: the fields cross-field rules read and the
aliases users bring from other sweep scripts."""

from __future__ import annotations

import inspect
import re

from trainer.config import CROSS_FIELDS, PARAMETER_ALIASES, TrainConfig, cross_field_problems


def test_cross_fields_cover_every_field_the_rules_read() -> None:
    read = set(re.findall(r"config\.(\w+)", inspect.getsource(cross_field_problems)))
    assert read <= set(CROSS_FIELDS) <= set(TrainConfig.model_fields)


def test_aliases_point_at_fields_and_are_not_fields() -> None:
    assert set(PARAMETER_ALIASES.values()) <= set(TrainConfig.model_fields)
    assert not set(PARAMETER_ALIASES) & set(TrainConfig.model_fields)
