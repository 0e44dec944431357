"""sweeper.wandb.credentials: the key and server come from wandb's own resolution."""

from __future__ import annotations

import pytest
from wandb.sdk.lib.urls import DEFAULT_BASE_URL
from wandb.sdk.lib.wbauth import write_netrc_auth

from sweeper.errors import BackendError
from sweeper.wandb import credentials
from tests.sweeper.fake_wandb import fresh_wandb_session  # noqa: F401 - autouse fixture

KEY = "n" * 31 + "NETRCKEY0"


def test_the_netrc_entry_wandb_login_writes_is_found() -> None:
    # `wandb login` stores the key with this very function, for wandb's default server.
    write_netrc_auth(host=DEFAULT_BASE_URL, api_key=KEY)
    assert credentials.base_url() == DEFAULT_BASE_URL
    assert credentials.has_credentials()
    assert credentials.api_key() == KEY


def test_wandb_base_url_picks_the_server_and_its_netrc_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_netrc_auth(host="https://wandb.example.com", api_key=KEY)
    assert credentials.api_key() is None
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com/")
    assert credentials.base_url() == "https://wandb.example.com"
    assert credentials.api_key() == KEY
    assert credentials.app_url() == "https://wandb.example.com"  # wandb/local: UI on the same host


def test_the_environment_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    write_netrc_auth(host=DEFAULT_BASE_URL, api_key=KEY)
    monkeypatch.setenv("WANDB_API_KEY", "e" * 40)
    assert credentials.api_key() == "e" * 40


def test_no_credentials_is_a_clear_error_naming_both_ways_to_log_in() -> None:
    assert not credentials.has_credentials()
    with pytest.raises(BackendError) as info:
        credentials.require_credentials()
    assert "wandb login" in str(info.value) and "WANDB_API_KEY" in str(info.value)


def test_a_malformed_key_is_a_backend_error_and_still_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "short-secret")
    with pytest.raises(BackendError, match="unusable"):
        credentials.has_credentials()
    assert credentials.redact("sent short-secret") == "sent ***"
