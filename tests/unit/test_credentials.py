"""The development credential never lets a token leave loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from azure.core.credentials import AccessToken

from shared.common import is_loopback_url
from shared.credentials import LocalSimulatorCredential, credential_for
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
