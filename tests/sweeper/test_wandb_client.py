"""sweeper.wandb.client: RealClient on wandb's real client, the fake W&B server under it.

The private agent helpers are pinned by signature here, and the installed wandb by the
range in pyproject.toml, so an upgrade that changes them fails in these tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib
import wandb
from packaging.requirements import Requirement
from wandb.apis.public import sweeps as public_sweeps

from sweeper.paths import Home
from sweeper.wandb.client import RealClient, SweepRef
from tests.sweeper.fake_wandb import KEY, FakeWandb, fresh_wandb_session, serve  # noqa: F401 - autouse fixture

ROOT = Path(__file__).resolve().parents[2]
GRID = {
    "name": "grid",
    "method": "grid",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"lr": {"values": [0.1, 0.01]}},
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWandb:
    return serve(monkeypatch, tmp_path)  # every host's wandb folder of the test


@pytest.fixture
def client() -> Iterator[RealClient]:
    yield RealClient(Home().wandb_dir, 5)


@pytest.fixture
def ref(fake: FakeWandb, client: RealClient) -> SweepRef:
    return SweepRef(entity="team", project="p", id=client.create_sweep(dict(GRID), "team", "p"))


# --- what sweeper relies on in wandb ---------------------------------------------------------


def test_the_installed_wandb_is_in_the_pinned_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(d) for d in project["dependencies"] if d.startswith("wandb")]
    assert len(pins) == 1 and pins[0].specifier.contains(wandb.__version__)
    assert pins[0].specifier.contains("0.31.0") and not pins[0].specifier.contains("0.32.0")


@pytest.mark.parametrize(
    ("helper", "signature"),
    [
        (
            "_register_agent",
            "(api: 'Api', host: 'str', *, sweep_id: 'str', project: 'str | None' = None,"
            " entity: 'str | None' = None) -> 'dict[str, Any]'",
        ),
        (
            "_agent_heartbeat",
            "(api: 'Api', agent_id: 'str', metrics: 'dict', run_states: 'dict')"
            " -> 'list[dict[str, Any]]'",
        ),
        (
            "_set_sweep_state",
            "(api: 'Api', sweep: 'str', state: 'SweepState', *, entity: 'str | None' = None,"
            " project: 'str | None' = None) -> 'None'",
        ),
    ],
)
def test_the_private_agent_helpers_keep_their_signatures(helper: str, signature: str) -> None:
    assert str(inspect.signature(getattr(public_sweeps, helper))) == signature


def test_no_deprecated_wandb_call_is_made() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "sweeper" / "wandb").glob("*.py"))
    assert "util.app_url" not in source


# --- through wandb's client to the fake server -----------------------------------------------


def test_the_sweep_is_created_with_wandbs_documents(fake: FakeWandb, ref: SweepRef) -> None:
    assert fake.sweeps[ref.id].config["parameters"] == GRID["parameters"]
    assert "UpsertSweep" in fake.operations


def test_wandb_sweep_leaves_the_environment_alone(
    fake: FakeWandb, client: RealClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    client.create_sweep(dict(GRID), "team", "p")
    import os

    assert "WANDB_ENTITY" not in os.environ


def test_an_agent_gets_the_controllers_run(
    fake: FakeWandb, client: RealClient, ref: SweepRef
) -> None:
    agent = client.register_agent(ref, "host1")
    commands = client.agent_heartbeat(agent, [])
    assert [c["type"] for c in commands] == ["run"]
    assert commands[0]["run_id"] in fake.runs


def test_a_heartbeat_outage_raises_instead_of_looking_like_no_run(
    fake: FakeWandb, client: RealClient, ref: SweepRef
) -> None:
    agent = client.register_agent(ref, "host1")
    fake.fail(503, operation="Heartbeat")
    with pytest.raises(Exception, match="503"):
        client.agent_heartbeat(agent, [])


def test_reads_are_fresh_not_wandbs_cached_runs(
    fake: FakeWandb, client: RealClient, ref: SweepRef
) -> None:
    run_id = client.agent_heartbeat(client.register_agent(ref, "h"), [])[0]["run_id"]
    client.log_epoch(ref, run_id, {"lr": 0.1}, {"epoch": 1, "val_accuracy": 0.5})
    first = client.get_run(ref, run_id)
    client.end_run(ref, run_id, {"lr": 0.1}, {"best": 0.5}, 0)
    again = client.get_run(ref, run_id)
    assert first is not None and again is not None
    assert (first.state, again.state) == ("running", "finished")
    assert again.summary["best"] == 0.5
    assert [row["val_accuracy"] for row in again.history] == [0.5]


def test_the_run_record_wandb_writes_names_the_sweep_the_run_and_its_config(
    fake: FakeWandb, client: RealClient, ref: SweepRef
) -> None:
    run_id = client.agent_heartbeat(client.register_agent(ref, "h"), [])[0]["run_id"]
    client.end_run(ref, run_id, {"lr": 0.1}, {"sweeper_state": "finished"}, 0)
    (records,) = fake.run_files()[run_id]
    run: Any = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = {i.key: i.value_json for i in run.config.update if not i.key.startswith("_")}
    assert (run.run_id, run.sweep_id, run.run_group, config) == (
        run_id,
        ref.id,
        ref.id,
        {"lr": "0.1"},
    )


def test_the_key_is_sent_only_to_wandb(fake: FakeWandb, client: RealClient, ref: SweepRef) -> None:
    assert client.api.api_key == KEY
    assert client.sweep_url(ref).endswith(f"/team/p/sweeps/{ref.id}")
