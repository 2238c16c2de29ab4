"""The development credential never lets a token leave loopback."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.credentials import LocalSimulatorCredential, credential_for
from shared.errors import ConfigurationError, NonLoopbackGraphError
from shared.settings import Settings, is_loopback_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1.0",
        "http://localhost/v1.0",
        "http://[::1]:9/v1.0",
        "http://127.3.4.5/v1.0",
    ],
)
def test_loopback_urls_are_accepted(url: str):
    assert is_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.microsoft.com/v1.0",
        "http://10.0.0.5/v1.0",
        "http://192.168.1.10/v1.0",
        "http://localhost.evil.example/v1.0",
        "http:///v1.0",
    ],
)
def test_non_loopback_urls_are_refused(url: str):
    assert not is_loopback_url(url)
    with pytest.raises(NonLoopbackGraphError) as info:
        LocalSimulatorCredential("http://127.0.0.1:1/_sim/token", url, ["User.Read.All"])
    assert "loopback" in str(info.value)


def test_token_endpoint_must_be_loopback_too():
    with pytest.raises(NonLoopbackGraphError):
        LocalSimulatorCredential("https://login.example.com/token", "http://127.0.0.1:1/v1.0", [])


def test_settings_pointing_the_local_credential_at_real_graph_are_refused():
    """Refused twice: by the settings, and by the credential should settings be bypassed."""
    env = {
        "LICENSING_TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true",
        "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
        "LICENSING_SIM_TOKEN_URL": "http://127.0.0.1:1/_sim/token",
    }
    with pytest.raises(ConfigurationError, match=r"LICENSING_GRAPH_BASE_URL.*loopback"):
        Settings.from_env(env)
    local = Settings.from_env({**env, "LICENSING_GRAPH_BASE_URL": "http://127.0.0.1:1/v1.0"})
    bypassed = replace(local, graph_base_url="https://graph.microsoft.com/v1.0")
    with pytest.raises(NonLoopbackGraphError):
        credential_for(bypassed, ["GroupMember.Read.All"])
