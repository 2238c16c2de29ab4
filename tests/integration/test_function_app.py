"""function_app's functions called directly with real azure.functions objects (no host).

The queue-triggered worker is tested with a real Azurite queue in test_queue_worker.py."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import function_app
from localdev.front import indexed_functions
from localdev.services import Azurite, Simulator, app_settings
from shared import api
from shared.run import read_run
from shared.settings import Settings
from shared.store import TableStore
from tests.integration.conftest import World

FUNCTIONS = indexed_functions(function_app.app)  # get_functions() works once per app object


@pytest.fixture
def app_world(world: World, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("LICENSING_RUN_QUEUE", "runs-" + world.settings.table_prefix.lower())
    # Authentication off, as locally; apply over HTTP is allowed for these tests by the setting.
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    monkeypatch.setenv("LICENSING_HTTP_APPLY_WITHOUT_AUTH", "true")
    function_app.settings.cache_clear()
    yield world
    function_app.settings.cache_clear()


@pytest.fixture
def bare_app(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[TableStore]:
    """Storage only, no Graph simulator: for requests refused before anything is read."""
    nowhere = Simulator(url="http://127.0.0.1:9")  # never started: nothing listens there
    env = app_settings(azurite, nowhere, LICENSING_TABLE_PREFIX="t" + secrets.token_hex(6))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    function_app.settings.cache_clear()
    yield TableStore.from_settings(Settings.from_env(env))
    function_app.settings.cache_clear()


def principal(*roles: str, name: str = "ops@contoso.com") -> str:
    claims = [{"typ": "name", "val": name}] + [{"typ": "roles", "val": r} for r in roles]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


def post_run(body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = func.HttpRequest(
        "POST",
        "http://localhost:7071/api/runs",
        headers={"Content-Type": "application/json", **(headers or {})},
        params={},
        route_params={},
        body=raw,
    )
    return asyncio.run(function_app.start_run(req))


def get(
    route: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    **route_params: str,
) -> func.HttpResponse:
    req = func.HttpRequest(
        "GET",
        f"http://localhost:7071/api/{route}",
        headers=headers or {},
        params=params or {},
        route_params=route_params,
        body=b"",
    )
    fn = {
        "runs": function_app.list_runs,
        "status": function_app.get_status,
        "dashboard": function_app.dashboard,
        "waiting": function_app.list_waiting,
    }.get(route, function_app.get_run)
    return asyncio.run(fn(req))


def get_run(run_id: str, caller: str | None = None) -> func.HttpResponse:
    headers = {"X-MS-CLIENT-PRINCIPAL": caller} if caller else None
    return get(f"runs/{run_id}", headers=headers, runId=run_id)


def body(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def test_every_function_is_registered_with_its_trigger():
    functions = {f.get_function_name(): f for f in FUNCTIONS}
    assert set(functions) == {
        "nightly_enforcement",
        "start_run",
        "run_worker",
        "list_runs",
        "get_run",
        "get_status",
        "dashboard",
        "list_waiting",
        "list_tenants",
    }
    timer = functions["nightly_enforcement"].get_bindings()[0]
    assert timer.schedule == "%LICENSING_TIMER_SCHEDULE%"
    for name in ("start_run", "list_runs", "get_run", "get_status", "dashboard", "list_waiting"):
        assert functions[name].get_trigger().auth_level == func.AuthLevel.FUNCTION, name
    queue = functions["run_worker"].get_trigger()
    assert queue.queue_name == "%LICENSING_RUN_QUEUE%"
    assert queue.connection == "AzureWebJobsStorage"


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


def test_a_refused_nightly_apply_mails_the_run_problem_and_fails_the_function(
    app_world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LICENSING_TIMER_MODE", "apply")
    function_app.settings.cache_clear()
    app_world.store.ensure_tables()
    other = "20261127T000000Z-0b0b0b"  # an apply started over HTTP holds the tenant's lease
    assert app_world.store.acquire_lease(other, timedelta(minutes=10), datetime.now(UTC)).acquired
    with pytest.raises(RuntimeError, match=f"refused: another run \\({other}\\)"):
        asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))
    [row] = app_world.store.list_runs(5)
    assert row["Trigger"] == "timer" and row["Status"] == "refused"
    assert app_world.licence_writes() == []
    [mail] = app_world.sim.admin("GET", "/_sim/outbox")["value"]
    assert mail["message"]["subject"] == "[Licensing] Licensing run refused"
    assert other in mail["message"]["body"]["content"]


def test_the_caller_who_asked_for_an_inline_run_is_kept_on_it(
    app_world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")  # App Service Authentication vouches
    caller = {"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Operator", name="kim@contoso.com")}
    response = post_run({"mode": "plan", "wait": True}, caller)
    assert response.status_code == 200
    summary = body(response)
    assert summary["requestedBy"] == "kim@contoso.com"
    reader = principal("Licensing.Reader", name="lee@contoso.com")
    assert body(get_run(summary["runId"], reader))["requestedBy"] == "kim@contoso.com"
    listed = body(get("runs", headers={"X-MS-CLIENT-PRINCIPAL": reader}))["value"]
    assert [(r["runId"], r["requestedBy"]) for r in listed] == [
        (summary["runId"], "kim@contoso.com")
    ]


def test_http_plan_run_with_wait_answers_with_the_summary_and_it_can_be_read_back(
    app_world: World,
):
    response = post_run({"mode": "plan", "wait": True})
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
        ({"mode": "plan", "wait": "yes"}, "wait must be true or false"),
        ({"mode": "apply", "groupIds": None}, "groupIds must be a non-empty list"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"mode": ' + b"[" * 100_000, "nested too deeply"),
    ],
)
def test_bad_http_bodies_get_a_json_error_saying_what_is_wrong(
    bare_app: TableStore, body: Any, fragment: str
):
    response = post_run(body)
    assert response.status_code == 400
    error = json.loads(response.get_body())["error"]
    assert fragment in error["message"]
    bare_app.ensure_tables()
    assert bare_app.list_runs(5) == [], "a refused request starts no run"


def test_unknown_and_malformed_run_ids(bare_app: TableStore):
    assert get_run("20991231T000000Z-abcdef").status_code == 404
    for run_id in ("../../etc", "20261399T000000Z-abcdef"):
        bad = get_run(run_id)
        assert bad.status_code == 400, run_id
        assert "is not a run id" in json.loads(bad.get_body())["error"]["message"]


def test_an_unexpected_failure_is_a_logged_json_500_not_an_empty_body(
    bare_app: TableStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("RunId")  # e.g. a row written by a future version

    monkeypatch.setattr(api, "list_runs_page", broken)
    response = get("runs")
    assert response.status_code == 500 and response.mimetype == "application/json"
    error = body(response)["error"]
    assert error["code"] == "InternalError" and "KeyError" not in error["message"]
    assert any("KeyError" in (r.exc_text or "") for r in caplog.records), "the trace is logged"


def test_misconfigured_app_answers_503_naming_the_setting(
    app_world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LICENSING_TIMER_MODE", "sometimes")
    function_app.settings.cache_clear()
    response = post_run({"mode": "plan", "wait": True})
    assert response.status_code == 503
    assert "LICENSING_TIMER_MODE" in json.loads(response.get_body())["error"]["message"]


def test_queued_run_answers_202_with_a_status_url_that_shows_it_queued(app_world: World):
    response = post_run({"mode": "plan"})
    assert response.status_code == 202
    answer = body(response)
    assert answer["status"] == "queued"
    assert response.headers["Location"] == answer["statusUrl"]
    assert answer["statusUrl"] == f"http://localhost:7071/api/runs/{answer['runId']}"
    shown = get_run(answer["runId"])
    assert shown.status_code == 200 and body(shown)["status"] == "queued"
    assert app_world.requests() == [], "nothing is read from Graph until the worker runs"


def _auth(monkeypatch: pytest.MonkeyPatch, enabled: bool, apply_without_auth: bool = False) -> None:
    """WEBSITE_AUTH_ENABLED is what App Service sets when Authentication is on."""
    if enabled:
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    else:
        monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    monkeypatch.setenv("LICENSING_HTTP_APPLY_WITHOUT_AUTH", str(apply_without_auth).lower())
    function_app.settings.cache_clear()


def test_with_authentication_off_apply_is_refused_even_with_a_forged_principal(
    app_world: World, monkeypatch: pytest.MonkeyPatch
):
    _auth(monkeypatch, enabled=False)
    forged = {"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Operator")}
    for headers in ({}, forged):
        refused = post_run({"mode": "apply"}, headers)
        assert refused.status_code == 403
        message = body(refused)["error"]["message"]
        assert "LICENSING_HTTP_APPLY_WITHOUT_AUTH" in message and "Authentication" in message
    app_world.store.ensure_tables()
    assert app_world.store.list_runs(5) == [], "a refused apply starts no run"
    # Plans and reads stay behind the function key alone.
    assert post_run({"mode": "plan"}).status_code == 202
    assert get("runs").status_code == 200
    _auth(monkeypatch, enabled=False, apply_without_auth=True)
    assert post_run({"mode": "apply"}).status_code == 202


def test_with_authentication_on_every_route_needs_a_signed_in_caller_with_a_role(
    app_world: World, monkeypatch: pytest.MonkeyPatch
):
    _auth(monkeypatch, enabled=True, apply_without_auth=True)  # the escape hatch is for auth off
    run_id = body(
        post_run({"mode": "plan"}, {"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Reader")})
    )["runId"]
    routes = {
        "POST runs": lambda h: post_run({"mode": "plan"}, h),
        "GET runs": lambda h: get("runs", headers=h),
        "GET runs/{id}": lambda h: get(f"runs/{run_id}", runId=run_id, headers=h),
        "GET status": lambda h: get("status", headers=h),
        "GET dashboard": lambda h: get("dashboard", headers=h),
        "GET waiting": lambda h: get("waiting", headers=h),
    }
    for name, call in routes.items():
        anonymous = call({})
        assert anonymous.status_code == 401, name
        assert "sign" in body(anonymous)["error"]["message"], name
        no_role = call({"X-MS-CLIENT-PRINCIPAL": principal()})
        assert no_role.status_code == 403, name
        assert "Licensing.Reader" in body(no_role)["error"]["message"], name
        reader = call({"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Reader")})
        assert reader.status_code in (200, 202), name
    refused = post_run({"mode": "apply"}, {"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Reader")})
    assert refused.status_code == 403
    message = body(refused)["error"]["message"]
    assert "Licensing.Operator" in message and "Licensing.Reader" in message
    ok = post_run({"mode": "apply"}, {"X-MS-CLIENT-PRINCIPAL": principal("Licensing.Operator")})
    assert ok.status_code == 202
    assert body(get_run(body(ok)["runId"], principal("Licensing.Operator")))["status"] == "queued"
    garbled = post_run({"mode": "apply"}, {"X-MS-CLIENT-PRINCIPAL": "not base64!"})
    assert garbled.status_code == 400
    assert "X-MS-CLIENT-PRINCIPAL" in body(garbled)["error"]["message"]
    deep = base64.b64encode(b"[" * 100_000 + b"]" * 100_000).decode()
    nested = post_run({"mode": "plan"}, {"X-MS-CLIENT-PRINCIPAL": deep})
    assert nested.status_code == 400 and "nested too deeply" in body(nested)["error"]["message"]


def test_runs_are_listed_newest_first_in_pages(app_world: World):
    ids = [body(post_run({"mode": "plan"}))["runId"] for _ in range(3)]
    first = get("runs", {"limit": "2"})
    assert first.status_code == 200
    page = body(first)
    assert len(page["value"]) == 2 and page["nextLink"]
    assert page["value"][0]["url"].startswith("http://localhost:7071/api/runs/")
    after = page["nextLink"].split("after=")[1]
    second = body(get("runs", {"limit": "2", "after": after}))
    assert second["nextLink"] is None
    listed = [r["runId"] for r in page["value"] + second["value"]]
    assert sorted(listed) == sorted(ids) and len(set(listed)) == 3
    starts = [r["runId"][:16] for r in page["value"] + second["value"]]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": "0"}, "limit must be an integer 1..100"),
        ({"limit": "many"}, "limit must be an integer"),
        ({"after": "yesterday"}, "'yesterday' is not a run id"),
        ({"page": "2"}, "unknown query parameter(s): page"),
        ({"after": "20261399T000000Z-abcdef"}, "'20261399T000000Z-abcdef' is not a run id"),
        ({"limit": "\u00b2"}, "limit must be an integer 1..100"),
    ],
)
def test_bad_list_queries_get_a_json_error(
    bare_app: TableStore, params: dict[str, str], fragment: str
):
    response = get("runs", params)
    assert response.status_code == 400
    assert fragment in body(response)["error"]["message"]


def test_status_shows_seats_now_the_latest_run_and_open_alerts(app_world: World):
    empty = body(get("status"))
    assert empty["latestRun"] is None and empty["seatsSource"] == "graph"
    assert {s["skuPartNumber"] for s in empty["skus"]} >= {"ENTERPRISEPREMIUM"}
    applied = body(post_run({"mode": "apply", "wait": True}))
    status = body(get("status"))
    assert status["latestRun"]["runId"] == applied["runId"]
    by_sku = {s["skuPartNumber"]: s for s in status["skus"]}
    assert set(by_sku) == {s["skuPartNumber"] for s in applied["skus"]}
    for s in applied["skus"]:
        now = by_sku[s["skuPartNumber"]]
        assert now["free"] == now["enabled"] - now["consumed"]
        assert now["demand"] == s["demand"]
        # No history yet; the demo's subscriptions give end dates where one ends first.
        assert now["forecast"]["text"] in ("not enough history yet", "no seats left") or (
            now["forecast"]["state"] == "ending" and "unless renewed" in now["forecast"]["text"]
        )
    assert status["openAlerts"], "the demo tenant has guests and a short SKU"
    assert {a["kind"] for a in status["openAlerts"]} >= {"group-guests"}


def test_dashboard_is_html_with_escaped_directory_values(app_world: World):
    post_run({"mode": "plan", "wait": True})
    response = get("dashboard")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_body().decode()
    assert "Seats per SKU" in html and "ENTERPRISEPREMIUM" in html and "<script" not in html
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_openapi_document_describes_every_http_function():
    import yaml

    from localdev.services import ROOT

    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    described = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for f in FUNCTIONS:
        trigger = f.get_trigger()
        if getattr(trigger, "route", None):
            for method in trigger.methods:
                served.add(("/" + trigger.route, str(getattr(method, "value", method)).upper()))
    assert served == described


@pytest.mark.parametrize("route", ["POST runs", "GET runs", "GET runs/{runId}"])
def test_a_slow_storage_call_does_not_stall_other_invocations(
    bare_app: TableStore, monkeypatch: pytest.MonkeyPatch, route: str
):
    """Handlers are async on one event loop: a blocking Table/Queue call inside one would freeze
    every other invocation of the worker until it returned."""
    real_table = TableStore.table

    def slow_table(self: TableStore, kind: str) -> Any:
        time.sleep(0.3)  # a slow storage round trip, on whichever thread makes the call
        return real_table(self, kind)

    bare_app.ensure_tables()
    monkeypatch.setattr(TableStore, "table", slow_table)
    run_id = "20261127T020000Z-a1b2c3"
    req = func.HttpRequest(
        route.split()[0],
        "http://localhost:7071/api/runs",
        headers={},
        params={},
        route_params={"runId": run_id},
        body=json.dumps({"mode": "plan"}).encode(),
    )
    handler = {
        "POST runs": function_app.start_run,
        "GET runs": function_app.list_runs,
        "GET runs/{runId}": function_app.get_run,
    }[route]

    async def handler_and_a_ticker() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        response = await handler(req)
        task.cancel()
        return response.status_code, ticks

    status, ticks = asyncio.run(handler_and_a_ticker())
    assert status in (200, 202, 404)
    assert ticks >= 15, f"the event loop ran only {ticks} times during 0.3+ s of storage calls"


def test_requested_groups_the_policy_does_not_tag_are_named_not_dropped(app_world: World):
    tagged = body(post_run({"mode": "plan", "wait": True}))["groups"][0]["groupId"]
    unknown = "0badc0de-0000-4000-8000-000000000001"
    answer = post_run({"mode": "plan", "wait": True, "groupIds": [tagged, unknown.upper()]})
    assert answer.status_code == 200
    summary = body(answer)
    assert summary["requestedNotTagged"] == [unknown]
    assert [g["groupId"] for g in summary["groups"]] == [tagged]
    assert body(get_run(summary["runId"]))["requestedNotTagged"] == [unknown]
    none_tagged = post_run({"mode": "apply", "wait": True, "groupIds": [unknown]})
    assert none_tagged.status_code == 404, "well-formed, but names no group it can act on"
    error = body(none_tagged)["error"]
    assert error["code"] == "NotFound"
    assert unknown in error["message"] and "not tagged" in error["message"]
    assert app_world.writes() == []


def test_a_queued_run_names_the_requested_groups_it_found_untagged(app_world: World):
    """The API cannot know before the worker reads Graph: the run's record names them."""
    from shared.queue import queue_client

    tagged = app_world.group("LIC-Partners-E5")["id"]
    unknown = "0badc0de-0000-4000-8000-000000000002"
    run_id = body(post_run({"mode": "plan", "groupIds": [tagged, unknown]}))["runId"]
    client = queue_client(function_app.settings().run_queue)
    try:
        [message] = list(client.receive_messages(max_messages=5, visibility_timeout=60))
        text = message.content  # what the Functions host hands the worker, decoded
        asyncio.run(function_app.run_worker(func.QueueMessage(id=message.id, body=text.encode())))
    finally:
        client.close()
    finished = body(get_run(run_id))
    assert finished["status"] == "succeeded"
    assert finished["requestedNotTagged"] == [unknown]
    assert [g["groupId"] for g in finished["groups"]] == [tagged.lower()]


def test_table_storage_out_of_reach_is_a_503_with_retry_after(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
):
    """Storage down (here: nothing listens on its port) is an outage the caller can wait out,
    not an InternalError."""
    nowhere = Simulator(url="http://127.0.0.1:9")
    env = app_settings(azurite, nowhere, LICENSING_TABLE_PREFIX="t" + secrets.token_hex(6))
    env["LICENSING_TABLES_CONNECTION_STRING"] = azurite.connection_string.replace(
        str(azurite.table_port), "9"
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    function_app.settings.cache_clear()
    try:
        response = get("runs")
    finally:
        function_app.settings.cache_clear()
    assert response.status_code == 503
    assert body(response)["error"]["code"] == "StorageUnavailable"
    assert response.headers["Retry-After"] == "30"
