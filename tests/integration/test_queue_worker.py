"""A run started over HTTP goes through a real Azurite queue to the queue-triggered worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

import function_app
from localdev.services import Azurite
from shared.queue import RunQueue, queue_client
from tests.integration.conftest import World
from tests.integration.test_function_app import app_world, get_run, post_run, principal

__all__ = ["app_world"]  # the fixture, shared with the function_app tests


@pytest.fixture
def queued(app_world: World, azurite: Azurite) -> Iterator[QueueClient]:
    client = queue_client(function_app.settings().run_queue)
    yield client
    client.close()


def deliver(client: QueueClient) -> tuple[func.QueueMessage, str]:
    """What the Functions host does: take the message, decode base64, call the function."""
    [message] = list(client.receive_messages(max_messages=5, visibility_timeout=60))
    text = message.content  # TextBase64DecodePolicy: the JSON the API sent
    msg = func.QueueMessage(id=message.id, body=text.encode(), pop_receipt=message.pop_receipt)
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


def test_malformed_messages_are_dropped_without_a_run(app_world: World, queued: QueueClient):
    RunQueue(queued)  # the queue exists once the API or the worker used it
    for raw in (
        b"not json",
        b'{"runId": "x", "mode": "plan"}',
        b'{"runId": "20991231T000000Z-abcdef", "mode": "plan"}',
    ):
        asyncio.run(function_app.run_worker(func.QueueMessage(id="m", body=raw)))
    assert app_world.requests() == []
    app_world.store.ensure_tables()
    assert app_world.store.list_runs(5) == []


def test_the_caller_who_queued_a_run_is_kept_on_it_after_the_worker_ran_it(
    app_world: World, queued: QueueClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")  # App Service Authentication vouches
    caller = {"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Operator", name="kim@contoso.com")}
    run_id = body(post_run({"mode": "plan"}, caller))["runId"]
    assert body(get_run(run_id))["requestedBy"] == "kim@contoso.com"  # while queued
    deliver(queued)
    finished = body(get_run(run_id))
    assert finished["status"] == "succeeded"
    assert finished["requestedBy"] == "kim@contoso.com"
