"""A run started over HTTP goes through a real Azurite queue to the queue-triggered worker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient
from azure.functions.queue import QueueMessage  # what the host's queue binding hands the function
from azure.storage.queue import QueueClient

import function_app
from localdev.services import Azurite
from shared.queue import MAX_DEQUEUE_COUNT, RunQueue, poison_queue_name, queue_client
from tests.integration.conftest import World
from tests.integration.test_function_app import app_world, get, get_run, post_run, principal

TABLES = "LICENSING_TABLES_CONNECTION_STRING"
__all__ = ["app_world"]  # the fixture, shared with the function_app tests


@pytest.fixture
def queued(app_world: World, azurite: Azurite) -> Iterator[QueueClient]:
    client = queue_client(function_app.settings().run_queue)
    yield client
    client.close()


def deliver(client: QueueClient) -> tuple[QueueMessage, str]:
    """What the Functions host does: take the message, decode base64, call the function."""
    [message] = list(client.receive_messages(max_messages=5, visibility_timeout=60))
    text = message.content  # TextBase64DecodePolicy: the JSON the API sent
    msg = QueueMessage(
        id=message.id,
        body=text.encode(),
        pop_receipt=message.pop_receipt,
        dequeue_count=message.dequeue_count,
    )
    asyncio.run(function_app.run_worker(msg))
    client.delete_message(message)
    return msg, text


def body(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def test_queued_apply_run_is_carried_out_by_the_worker_and_readable_at_its_status_url(
    app_world: World, queued: QueueClient
):
    accepted = post_run({"mode": "apply"})
    assert accepted.status_code == 202
    run_id = body(accepted)["runId"]
    assert app_world.writes() == []

    msg, text = deliver(queued)
    assert json.loads(text) == {
        "runId": run_id,
        "mode": "apply",
        "groupIds": None,
        "requestedBy": "",
    }
    finished = body(get_run(run_id))
    assert finished["status"] in ("succeeded", "partial") and finished["mode"] == "apply"
    assert finished["trigger"] == "http" and finished["groups"] and finished["skus"]
    assert app_world.licence_writes(), "the worker applied the demo tenant's plan"
    assert [r["RunId"] for r in app_world.store.list_runs(5)] == [run_id]

    # The same message delivered again (a retry) does not run again.
    before = len(app_world.requests())
    asyncio.run(function_app.run_worker(msg))
    assert len(app_world.requests()) == before
    assert body(get_run(run_id))["finishedAt"] == finished["finishedAt"]


def test_queued_run_keeps_its_group_filter(app_world: World, queued: QueueClient):
    gid = app_world.group("LIC-Partners-E5")["id"]
    run_id = body(post_run({"mode": "plan", "groupIds": [gid]}))["runId"]
    deliver(queued)
    finished = body(get_run(run_id))
    assert [g["groupId"] for g in finished["groups"]] == [gid.lower()]
    assert finished["groups"][0]["decision"] == "blocked-guests"


def poison_messages(app_world: World) -> list[str]:
    client = queue_client(poison_queue_name(function_app.settings().run_queue))
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    finally:
        client.close()


def test_malformed_messages_go_to_the_poison_queue_without_a_run(
    app_world: World, queued: QueueClient
):
    RunQueue(queued)  # the queue exists once the API or the worker used it
    raw = (
        "not json",
        '{"runId": "x", "mode": "plan"}',
        '{"runId": "20991231T000000Z-abcdef", "mode": "destroy"}',
    )
    for text in raw:
        asyncio.run(function_app.run_worker(func.QueueMessage(id="m", body=text.encode())))
    assert app_world.requests() == []
    app_world.store.ensure_tables()
    assert app_world.store.list_runs(5) == []
    assert poison_messages(app_world) == list(raw), "kept for an operator to read or replay"


def test_a_redelivered_message_closes_the_run_its_dead_worker_left_running(
    app_world: World, queued: QueueClient
):
    run_id = body(post_run({"mode": "plan"}))["runId"]
    # The first worker claimed the run and died before it began (no liveness row, no lease).
    assert app_world.store.claim_queued_run(run_id)
    [message] = list(queued.receive_messages(max_messages=5, visibility_timeout=60))
    redelivered = QueueMessage(
        id=message.id, body=message.content.encode(), dequeue_count=message.dequeue_count + 1
    )
    asyncio.run(function_app.run_worker(redelivered))
    shown = body(get_run(run_id))
    assert shown["status"] == "failed"
    assert "worker running it stopped before it finished" in shown["error"]
    assert app_world.requests() == [], "a run that may have written is not started twice"


def test_a_run_failing_on_its_last_delivery_says_its_message_goes_to_the_poison_queue(
    app_world: World, queued: QueueClient
):
    run_id = body(post_run({"mode": "plan"}))["runId"]
    [message] = list(queued.receive_messages(max_messages=5, visibility_timeout=60))
    last = QueueMessage(
        id=message.id, body=message.content.encode(), dequeue_count=MAX_DEQUEUE_COUNT
    )
    app_world.sim.admin("PATCH", "/_sim/config", {"latencyMs": 400})
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            asyncio.run(function_app.run_worker(last))
        except Exception as exc:  # what the host sees; it then moves the message to -poison
            failures.append(exc)

    runner = threading.Thread(target=worker)
    runner.start()
    deadline = time.monotonic() + 20
    while not app_world.requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Storage loses the group-results table mid-run: recording the run fails on every delivery.
    service = TableServiceClient.from_connection_string(app_world.env[TABLES])
    service.delete_table(app_world.store.names["groups"])
    runner.join(timeout=60)
    assert not runner.is_alive() and failures, "the invocation failed, as the host must see"
    row = app_world.store.get_run(run_id)  # the run row (its group results table is gone)
    assert row is not None and row["Status"] == "failed"
    poison = poison_queue_name(function_app.settings().run_queue)
    assert row["PoisonQueue"] == poison
    assert f"delivery {MAX_DEQUEUE_COUNT} of {MAX_DEQUEUE_COUNT} failed" in row["Error"]
    assert f"moves its message to the queue {poison}" in row["Error"]
    [item] = [r for r in body(get("runs"))["value"] if r["runId"] == run_id]
    assert item["poisonQueue"] == poison, "the run list says where its message went"


def test_the_caller_who_queued_a_run_is_kept_on_it_after_the_worker_ran_it(
    app_world: World, queued: QueueClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")  # App Service Authentication vouches
    function_app.settings.cache_clear()  # settings are parsed once per worker
    caller = {"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Operator", name="kim@contoso.com")}
    reader = principal("Licensing.Reader", name="lee@contoso.com")
    run_id = body(post_run({"mode": "plan"}, caller))["runId"]
    assert body(get_run(run_id, reader))["requestedBy"] == "kim@contoso.com"  # while queued
    deliver(queued)
    finished = body(get_run(run_id, reader))
    assert finished["status"] == "succeeded"
    assert finished["requestedBy"] == "kim@contoso.com"
