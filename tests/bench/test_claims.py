"""bench/claims.py: a measurement run tiny (2 claiming processes, 30 claims) on each store."""

from __future__ import annotations

import pytest

from bench.claims import claims_per_second, fresh_schema


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_every_claim_is_made_and_timed_to_the_last(
    store: str, request: pytest.FixtureRequest
) -> None:
    """The claimers leave without the interpreter's teardown once they have written their
    counts and their last claim's time: the measurement checks that every claim was made
    and every claimer exited 0, and its clock ends at the last claim, after it started."""
    if store == "postgresql":
        server = request.getfixturevalue("pg_server")
        rate = claims_per_second(2, 30, lambda home: fresh_schema(server.url()))
    else:
        rate = claims_per_second(2, 30, lambda home: f"sqlite:///{home}/store.db")
    assert rate.wall > 0 and rate.cpu > 0 and rate.server_ms is None
