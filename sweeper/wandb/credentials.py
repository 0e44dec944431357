"""The W&B server and API key, as wandb itself resolves them.

wandb 0.31 resolves credentials in `wandb.sdk.lib.wbauth`: WANDB_API_KEY (or an identity
token file), else the netrc entry `wandb login` wrote for the server's host, else the key
in wandb's settings. The server is WANDB_BASE_URL, else wandb's settings, whose default is
`wandb.sdk.lib.urls.DEFAULT_BASE_URL`. Asking wandb keeps sweeper on the same key and host
as `wandb login` whatever wandb's default server becomes.
"""

from __future__ import annotations

import os
from typing import Any

from sweeper.errors import BackendError

LOGIN_HELP = (
    "Log in with `wandb login` (it stores the key in ~/.netrc) or set WANDB_API_KEY, "
    "or use --backend local."
)


def _settings() -> Any:
    from wandb.sdk import wandb_setup

    return wandb_setup.singleton().settings


def base_url() -> str:
    """The W&B server wandb talks to: WANDB_BASE_URL, else wandb's settings (its default
    server), without a trailing slash.

    >>> import os; os.environ.get("WANDB_BASE_URL") is not None or base_url().startswith("https://")
    True
    """
    from wandb import env

    return str(env.get_base_url(_settings().base_url)).rstrip("/")


def app_url() -> str:
    """The W&B web UI for `base_url()`: WANDB_APP_URL if set, else derived by wandb."""
    from wandb import util

    override = _settings().app_url_override
    return str(override or util.api_to_app_url(base_url())).rstrip("/")


def _auth() -> Any:
    """wandb's credentials for `base_url()`, or None; found without prompting or printing."""
    from wandb.errors import AuthenticationError
    from wandb.sdk.lib import wbauth

    try:
        return wbauth.authenticate_session(
            host=base_url(), source="sweeper", prompt=False, update_session=False
        )
    except AuthenticationError as exc:
        raise BackendError(f"wandb's credentials are unusable: {exc}. {LOGIN_HELP}") from None


def has_credentials() -> bool:
    """Whether wandb would log in to `base_url()` without asking: a key (env, netrc,
    settings) or an identity token file."""
    return _auth() is not None


def api_key() -> str | None:
    """The API key wandb would use for `base_url()`, or None (none, or an identity token)."""
    from wandb.sdk.lib import wbauth

    auth = _auth()
    return auth.api_key if isinstance(auth, wbauth.AuthApiKey) else None


def require_credentials() -> None:
    """Raise a BackendError saying how to log in unless wandb has credentials."""
    if not has_credentials():
        raise BackendError(
            f"The wandb backend needs W&B credentials for {base_url()} and none are "
            f"configured. {LOGIN_HELP}"
        )


def redact(text: str, key: str | None = None) -> str:
    """`text` with the API key (given, or the configured one) replaced by '***'.

    >>> redact("401 for key=abc123secret", "abc123secret")
    '401 for key=***'
    """
    keys = [key] if key is not None else [os.environ.get("WANDB_API_KEY"), _configured_key()]
    for secret in keys:
        if secret:
            text = text.replace(secret, "***")
    return text


def _configured_key() -> str | None:
    try:
        return api_key()
    except BackendError:  # a malformed key: WANDB_API_KEY above covers the usual source
        return None
