"""Throttling (RU bucket per app, write limit, headers, time scale), faults (error rates, slow,
truncated and dropped answers) and $batch extras (per-item 429, the SDK's depends_on)."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request

import pytest

from tests.simulator.conftest import TENANT_ID, Client, gid, serve, small_tenant, uid


def test_usage_header_above_80_percent_and_429_headers() -> None:
    server = serve(small_tenant(), ru_limit=10)
    try:
        client = Client(server)
        first = client.get("/v1.0/subscribedSkus")  # 3 RU of 10: no usage header
        assert first.status == 200 and "x-ms-throttle-limit-percentage" not in first.headers
        assert client.get("/v1.0/subscribedSkus").status == 200  # 6 of 10
        third = client.get("/v1.0/subscribedSkus")  # 9 of 10
        assert third.headers["x-ms-throttle-limit-percentage"] == "0.90"
        throttled = client.get("/v1.0/subscribedSkus")
        assert throttled.status == 429 and throttled.json["error"]["code"] == "TooManyRequests"
        assert int(throttled.headers["Retry-After"]) >= 1
        scope = throttled.headers["x-ms-throttle-scope"]
        assert scope.startswith("Tenant_Application/ReadWrite/") and scope.endswith(TENANT_ID)
        assert throttled.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    finally:
        server.stop()


def test_buckets_are_per_app() -> None:
    server = serve(small_tenant(), ru_limit=3)
    try:
        client = Client(server)
        assert client.get("/v1.0/subscribedSkus").status == 200
        assert client.get("/v1.0/subscribedSkus").status == 429
        other = client.call(
            "POST",
            "/_sim/token",
            body={"roles": ["LicenseAssignment.Read.All"], "appId": "other-app"},
            auth=None,
        ).json["access_token"]
        assert client.get("/v1.0/subscribedSkus", auth=f"Bearer {other}").status == 200
    finally:
        server.stop()


def test_write_limit() -> None:
    server = serve(small_tenant(), write_limit=2)
    try:
        client = Client(server)
        path = f"/v1.0/users/{uid(1)}/reprocessLicenseAssignment"
        assert [client.post(path).status for _ in range(2)] == [200, 200]
        blocked = client.post(path)
        assert blocked.status == 429
        assert blocked.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
        assert blocked.headers["x-ms-throttle-scope"].startswith("Tenant_Application/Write/")
        assert client.get(f"/v1.0/users/{uid(1)}").status == 200  # reads still pass
    finally:
        server.stop()


def test_time_scale_shortens_the_windows() -> None:
    # 10 s window at scale 100 = 0.1 s: the bucket refills within a fraction of a second.
    server = serve(small_tenant(), ru_limit=3, time_scale=100)
    try:
        client = Client(server)
        assert client.get("/v1.0/subscribedSkus").status == 200
        denied = client.get("/v1.0/subscribedSkus")
        assert denied.status == 429 and int(denied.headers["x-ms-sim-retry-after-ms"]) <= 100
        time.sleep(0.12)
        assert client.get("/v1.0/subscribedSkus").status == 200
    finally:
        server.stop()


def test_config_changes_limits_live(client: Client) -> None:
    reply = client.call("PATCH", "/_sim/config", body={"ruLimit": 1, "latencyMs": 0}, auth=None)
    assert reply.status == 200 and reply.json["ruLimit"] == 1
    assert client.get("/v1.0/groups").status == 200
    assert client.get("/v1.0/groups").status == 429
    bad = client.call("PATCH", "/_sim/config", body={"ruLimit": -1}, auth=None)
    assert bad.status == 400


def test_batch_items_are_throttled_one_by_one_and_depends_on_spelling() -> None:
    server = serve(small_tenant(), ru_limit=4)
    try:
        client = Client(server)
        body = {
            "requests": [
                {"id": "a", "method": "GET", "url": "/subscribedSkus"},  # 3 RU
                {"id": "b", "method": "GET", "url": "/subscribedSkus"},  # throttled
                {"id": "c", "method": "GET", "url": "/groups", "depends_on": ["b"]},
            ]
        }
        reply = client.post("/v1.0/$batch", body)
        assert reply.status == 200
        items = {r["id"]: r for r in reply.json["responses"]}
        assert items["a"]["status"] == 200
        assert items["b"]["status"] == 429 and "Retry-After" in items["b"]["headers"]
        assert items["c"]["status"] == 424
    finally:
        server.stop()


def test_error_rate_is_seeded() -> None:
    def run() -> list[int]:
        server = serve(small_tenant(), seed=5)
        try:
            client = Client(server)
            fault = {"path": "/groups$", "probability": 0.5, "status": 503}
            assert client.call("POST", "/_sim/faults", body=fault, auth=None).status == 201
            return [client.get("/v1.0/groups").status for _ in range(20)]
        finally:
            server.stop()

    first = run()
    assert set(first) == {200, 503} and first == run()


def test_slow_response(client: Client) -> None:
    fault = {"path": "/subscribedSkus", "mode": "slow", "delayMs": 150}
    client.call("POST", "/_sim/faults", body=fault, auth=None)
    start = time.monotonic()
    assert client.get("/v1.0/subscribedSkus").status == 200
    assert time.monotonic() - start >= 0.15
    start = time.monotonic()
    client.get("/v1.0/subscribedSkus")
    assert time.monotonic() - start < 0.15  # count 1 by default


def test_truncated_page_and_dropped_connection(client: Client) -> None:
    token = client.token(("GroupMember.Read.All",))
    client.call("POST", "/_sim/faults", body={"path": "/members", "mode": "truncate"}, auth=None)
    req = urllib.request.Request(
        f"{client.url}/v1.0/groups/{gid(2)}/members", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(http.client.IncompleteRead), urllib.request.urlopen(req, timeout=5) as r:
        r.read()
    client.call("POST", "/_sim/faults", body={"path": "/members", "mode": "drop"}, auth=None)
    with pytest.raises((urllib.error.URLError, http.client.RemoteDisconnected, ConnectionError)):
        urllib.request.urlopen(req, timeout=5)
    assert client.get(f"/v1.0/groups/{gid(2)}/members").status == 200


def test_next_link_that_fails(client: Client) -> None:
    fault = {"path": r"\$skiptoken=", "status": 500}
    client.call("POST", "/_sim/faults", body=fault, auth=None)
    first = client.get(f"/v1.0/groups/{gid(2)}/members?$top=2")
    assert first.status == 200
    assert client.get(first.json["@odata.nextLink"]).status == 500
    assert client.get(first.json["@odata.nextLink"]).status == 200
