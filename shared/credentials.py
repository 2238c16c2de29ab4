"""Credentials for Microsoft Graph.

In Azure, for the implicit tenant (settings.tenant_id None): DefaultAzureCredential (the app's
managed identity; AZURE_CLIENT_ID picks a user-assigned one). For a customer tenant: the
multi-tenant app registration (LICENSING_MULTITENANT_APP_ID) with the managed identity as its
federated identity credential, so no secret or certificate exists anywhere (docs/decisions.md).
Locally: LocalSimulatorCredential, which gets tokens from the Graph simulator and refuses, before
any request, to serve a Graph URL or token endpoint that is not on loopback.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential

from shared.common import GUID_RE, is_loopback_url
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


# "Configure an application to trust a managed identity" (Microsoft Entra Workload ID): the
# managed identity's token for this audience is the app registration's client assertion. The
# app's federated identity credential names the same audience (infra/app/multitenant-app.bicep).
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
LOGIN_HOST = "login.microsoftonline.com"  # the Graph URL is global Graph's in Azure (infra)
MULTITENANT_KEY = "LICENSING_MULTITENANT_APP_ID"

_process_identity: TokenCredential | None = None
_process_identity_lock = threading.Lock()


def process_managed_identity() -> TokenCredential:
    """The app's managed identity, one credential per process: it caches the assertion token,
    which every customer tenant's credential uses (an instance may serve many tenants' runs)."""
    global _process_identity
    with _process_identity_lock:
        if _process_identity is None:
            from azure.identity import ManagedIdentityCredential

            # api.bicep sets AZURE_CLIENT_ID to the user-assigned identity, the federated
            # credential's subject; without it, the system-assigned identity is asked.
            _process_identity = ManagedIdentityCredential(
                client_id=os.environ.get("AZURE_CLIENT_ID") or None
            )
        return _process_identity


def managed_identity_assertion(identity: TokenCredential) -> Callable[[], str]:
    """The client assertion ClientAssertionCredential asks for: the identity's exchange token."""

    def assertion() -> str:
        try:
            return identity.get_token(TOKEN_EXCHANGE_SCOPE).token
        except ClientAuthenticationError as exc:
            raise ConfigurationError(
                "the managed identity could not give the token-exchange assertion "
                f"({TOKEN_EXCHANGE_SCOPE}; AZURE_CLIENT_ID="
                f"{os.environ.get('AZURE_CLIENT_ID') or '(unset: system-assigned)'}): "
                f"{exc.message}"
            ) from exc

    return assertion


class TenantAppCredential(ClientAssertionCredential):
    """The multi-tenant app in one customer tenant, authenticated by the managed identity's
    assertion. A refused token says which tenant and app, and where the admin consents."""

    def __init__(
        self, tenant_id: str, app_id: str, identity: TokenCredential, **kwargs: Any
    ) -> None:
        super().__init__(
            tenant_id=tenant_id,
            client_id=app_id,
            func=managed_identity_assertion(identity),
            **kwargs,
        )
        self.tenant_id = tenant_id
        self.app_id = app_id

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            return super().get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:
            raise self._refused(exc) from exc

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        try:
            return super().get_token_info(*scopes, options=options)
        except ClientAuthenticationError as exc:
            raise self._refused(exc) from exc

    def _refused(self, exc: ClientAuthenticationError) -> ConfigurationError:
        # AADSTS700016 (app not in the directory) and AADSTS7000229 (no service principal) mean
        # nobody consented there yet; the text of the answer says which it was.
        return ConfigurationError(
            f"Microsoft Entra refused a token for tenant {self.tenant_id} (app {self.app_id}): "
            f"{exc.message}. If the tenant's administrator has not consented yet, they open "
            f"{admin_consent_url(self.app_id, self.tenant_id)}"
        )


def credential_for(
    settings: Settings, roles: list[str], *, managed_identity: TokenCredential | None = None
) -> TokenCredential:
    """The credential for the run's tenant (settings.tenant_id; None: the identity's own).

    `managed_identity`: the assertion's source for a customer tenant; None: the process's one."""
    if settings.graph_credential == "local-simulator":
        assert settings.sim_token_url is not None  # Settings enforces it
        return LocalSimulatorCredential(
            settings.sim_token_url, settings.graph_base_url, roles, settings.tenant_id
        )
    if settings.tenant_id is None:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()
    if not settings.multitenant_app_id:
        name = f" ({settings.tenant_name})" if settings.tenant_name else ""
        raise ConfigurationError(
            f"tenant {settings.tenant_id}{name} needs {MULTITENANT_KEY}, the multi-tenant app "
            "registration its administrator consents to: deploy with multiTenant=true "
            "(docs/deploy.md, Many tenants); the managed identity alone reaches only its own tenant"
        )
    return TenantAppCredential(
        settings.tenant_id,
        settings.multitenant_app_id,
        managed_identity or process_managed_identity(),
    )


# A tenant as Entra's URLs take it: its id, or one of its verified domain names.
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}$"
)


def admin_consent_url(app_id: str, tenant_id: str, redirect_uri: str | None = None) -> str:
    """Where a tenant's administrator grants the app its permissions there, tenant-wide.

    "Grant tenant-wide admin consent to an application", Construct the URL:
    https://login.microsoftonline.com/{organization}/adminconsent?client_id={client-id}, with the
    tenant id or a verified domain. It grants the permissions the app registration lists
    (requiredResourceAccess) and creates its service principal in that tenant. `redirect_uri` must
    be one the app registers; None: Entra returns to the app's registered one."""
    # fullmatch: `$` alone lets a trailing newline through into the URL.
    if not GUID_RE.fullmatch(app_id or ""):
        raise ConfigurationError(f"the app id {app_id!r} is not a GUID ({MULTITENANT_KEY})")
    if not (GUID_RE.fullmatch(tenant_id or "") or _DOMAIN_RE.fullmatch(tenant_id or "")):
        raise ConfigurationError(
            f"the tenant {tenant_id!r} is neither a tenant id (GUID) nor a domain name"
        )
    query = {"client_id": app_id.lower()}
    if redirect_uri:
        query["redirect_uri"] = redirect_uri
    return f"https://{LOGIN_HOST}/{tenant_id.lower()}/adminconsent?{urlencode(query)}"
