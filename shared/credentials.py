"""Credentials for Microsoft Graph.

In Azure: DefaultAzureCredential (the app's managed identity; AZURE_CLIENT_ID picks a
user-assigned one). Locally: LocalSimulatorCredential, which gets tokens from the Graph simulator
and refuses, before any request, to serve a Graph URL or token endpoint that is not on loopback.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from shared.errors import ConfigurationError, NonLoopbackGraphError
from shared.settings import Settings, is_loopback_url


class LocalSimulatorCredential:
    """A TokenCredential for the local Graph simulator only (loopback, development)."""

    def __init__(self, token_url: str, graph_base_url: str, roles: list[str]) -> None:
        for name, url in (("Graph URL", graph_base_url), ("simulator token URL", token_url)):
            if not is_loopback_url(url):
                raise NonLoopbackGraphError(
                    f"the local development credential only talks to loopback, but the {name} is "
                    f"{url!r}; in Azure use LICENSING_GRAPH_CREDENTIAL=managed-identity"
                )
        self._token_url = token_url
        self._roles = list(roles)
        self._token: AccessToken | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # kiota passes enable_cae and similar keywords; they mean nothing to the simulator.
        if self._token and self._token.expires_on - 60 > time.time():
            return self._token
        request = urllib.request.Request(
            self._token_url,
            data=json.dumps({"roles": self._roles}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # loopback, checked above
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ConfigurationError(
                f"could not get a token from the Graph simulator at {self._token_url}: {exc}"
            ) from exc
        token = body.get("access_token")
        if not isinstance(token, str):
            raise ConfigurationError(f"the simulator at {self._token_url} answered without a token")
        self._token = AccessToken(token, int(time.time()) + int(body.get("expires_in", 3600)))
        return self._token


def credential_for(settings: Settings, roles: list[str]) -> TokenCredential:
    if settings.graph_credential == "local-simulator":
        assert settings.sim_token_url is not None  # Settings enforces it
        return LocalSimulatorCredential(settings.sim_token_url, settings.graph_base_url, roles)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
