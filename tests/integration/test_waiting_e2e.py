"""The waiting list end to end: the engine against the Graph simulator over HTTP and Azurite,
over several runs, under both values of the `error_sku_in_assigned_licenses` switch; then the
HTTP API (paging, validation), the command line, the dashboard and the exhaustion mail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

import function_app
from localdev.services import Azurite
from shared import api
from shared.api import build_status
from shared.cli import main
from shared.dashboard import render_dashboard
from shared.run import execute_run
from shared.settings import Mode
from tests.integration.conftest import World
from tests.integration.tenants import PBI, POLICY, TenantBuilder
from tests.integration.test_function_app import body, get
from tests.integration.test_world_switches import ERROR_SKU_LISTED


def run(world: World, mode: Mode = "apply") -> dict[str, Any]:
    time.sleep(1.05)  # run ids have one-second resolution; each run is a new "latest"
    report = asyncio.run(execute_run(world.settings, mode, "test"))
    return report.summary()


def waiting(world: World, **params: str) -> dict[str, Any]:
    status, answer, _ = api.waiting_page(world.store, params, "http://x/api")
    assert status == 200, answer
    return answer


def _tenant() -> TenantBuilder:
    # LIC-BI carries Power BI for 4 members with 2 seats: Entra leaves 2 in CountViolation.
    # LIC-New (not assigned yet, 1 member) is blocked by seats: its member waits too.
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 4), [{"skuId": PBI, "disabledPlans": []}])
    t.group("LIC-New", "powerbi", t.users_named("new", 1), [])
    return t


def _sim_stamps(world: World) -> dict[str, str]:
    """UPN -> lastUpdatedDateTime of its CountViolation state, as the simulator holds it."""
    state = world.state()
    return {
        u["userPrincipalName"]: s["lastUpdatedDateTime"]
        for u in state["users"]
        for s in u.get("licenseAssignmentStates") or []
        if s["error"] == "CountViolation"
    }


@pytest.mark.parametrize("listed", [False, True], ids=["error-sku-not-listed", "error-sku-listed"])
def test_a_person_waits_still_waits_with_the_same_since_date_then_is_served_and_leaves(
    world_factory: Any, listed: bool
):
    world = world_factory(_tenant().build(), POLICY, sim_args=ERROR_SKU_LISTED[listed])
    stamps = _sim_stamps(world)
    assert len(stamps) == 2

    first = run(world)
    assert first["waiting"]["complete"] and first["waiting"]["people"] == 3
    one = waiting(world)
    assert one["runId"] == first["runId"] and one["complete"] and one["unreadGroups"] == []
    by_upn = {i["userPrincipalName"]: i for i in one["value"]}
    assert set(by_upn) == {*stamps, "new0@contoso.example"}
    for upn, stamp in stamps.items():  # CountViolation: since Graph's lastUpdatedDateTime
        item = by_upn[upn]
        assert item["reason"] == "CountViolation" and item["sinceSource"] == "graph"
        assert datetime.fromisoformat(item["since"]) == datetime.fromisoformat(
            stamp.replace("Z", "+00:00")
        )
        assert item["group"] == "LIC-BI" and item["seat"] == "waits"
    new = by_upn["new0@contoso.example"]  # blocked-seats: since the first run that saw it
    assert new["reason"] == "blocked-seats" and new["sinceSource"] == "first-seen"
    assert new["since"][:19] >= first["startedAt"][:19]
    # The planner serves the smaller demand first: LIC-New (1) before LIC-BI (2).
    assert new["place"] == 1 and {by_upn[u]["place"] for u in stamps} == {2}
    assert one["value"][0]["userPrincipalName"] == "new0@contoso.example"
    assert one["skus"] == [
        {
            "skuId": PBI,
            "skuPartNumber": "POWER_BI_PRO",
            "productName": "Power BI Pro (POWER_BI_PRO)",
            "waiting": 3,
            "longestSince": min(i["since"] for i in one["value"]),
            "longestDays": 0,
        }
    ]

    second = run(world)
    two = waiting(world)
    assert two["runId"] == second["runId"] != first["runId"]
    assert {i["userPrincipalName"]: i["since"] for i in two["value"]} == {
        i["userPrincipalName"]: i["since"] for i in one["value"]
    }

    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 5})
    third = run(world)
    three = waiting(world)
    assert {i["seat"] for i in three["value"]} == {"given"}, three["value"]
    assert three["people"] == 0 and three["skus"] == []
    assert {g["displayName"]: g["outcome"] for g in third["groups"]} == {
        "LIC-BI": "applied",
        "LIC-New": "applied",
    }
    world.wait_for_processing()

    fourth = run(world)
    four = waiting(world)
    assert four["runId"] == fourth["runId"] and four["value"] == [] and four["complete"]
    assert world.store.waiting_since() == {}  # they hold the licence: their rows are gone


def test_an_unread_group_makes_the_list_incomplete_and_keeps_its_since_dates(world_factory: Any):
    world = world_factory(_tenant().build(), POLICY)
    run(world)
    before = world.store.waiting_since()
    bi = world.group("LIC-BI")["id"]
    world.sim.admin(
        "POST", "/_sim/faults", {"path": f"/groups/{bi}/members", "status": 500, "count": 100}
    )
    partial = run(world)
    assert partial["status"] == "partial"
    listed = waiting(world)
    assert not listed["complete"]
    assert listed["unreadGroups"] == [{"groupId": bi, "displayName": "LIC-BI"}]
    assert {i["group"] for i in listed["value"]} == {"LIC-New"}
    assert world.store.waiting_since() == before  # LIC-BI's people were not seen leaving


def test_waiting_api_pages_and_refuses_bad_queries(world_factory: Any):
    t = TenantBuilder(pbi=0)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 5), [])
    world = world_factory(t.build(), POLICY)
    assert waiting(world)["runId"] is None  # no run yet: nothing known, not "nobody waits"
    assert waiting(world)["complete"] is False
    summary = run(world, "plan")
    seen, page = [], waiting(world, limit="2")
    pages = 1
    while page["nextLink"]:
        assert len(page["value"]) == 2
        seen += page["value"]
        query = dict(p.split("=") for p in page["nextLink"].split("?", 1)[1].split("&"))
        assert query["runId"] == summary["runId"]
        page = waiting(world, **query)
        pages += 1
    seen += page["value"]
    assert pages == 3 and [i["position"] for i in seen] == [1, 2, 3, 4, 5]
    assert {i["userPrincipalName"] for i in seen} == {f"bi{n}@contoso.example" for n in range(5)}
    assert {i["seat"] for i in seen} == {"waits"}

    for params, words in [
        ({"limit": "0"}, "limit must be an integer 1..100"),
        ({"limit": "x"}, "limit"),
        ({"after": "-1"}, "after must be the position"),
        ({"runId": "yesterday"}, "is not a run id"),
        ({"sku": "E5"}, "unknown query parameter(s): sku"),
    ]:
        status, answer, _ = api.waiting_page(world.store, params, "http://x/api")
        assert status == 400 and words in answer["error"]["message"], (params, answer)
    status, answer, _ = api.waiting_page(
        world.store, {"runId": "20991231T000000Z-abcdef"}, "http://x/api"
    )
    assert status == 404 and "recorded no waiting list" in answer["error"]["message"]


@pytest.fixture
def app_env(
    world_factory: Any, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    world = world_factory(_tenant().build(), POLICY)
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    function_app.settings.cache_clear()
    yield world
    function_app.settings.cache_clear()


def test_the_http_route_the_command_line_and_the_dashboard_show_the_list(
    app_env: World, capsys: pytest.CaptureFixture[str]
):
    summary = run(app_env)
    answer = get("waiting", {"limit": "1"})
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    page = body(answer)
    assert page["runId"] == summary["runId"] and len(page["value"]) == 1
    assert page["nextLink"].startswith("http://localhost:7071/api/waiting?")
    assert body(get("waiting", {"limit": "101"}))["error"]["code"] == "BadRequest"

    assert main(["waiting"]) == 0
    out = capsys.readouterr().out
    assert f"Waiting list of run {summary['runId']}" in out
    assert "3 people wait for Power BI Pro (POWER_BI_PRO), the longest for less than a day" in out
    lines = out.splitlines()
    row = next(line for line in lines if "new0@contoso.example" in line)
    assert row.split()[0] == "1" and "LIC-New" in row and "Power BI Pro (POWER_BI_PRO)" in row
    assert sum("LIC-BI" in line for line in lines) == 2
    assert main(["waiting", "--run", "20991231T000000Z-abcdef"]) == 1

    status = asyncio.run(build_status(app_env.settings, app_env.store, with_details=True))
    page_html = render_dashboard(status)
    section = page_html.split("<h2>Waiting for a seat</h2>", 1)[1].split("</section>", 1)[0]
    assert "Power BI Pro (POWER_BI_PRO)" in section and "<td>3</td>" in section
    assert "3 people wait for Power BI Pro (POWER_BI_PRO)" in section


def test_the_exhaustion_mail_says_how_many_wait_and_for_how_long(world_factory: Any):
    world = world_factory(_tenant().build(), POLICY)
    run(world, "plan")  # plan mode: no mail, but the list and its first-seen rows are kept
    assert world.sim.admin("GET", "/_sim/outbox")["value"] == []
    # As if that run had been six days ago: the first-seen rows say so.
    world.store.replace_waiting_since(
        {k: t - timedelta(days=6) for k, t in world.store.waiting_since().items()}
    )
    run(world)
    mails = world.sim.admin("GET", "/_sim/outbox")["value"]
    [mail] = [
        m for m in mails if "Power BI Pro (POWER_BI_PRO) has run out" in m["message"]["subject"]
    ]
    assert (
        "3 people wait for Power BI Pro (POWER_BI_PRO), the longest for 6 days"
        in mail["message"]["body"]["content"]
    )
