"""The development credential never lets a token leave loopback."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.identity import (
    ClientAssertionCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)

from shared import credentials
from shared.common import is_loopback_url
from shared.credentials import (
    TOKEN_EXCHANGE_SCOPE,
    LocalSimulatorCredential,
    TenantAppCredential,
    admin_consent_url,
    credential_for,
)
from shared.errors import ConfigurationError, GraphReadError, NonLoopbackGraphError
from shared.graph import GraphClient
from shared.settings import Settings


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


class FixedToken:
    """A TokenCredential with a known token, to see where it is sent."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("secret-token", int(time.time()) + 3600)


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with `answer(self)`; records path and Authorization."""

    seen: list[tuple[str, str | None]]
    answer: Any

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        type(self).answer(self)

    def log_message(self, *args: Any) -> None:
        pass


def serve(answer: Any) -> tuple[ThreadingHTTPServer, list[tuple[str, str | None]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (Recorder,), {"seen": seen, "answer": staticmethod(answer)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_graph_redirect_to_another_host_is_refused_and_carries_no_token():
    """Local mode: the simulator's address 302s to another loopback host (localhost); in Azure it
    would be a non-Graph host. Neither the request nor the token may follow."""

    def elsewhere(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()
        h.wfile.write(b'{"value": []}')

    other, other_seen = serve(elsewhere)

    def redirect(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", f"http://localhost:{other.server_port}{h.path}")
        h.send_header("Content-Length", "0")
        h.end_headers()

    graph, graph_seen = serve(redirect)
    try:
        client = GraphClient(FixedToken(), f"http://127.0.0.1:{graph.server_port}/v1.0")

        async def read() -> None:
            try:
                await client.list_skus()
            finally:
                await client.close()

        with pytest.raises(GraphReadError) as info:
            asyncio.run(read())
    finally:
        graph.shutdown()
        other.shutdown()
    assert graph_seen and graph_seen[0][1] == "Bearer secret-token"
    assert other_seen == [], "the redirect was followed"
    assert "localhost" in str(info.value) and "refused" in str(info.value)


def test_in_azure_a_redirect_off_the_graph_host_is_refused_before_any_connection():
    calls: list[str] = []

    def graph(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"Location": "https://collector.example.net/steal"})

    client = GraphClient(
        FixedToken(), "https://graph.microsoft.com/v1.0", transport=httpx.MockTransport(graph)
    )

    async def read() -> None:
        try:
            await client.list_skus()
        finally:
            await client.close()

    with pytest.raises(GraphReadError, match=r"collector\.example\.net"):
        asyncio.run(read())
    assert [urlsplit(u).hostname for u in calls] == ["graph.microsoft.com"]


# --- Customer tenants: the multi-tenant app with the managed identity as its credential -------

CUSTOMER = "3d1e2be9-a10a-4a0c-8380-7ce190f98ed9"
APP = "a7d388c3-5e3f-4959-ac7d-786b3383006a"
AZURE_ENV = {"LICENSING_TABLES_ENDPOINT": "https://stexample.table.core.windows.net/"}


class FakeIdentity:
    """Stands in for ManagedIdentityCredential: records the scopes it is asked for."""

    def __init__(self, token: str = "mi-exchange-token") -> None:
        self.token = token
        self.asked: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class FakeEntra(HttpTransport):
    """Answers the token endpoint without a network: records each request, answers `status`."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body or {"access_token": "graph-token", "expires_in": 3600}
        self.requests: list[HttpRequest] = []

    def __enter__(self) -> FakeEntra:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: HttpRequest, **kwargs: Any) -> Any:
        self.requests.append(request)
        return FakeResponse(request, self.status, json.dumps(self.body))


class FakeResponse:
    """What azure-core's pipeline and azure-identity read of a token endpoint's answer."""

    def __init__(self, request: HttpRequest, status: int, text: str) -> None:
        self.request = request
        self.status_code = status
        self.reason = "OK" if status == 200 else "Bad Request"
        self.headers = {"Content-Type": "application/json"}
        self.content_type = "application/json"
        self._text = text

    def text(self, encoding: str | None = None) -> str:
        return self._text

    def body(self) -> bytes:
        return self._text.encode()

    def close(self) -> None:
        pass


def _form(body: Any) -> dict[str, str]:
    """A form-encoded request body as a dict (azure-core keeps form fields as one until sent)."""
    if isinstance(body, dict):
        return {k: str(v) for k, v in body.items()}
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {k: v[0] for k, v in parse_qs(text).items()}


def _customer_settings(**env: str) -> Settings:
    settings = Settings.from_env({**AZURE_ENV, **env})
    return replace(settings, tenant_id=CUSTOMER, tenant_name="Fabrikam")


def test_a_customer_tenant_gets_the_multitenant_app_with_the_identity_as_its_credential():
    identity = FakeIdentity()
    cred = credential_for(
        _customer_settings(LICENSING_MULTITENANT_APP_ID=APP.upper()),
        ["User.Read.All"],
        managed_identity=identity,
    )
    assert isinstance(cred, ClientAssertionCredential)
    assert isinstance(cred, TenantAppCredential)
    assert (cred.tenant_id, cred.app_id) == (CUSTOMER, APP)  # the setting is read lowercase
    assert identity.asked == [], "no token is asked for before the run needs one"


def test_the_token_request_goes_to_the_customer_tenant_with_the_identity_assertion():
    identity, entra = FakeIdentity("mi-jwt"), FakeEntra()
    cred = TenantAppCredential(CUSTOMER, APP, identity, transport=entra)
    token = cred.get_token("https://graph.microsoft.com/.default")
    assert token.token == "graph-token"
    assert identity.asked == [(TOKEN_EXCHANGE_SCOPE,)]
    assert TOKEN_EXCHANGE_SCOPE == "api://AzureADTokenExchange/.default"
    (request,) = entra.requests
    assert request.url == f"https://login.microsoftonline.com/{CUSTOMER}/oauth2/v2.0/token"
    form = _form(request.body)
    assert form["client_id"] == APP
    assert form["client_assertion"] == "mi-jwt"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_secret" not in form
    # The tenant's token is cached: the next call asks neither Entra nor the identity.
    cred.get_token("https://graph.microsoft.com/.default")
    assert len(entra.requests) == 1 and len(identity.asked) == 1


def test_a_tenant_that_has_not_consented_is_named_with_its_consent_url():
    entra = FakeEntra(
        400,
        {
            "error": "unauthorized_client",
            "error_description": f"AADSTS700016: Application with identifier '{APP}' was not "
            f"found in the directory '{CUSTOMER}'.",
        },
    )
    cred = TenantAppCredential(CUSTOMER, APP, FakeIdentity(), transport=entra)
    with pytest.raises(ConfigurationError) as info:
        cred.get_token("https://graph.microsoft.com/.default")
    text = str(info.value)
    assert CUSTOMER in text and APP in text and "AADSTS700016" in text
    assert admin_consent_url(APP, CUSTOMER) in text


def test_an_identity_that_cannot_give_the_assertion_is_named():
    class NoIdentity:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise CredentialUnavailableError("no managed identity endpoint")

    entra = FakeEntra()
    cred = TenantAppCredential(CUSTOMER, APP, NoIdentity(), transport=entra)
    with pytest.raises(ConfigurationError, match=r"managed identity.*AzureADTokenExchange"):
        cred.get_token("https://graph.microsoft.com/.default")
    assert entra.requests == [], "nothing is sent to Entra without an assertion"


def test_a_customer_tenant_without_the_app_setting_is_a_configuration_error():
    with pytest.raises(ConfigurationError) as info:
        credential_for(_customer_settings(), ["User.Read.All"], managed_identity=FakeIdentity())
    assert "LICENSING_MULTITENANT_APP_ID" in str(info.value)
    assert CUSTOMER in str(info.value) and "Fabrikam" in str(info.value)


def test_the_implicit_tenant_keeps_the_default_credential():
    settings = Settings.from_env({**AZURE_ENV, "LICENSING_MULTITENANT_APP_ID": APP})
    assert settings.tenant_id is None
    cred = credential_for(settings, ["User.Read.All"], managed_identity=FakeIdentity())
    assert isinstance(cred, DefaultAzureCredential)


def test_the_process_has_one_managed_identity_the_user_assigned_one(monkeypatch):
    monkeypatch.setattr(credentials, "_process_identity", None)
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    first = credentials.process_managed_identity()
    assert isinstance(first, ManagedIdentityCredential)
    assert credentials.process_managed_identity() is first
    for tenant in (CUSTOMER, "5e3f4959-ac7d-786b-3383-006aa7d388c3"):
        settings = replace(_customer_settings(LICENSING_MULTITENANT_APP_ID=APP), tenant_id=tenant)
        cred = credential_for(settings, [])
        assert isinstance(cred, TenantAppCredential) and cred.tenant_id == tenant


def test_the_admin_consent_url_is_microsofts_documented_form():
    assert admin_consent_url(APP, CUSTOMER) == (
        f"https://login.microsoftonline.com/{CUSTOMER}/adminconsent?client_id={APP}"
    )
    assert admin_consent_url(APP.upper(), "fabrikam.onmicrosoft.com") == (
        f"https://login.microsoftonline.com/fabrikam.onmicrosoft.com/adminconsent?client_id={APP}"
    )
    assert admin_consent_url(
        APP, CUSTOMER, redirect_uri="https://func-api-x.azurewebsites.net/"
    ) == (
        f"https://login.microsoftonline.com/{CUSTOMER}/adminconsent?client_id={APP}"
        "&redirect_uri=https%3A%2F%2Ffunc-api-x.azurewebsites.net%2F"
    )


@pytest.mark.parametrize(
    ("app_id", "tenant", "named"),
    [
        ("not-a-guid", CUSTOMER, "app id"),
        (APP, "../common", "tenant"),
        (APP, "", "tenant"),
        (APP, "evil.example/x?y=", "tenant"),
        (APP, "fabrikam.onmicrosoft.com\n", "tenant"),
        (APP + "\n", CUSTOMER, "app id"),
    ],
)
def test_the_consent_url_refuses_what_is_not_an_app_id_or_tenant(app_id, tenant, named):
    with pytest.raises(ConfigurationError, match=named):
        admin_consent_url(app_id, tenant)


def test_a_graph_read_for_a_tenant_without_consent_stops_with_the_consent_url():
    """What the run records: Entra's refusal and where to consent, before any Graph request."""
    sent: list[str] = []

    def graph(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, json={"value": []})

    entra = FakeEntra(400, {"error": "invalid_client", "error_description": "AADSTS700016: no"})
    cred = TenantAppCredential(CUSTOMER, APP, FakeIdentity(), transport=entra)
    client = GraphClient(
        cred, "https://graph.microsoft.com/v1.0", transport=httpx.MockTransport(graph)
    )

    async def read() -> None:
        try:
            await client.list_skus()
        finally:
            await client.close()

    with pytest.raises(ConfigurationError, match=re.escape(admin_consent_url(APP, CUSTOMER))):
        asyncio.run(read())
    assert sent == [], "no Graph request without a token"
    assert len(entra.requests) == 1
