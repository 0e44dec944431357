"""Which backend a command means: picking one for a new sweep, finding a sweep by reference
or as the current one, listing every sweep this home knows."""

from __future__ import annotations

import pytest

from sweeper.backends.local import LocalBackend
from sweeper.errors import NotFoundError, SweeperError
from sweeper.locate import (
    BACKEND_NAMES,
    current_id,
    list_all,
    locate,
    locate_all,
    pick_backend,
)
from sweeper.paths import Home

from .conftest import MakeSpec


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_requested_backend_is_taken_as_given(name: str) -> None:
    assert pick_backend(name) == (name, "--backend")


def test_without_an_api_key_new_sweeps_are_local() -> None:
    assert pick_backend(None) == ("local", "no W&B credentials are configured")


def test_wandb_is_picked_when_wandb_has_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert pick_backend(None) == ("wandb", "W&B credentials are configured")


def test_an_unknown_backend_names_the_choices() -> None:
    with pytest.raises(SweeperError, match="expected one of local, wandb"):
        pick_backend("mlflow")


def test_locate_without_any_sweep_says_what_to_do() -> None:
    with pytest.raises(SweeperError, match="none created yet"):
        locate(Home(), None)


def test_locate_finds_the_current_sweep_and_one_by_prefix(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    first = backend.create_sweep(make_spec({"lr": {"values": [0.1, 0.01]}}), name="first")
    second = backend.create_sweep(make_spec({"lr": {"values": [0.1, 0.01]}}), name="second")
    backend.store.set_current(second.id)
    found_backend, found = locate(Home(), None)
    assert (found_backend.name, found.id) == ("local", second.id)
    assert locate(Home(), first.id[:4])[1].id == first.id
    assert locate(Home(), "first")[1].id == first.id
    assert current_id(Home()) == second.id
    with pytest.raises(NotFoundError):
        locate(Home(), "nosuchsweep")


def test_list_all_is_newest_first(backend: LocalBackend, make_spec: MakeSpec) -> None:
    ids = [backend.create_sweep(make_spec({"lr": {"values": [0.1, 0.01]}})).id for _ in range(3)]
    assert [s.id for s in list_all(Home())] == ids[::-1]


def test_locate_all_reads_the_named_sweeps_or_the_current_one(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    a, b = (backend.create_sweep(make_spec({"lr": {"values": [0.1, 0.01]}})) for _ in range(2))
    backend.store.set_current(b.id)
    assert [s.id for s in locate_all(Home(), [a.id, b.id])[1]] == [a.id, b.id]
    assert [s.id for s in locate_all(Home(), [])[1]] == [b.id]
