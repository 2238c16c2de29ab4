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

import httpx
from azure.core.credentials import AccessToken, TokenCredential

from shared.common import is_loopback_url
from shared.errors import ConfigurationError, NonLoopbackGraphError
from shared.settings import Settings


class RefusedHostError(httpx.RequestError):
    """A request (a redirect, typically) to a host other than the configured Graph host."""


class GraphOriginTransport(httpx.AsyncBaseTransport):
    """Sends only to the configured Graph origin (scheme, host, port).

    It sits under msgraph-core's middleware, so it sees every attempt, redirects included: the
    RedirectHandler follows a 3xx to any host (it drops Authorization, but still sends the request
    and reads the answer as Graph's). Refusing here keeps the run from reading another host's
    answer as the tenant's, and the token from being sent with it. Settings restrict the origin
    to Microsoft Graph (managed identity) or loopback (local mode).
    """

    def __init__(self, base_url: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        url = httpx.URL(base_url)
        self._origin = (url.scheme, url.host, url.port)
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if (url.scheme, url.host, url.port) != self._origin:
            scheme, host, port = self._origin
            origin = f"{scheme}://{host}" + (f":{port}" if port else "")
            raise RefusedHostError(
                f"refused to send a Graph request to {url.scheme}://{url.netloc.decode()} (a "
                f"redirect?): only {origin} is called",
                request=request,
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class LocalSimulatorCredential:
    """A TokenCredential for the local Graph simulator only (loopback, development)."""

    def __init__(
        self, token_url: str, graph_base_url: str, roles: list[str], tenant_id: str | None = None
    ) -> None:
        for name, url in (("Graph URL", graph_base_url), ("simulator token URL", token_url)):
            if not is_loopback_url(url):
                raise NonLoopbackGraphError(
                    f"the local development credential only talks to loopback, but the {name} is "
                    f"{url!r}; in Azure use LICENSING_GRAPH_CREDENTIAL=managed-identity"
                )
        self._token_url = token_url
        self._roles = list(roles)
        self._tenant_id = tenant_id  # None: the simulator's default (home) tenant
        self._token: AccessToken | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # kiota passes enable_cae and similar keywords; they mean nothing to the simulator.
        if self._token and self._token.expires_on - 60 > time.time():
            return self._token
        body: dict[str, Any] = {"roles": self._roles}
        if self._tenant_id:
            body["tenantId"] = self._tenant_id
        request = urllib.request.Request(
            self._token_url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # loopback, checked above
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # Entra's token errors (unknown tenant, no consent) come as 400 with a description.
            raise ConfigurationError(
                f"the Graph simulator at {self._token_url} refused a token"
                + (f" for tenant {self._tenant_id}" if self._tenant_id else "")
                + f": {_token_error(exc)}"
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ConfigurationError(
                f"could not get a token from the Graph simulator at {self._token_url}: {exc}"
            ) from exc
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise ConfigurationError(f"the simulator at {self._token_url} answered without a token")
        self._token = AccessToken(token, int(time.time()) + int(answer.get("expires_in", 3600)))
        return self._token


def _token_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return str(body.get("error_description") or body.get("error") or f"HTTP {exc.code}")
    except (ValueError, OSError, AttributeError):
        return f"HTTP {exc.code}"


def credential_for(settings: Settings, roles: list[str]) -> TokenCredential:
    """The credential for the run's tenant (settings.tenant_id; None: the identity's own)."""
    if settings.graph_credential == "local-simulator":
        assert settings.sim_token_url is not None  # Settings enforces it
        return LocalSimulatorCredential(
            settings.sim_token_url, settings.graph_base_url, roles, settings.tenant_id
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
