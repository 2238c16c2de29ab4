"""localdev/front.py, the local stand-in for the Functions host: routes from the triggers' own
metadata, the function key, and the queue listener's retries and poison queue, over real HTTP and
a real Azurite queue."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

import function_app
from localdev.front import Front, host_queue_settings
from shared.queue import RunQueue, queue_client
from tests.integration.conftest import World
from tests.integration.test_function_app import app_world

__all__ = ["app_world"]


@pytest.fixture
def front(app_world: World) -> Iterator[Front]:
    served = Front(function_app.app, poll_interval_s=0.1).start()
    yield served
    served.stop()


def call(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # loopback only
            raw, status, out = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, out = err.read(), err.code, dict(err.headers)
    ctype = out.get("Content-Type", "")
    return status, out, json.loads(raw) if "json" in ctype else raw.decode()


def test_routes_methods_and_the_function_key_are_the_triggers_own(front: Front):
    key = {"x-functions-key": front.key}
    status, _, answer = call(f"{front.url}/nothing", headers=key)
    assert status == 404 and answer["error"]["code"] == "NotFound"
    status, headers, _ = call(f"{front.url}/runs", "DELETE", headers=key)
    assert status == 405 and headers["Allow"] == "GET, POST"
    status, headers, _ = call(f"{front.url}/status", "POST", {}, headers=key)
    assert status == 405 and headers["Allow"] == "GET"
    status, _, answer = call(f"{front.url}/runs")
    assert status == 401 and "x-functions-key" in answer["error"]["message"]
    assert call(f"{front.url}/runs?code=wrong")[0] == 401
    status, _, page = call(f"{front.url}/runs?code={front.key}")
    assert status == 200 and page["value"] == []
    status, headers, html = call(f"{front.url}/dashboard?code={front.key}")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Group licensing: seats" in html
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_a_queued_run_is_carried_out_by_the_queue_worker(front: Front, app_world: World):
    key = {"x-functions-key": front.key, "Content-Type": "application/json"}
    status, headers, queued = call(f"{front.url}/runs", "POST", {"mode": "apply"}, key)
    assert status == 202 and queued["status"] == "queued"
    assert headers["Location"] == f"{front.url}/runs/{queued['runId']}", "the URL the caller used"
    deadline = time.monotonic() + 60
    while True:
        run = call(queued["statusUrl"], headers=key)[2]
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert run["status"] == "succeeded", run
    assert app_world.licence_writes(), "the apply run assigned the demo tenant's licences"


def test_a_message_that_keeps_failing_is_retried_then_moved_to_the_poison_queue(
    azurite: Any, monkeypatch: pytest.MonkeyPatch
):
    queue = "front-" + secrets.token_hex(4)
    monkeypatch.setenv("FRONT_TEST_QUEUE", queue)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    app = func.FunctionApp()
    deliveries: list[int] = []

    @app.queue_trigger(
        arg_name="msg", queue_name="%FRONT_TEST_QUEUE%", connection="AzureWebJobsStorage"
    )
    async def always_fails(msg: QueueMessage) -> None:
        deliveries.append(msg.dequeue_count or 0)
        raise RuntimeError("this delivery fails")

    served = Front(app, poll_interval_s=0.05).start()
    try:
        RunQueue.from_env(queue).send_text('{"hello": 1}')
        poison = queue_client(f"{queue}-poison")
        deadline = time.monotonic() + 60
        moved: list[Any] = []
        while not moved and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                moved = list(poison.peek_messages(max_messages=5))
            except Exception:  # created by the listener on its first start
                moved = []
    finally:
        served.stop()
    max_dequeue, _ = host_queue_settings()
    assert deliveries == list(range(1, max_dequeue + 1)), "each delivery counted, as the host does"
    assert [m.content for m in moved] == ['{"hello": 1}']
    assert list(queue_client(queue).peek_messages()) == [], "not delivered again"
