"""The latency model: flat (every answer the same) or proportional (base + per object), seeded
jitter, switched live through /_sim/config, recorded in the request log."""

from __future__ import annotations

import time

from tests.simulator.conftest import Client, gid, serve, small_tenant


def _log(client: Client) -> list[dict[str, object]]:
    value: list[dict[str, object]] = client.get("/_sim/requests", auth=None).json["value"]
    return value


def test_flat_model_gives_every_answer_the_same_delay() -> None:
    server = serve(small_tenant(), latency_ms=40, latency_jitter_ms=0)
    try:
        client = Client(server)
        started = time.perf_counter()
        users = client.get("/v1.0/users")
        took = time.perf_counter() - started
        one = client.get("/v1.0/users?$top=1")
        assert users.status == one.status == 200
        assert took >= 0.04
        log = _log(client)
        assert [r["latencyMs"] for r in log] == [40.0, 40.0]
        assert [r["objects"] for r in log] == [len(users.json["value"]), 1]
    finally:
        server.stop()


def test_proportional_model_scales_with_the_objects_returned() -> None:
    server = serve(small_tenant(), latency_ms=10, latency_per_item_ms=20, latency_jitter_ms=0)
    try:
        client = Client(server)
        started = time.perf_counter()
        users = client.get("/v1.0/users")
        took = time.perf_counter() - started
        n = len(users.json["value"])
        assert n >= 5
        assert took >= (10 + 20 * n) / 1000
        client.get("/v1.0/users?$top=1")
        client.get(f"/v1.0/groups/{gid(404)}")  # an error carries no objects
        log = _log(client)
        assert [r["latencyMs"] for r in log] == [10.0 + 20 * n, 30.0, 10.0]
        assert [r["objects"] for r in log] == [n, 1, 0]
    finally:
        server.stop()


def test_batch_envelope_takes_the_time_of_all_its_items() -> None:
    server = serve(small_tenant(), latency_ms=5, latency_per_item_ms=10, latency_jitter_ms=0)
    try:
        client = Client(server)
        body = {
            "requests": [
                {"id": "a", "method": "GET", "url": "/users?$top=2"},
                {"id": "b", "method": "GET", "url": "/users?$top=3"},
            ]
        }
        assert client.post("/v1.0/$batch", body).status == 200
        log = _log(client)
        items = [r for r in log if r["batch"]]
        envelope = next(r for r in log if r["path"] == "/v1.0/$batch")
        assert [r["latencyMs"] for r in items] == [0.0, 0.0]
        assert envelope["objects"] == 5 and envelope["latencyMs"] == 55.0
    finally:
        server.stop()


def test_jitter_is_seeded_and_spreads_the_whole_delay() -> None:
    def delays(seed: int) -> list[float]:
        server = serve(small_tenant(), latency_ms=1, latency_per_item_ms=1, seed=seed)
        try:
            client = Client(server)
            for _ in range(8):
                client.get("/v1.0/users?$top=3")
            return [float(str(r["latencyMs"])) for r in _log(client)]
        finally:
            server.stop()

    first, again, other = delays(3), delays(3), delays(4)
    assert first == again
    assert first != other
    assert all(3.0 <= d <= 5.0 for d in first)  # 4 ms +-25 %
    assert len(set(first)) > 1


def test_model_switches_live_and_refuses_bad_values() -> None:
    server = serve(small_tenant(), latency_jitter_ms=0)
    try:
        client = Client(server)
        assert client.get("/_sim/config", auth=None).json["latencyPerItemMs"] == 0
        reply = client.call(
            "PATCH", "/_sim/config", body={"latencyMs": 2, "latencyPerItemMs": 3}, auth=None
        )
        assert reply.status == 200 and reply.json["latencyPerItemMs"] == 3
        client.get("/v1.0/users?$top=2")
        assert _log(client)[-1]["latencyMs"] == 8.0
        bad = client.call("PATCH", "/_sim/config", body={"latencyPerItemMs": -1}, auth=None)
        assert bad.status == 400 and "latencyPerItemMs" in bad.text
        assert client.get("/_sim/config", auth=None).json["latencyPerItemMs"] == 3
    finally:
        server.stop()
