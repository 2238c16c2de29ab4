"""function_app's functions called directly with real azure.functions objects (no host)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import function_app
from shared.run import read_run
from tests.integration.conftest import World


@pytest.fixture
def app_world(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    function_app.settings.cache_clear()
    yield world
    function_app.settings.cache_clear()


def post_run(body: Any) -> func.HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = func.HttpRequest(
        "POST",
        "http://localhost/api/runs",
        headers={"Content-Type": "application/json"},
        params={},
        route_params={},
        body=raw,
    )
    return asyncio.run(function_app.start_run(req))


def get_run(run_id: str) -> func.HttpResponse:
    req = func.HttpRequest(
        "GET",
        f"http://localhost/api/runs/{run_id}",
        headers={},
        params={},
        route_params={"runId": run_id},
        body=b"",
    )
    return function_app.get_run(req)


def test_every_function_is_registered_with_its_trigger():
    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    assert set(functions) == {"nightly_enforcement", "start_run", "get_run"}
    timer = functions["nightly_enforcement"].get_bindings()[0]
    assert timer.schedule == "%LICENSING_TIMER_SCHEDULE%"
    http = functions["start_run"].get_trigger()
    assert http.auth_level == func.AuthLevel.FUNCTION


def test_timer_runs_the_configured_mode_and_records_it(
    app_world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LICENSING_TIMER_MODE", "apply")
    function_app.settings.cache_clear()
    asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=True)))
    [row] = app_world.store.list_runs(5)
    assert row["Mode"] == "apply" and row["Trigger"] == "timer"
    assert row["Status"] in ("succeeded", "partial")
    assert app_world.writes(), "an apply run of the demo tenant assigns licences"


def test_timer_in_plan_mode_changes_nothing(app_world: World):
    asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))
    [row] = app_world.store.list_runs(5)
    assert row["Mode"] == "plan"
    assert app_world.writes() == []


def test_http_plan_run_answers_with_the_summary_and_it_can_be_read_back(app_world: World):
    response = post_run({"mode": "plan"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    summary = json.loads(response.get_body())
    assert summary["mode"] == "plan" and summary["trigger"] == "http"
    assert summary["groups"] and app_world.writes() == []
    again = get_run(summary["runId"])
    assert again.status_code == 200
    recorded = json.loads(again.get_body())
    assert recorded["runId"] == summary["runId"]
    assert {g["groupId"]: g["decision"] for g in recorded["groups"]} == {
        g["groupId"]: g["decision"] for g in summary["groups"]
    }
    assert read_run(app_world.store, summary["runId"]) == recorded


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "send a JSON body"),
        (b"{not json", "not valid JSON"),
        ([1, 2], "must be a JSON object"),
        ({"mode": "destroy"}, "mode must be 'plan' or 'apply'"),
        ({"mode": "plan", "extra": 1}, "unknown field(s): extra"),
        ({"mode": "plan", "groupIds": "abc"}, "groupIds must be a non-empty list"),
        ({"mode": "plan", "groupIds": ["x'; drop"]}, "groupIds[0] is not a group id"),
    ],
)
def test_bad_http_bodies_get_a_json_error_saying_what_is_wrong(
    app_world: World, body: Any, fragment: str
):
    response = post_run(body)
    assert response.status_code == 400
    error = json.loads(response.get_body())["error"]
    assert fragment in error["message"]
    app_world.store.ensure_tables()
    assert app_world.store.list_runs(5) == [], "a refused request starts no run"


def test_unknown_and_malformed_run_ids(app_world: World):
    assert get_run("20991231T000000Z-abcdef").status_code == 404
    bad = get_run("../../etc")
    assert (
        bad.status_code == 400
        and "is not a run id" in json.loads(bad.get_body())["error"]["message"]
    )


def test_misconfigured_app_answers_503_naming_the_setting(
    app_world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LICENSING_TIMER_MODE", "sometimes")
    function_app.settings.cache_clear()
    response = post_run({"mode": "plan"})
    assert response.status_code == 503
    assert "LICENSING_TIMER_MODE" in json.loads(response.get_body())["error"]["message"]
