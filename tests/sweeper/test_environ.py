"""sweeper.environ: variables set for a block, put back after it."""

from __future__ import annotations

import os

import pytest

from sweeper.environ import scoped_environ


def test_set_variables_are_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    with scoped_environ({"WANDB_MODE": "offline", "WANDB_RUN_ID": "r1"}):
        assert (os.environ["WANDB_MODE"], os.environ["WANDB_RUN_ID"]) == ("offline", "r1")
    assert os.environ["WANDB_MODE"] == "online"
    assert "WANDB_RUN_ID" not in os.environ


def test_restored_variables_set_in_the_block_are_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_ENTITY", "mine")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    with (
        pytest.raises(RuntimeError),
        scoped_environ({}, restored=["WANDB_ENTITY", "WANDB_PROJECT"]),
    ):
        os.environ.update(WANDB_ENTITY="theirs", WANDB_PROJECT="p")
        raise RuntimeError("the block failed")
    assert os.environ["WANDB_ENTITY"] == "mine"
    assert "WANDB_PROJECT" not in os.environ
