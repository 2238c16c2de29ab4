"""Operators of a deployment that enforces several tenants (issue 17): GET /api/tenants, the
`tenant` parameter on the other routes, role limits from the tenant records, the overview page.

The functions are called in-process with real azure.functions objects; the Graph simulator serves
the three demo tenants (Contoso, Fabrikam, Northwind) and the runs are real runs against it."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests
import schemathesis
from schemathesis.core.transport import Response

import function_app
from localdev.services import ROOT, Azurite, Simulator, app_settings
from shared.settings import Settings
from shared.store import TableStore
from shared.tenants import Tenant, dump_tenants
from tests.integration.conftest import CONTOSO, FABRIKAM, NORTHWIND, msp_simulator

UNKNOWN = "0f0f0f0f-0000-4000-8000-000000000000"
ALICE_OID = "a11ce000-0000-4000-8000-000000000001"


@dataclass
class Deployment:
    sim: Simulator
    settings: Settings
    store: TableStore  # the deployment's tables; .for_tenant(id) is one tenant's view
    write_tenants: Callable[..., None]


@pytest.fixture
def deployment(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    sim = msp_simulator("--processing-delay-s", "0")
    tenants_file = tmp_path / "tenants.yaml"
    env = app_settings(
        azurite,
        sim,
        LICENSING_TABLE_PREFIX="t" + secrets.token_hex(6),
        LICENSING_TENANTS_FILE=str(tenants_file),
        LICENSING_MEASURE_WAIT_SECONDS="0",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("LICENSING_RUN_QUEUE", "runs-" + env["LICENSING_TABLE_PREFIX"].lower())
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    monkeypatch.setenv("LICENSING_HTTP_APPLY_WITHOUT_AUTH", "true")
    function_app.settings.cache_clear()

    def write_tenants(*tenants: Tenant) -> None:
        # Read on every request: a record changed here is what the next request sees.
        tenants_file.write_text(dump_tenants(tenants, tenants_file))

    write_tenants(
        Tenant(CONTOSO, "Contoso"),
        Tenant(FABRIKAM, "Fabrikam", mode="apply"),
        Tenant(NORTHWIND, "Northwind Traders"),
    )
    settings = Settings.from_env(env)
    yield Deployment(sim, settings, TableStore.from_settings(settings), write_tenants)
    function_app.settings.cache_clear()
    sim.stop()


def caller(*roles: str, name: str, oid: str | None = None) -> dict[str, str]:
    claims = [{"typ": "name", "val": name}] + [{"typ": "roles", "val": r} for r in roles]
    if oid:
        claims.append(
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid}
        )
    raw = json.dumps({"auth_typ": "aad", "claims": claims}).encode()
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(raw).decode()}


FUNCTIONS = {
    "runs": function_app.list_runs,
    "status": function_app.get_status,
    "dashboard": function_app.dashboard,
    "waiting": function_app.list_waiting,
    "tenants": function_app.list_tenants,
}


def get(
    route: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    run_id = route.removeprefix("runs/") if route.startswith("runs/") else None
    req = func.HttpRequest(
        "GET",
        f"http://localhost:7071/api/{route}",
        headers=headers or {},
        params=params or {},
        route_params={"runId": run_id} if run_id else {},
        body=b"",
    )
    fn = function_app.get_run if run_id else FUNCTIONS[route]
    return asyncio.run(fn(req))


def get_url(url: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A URL an answer gave, followed as a client would."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    route = parts.path.removeprefix("/api/")
    return get(route, dict(parse_qsl(parts.query)), headers)


def post_run(
    body: dict[str, Any], tenant: str | None, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    req = func.HttpRequest(
        "POST",
        "http://localhost:7071/api/runs",
        headers={"Content-Type": "application/json", **(headers or {})},
        params={"tenant": tenant} if tenant else {},
        route_params={},
        body=json.dumps(body).encode(),
    )
    return asyncio.run(function_app.start_run(req))


SPEC = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")


def documented(path: str, response: func.HttpResponse) -> None:
    """The answer is as docs/openapi.yaml describes it (schemathesis's response checks)."""
    as_sent = Response(
        status_code=response.status_code,
        headers={"Content-Type": [response.mimetype]},
        content=response.get_body(),
        request=requests.Request("GET", f"http://localhost:7071/api{path}").prepare(),
        elapsed=0.0,
        message="",
        encoding="utf-8",
        http_version="1.1",
        verify=False,
    )
    SPEC[path]["GET"].validate_response(as_sent)


def answer(response: func.HttpResponse, status: int = 200) -> Any:
    text = response.get_body().decode()
    assert response.status_code == status, text
    return json.loads(text)


def plan(tenant: str, mode: str = "plan") -> dict[str, Any]:
    return answer(post_run({"mode": mode, "wait": True}, tenant))


def test_the_tenants_list_shows_each_tenants_last_run_seats_short_waiting_and_alerts(
    deployment: Deployment,
):
    # Apply: alert states are recorded by apply runs (a plan only says what it would send).
    northwind, contoso = plan(NORTHWIND, "apply"), plan(CONTOSO)
    listed = get("tenants")
    documented("/tenants", listed)
    rows = answer(listed)["value"]
    assert [r["displayName"] for r in rows] == ["Contoso", "Fabrikam", "Northwind Traders"]
    by_id = {r["tenantId"]: r for r in rows}

    nw = by_id[NORTHWIND]
    assert nw["lastRun"]["runId"] == northwind["runId"] and nw["lastRun"]["status"] == "succeeded"
    assert nw["lastRun"]["url"].endswith(f"/runs/{northwind['runId']}?tenant={NORTHWIND}")
    # Northwind's Office 365 E5 runs short (its tenant file): the seats to buy, as the run said.
    short = sum(s["shortfall"] for s in northwind["skus"])
    assert short > 0 and nw["seatsShort"] == short and nw["seatsRunId"] == northwind["runId"]
    assert [s["skuPartNumber"] for s in nw["seatsShortBySku"]] == ["ENTERPRISEPREMIUM"]
    assert nw["waiting"] == northwind["waiting"]["people"] and nw["waiting"] > 0
    status = answer(get("status", {"tenant": NORTHWIND}))
    assert nw["openAlerts"] == len(status["openAlerts"]) and nw["openAlerts"] > 0, "seats ran out"

    ct = by_id[CONTOSO]
    assert ct["lastRun"]["runId"] == contoso["runId"]
    assert ct["seatsShort"] == sum(s["shortfall"] for s in contoso["skus"])

    # Fabrikam has had no run: its figures are unknown, not zero (its alerts are none yet).
    fab = by_id[FABRIKAM]
    assert fab["lastRun"] is None and fab["seatsShort"] is None and fab["waiting"] is None
    assert fab["mode"] == "apply" and fab["error"] is None
    assert fab["links"]["dashboard"] == f"http://localhost:7071/api/dashboard?tenant={FABRIKAM}"
    assert answer(get_url(fab["links"]["runs"]))["value"] == []


def test_drill_down_shows_only_that_tenants_runs_and_keeps_the_tenant_in_every_link(
    deployment: Deployment,
):
    first, second = plan(FABRIKAM), plan(FABRIKAM)
    other = plan(NORTHWIND)
    page = answer(get("runs", {"tenant": FABRIKAM, "limit": "1"}))
    assert [r["runId"] for r in page["value"]] == [second["runId"]]
    assert f"tenant={FABRIKAM}" in page["nextLink"]
    rest = answer(get_url(page["nextLink"]))
    assert [r["runId"] for r in rest["value"]] == [first["runId"]] and rest["nextLink"] is None
    run = answer(get_url(page["value"][0]["url"]))
    assert run["tenantId"] == FABRIKAM and run["tenantName"] == "Fabrikam"
    # Another tenant's run is not found through this tenant, and the other way round.
    assert answer(get(f"runs/{other['runId']}", {"tenant": FABRIKAM}), 404)
    assert answer(get(f"runs/{first['runId']}", {"tenant": NORTHWIND}), 404)
    assert answer(get("status", {"tenant": NORTHWIND}))["latestRun"]["runId"] == other["runId"]
    waiting = answer(get("waiting", {"tenant": NORTHWIND, "limit": "1"}))
    assert waiting["runId"] == other["runId"] and f"tenant={NORTHWIND}" in waiting["nextLink"]
    assert answer(get_url(waiting["nextLink"]))["runId"] == other["runId"]

    # Queued: the status URL names the tenant; the run is that tenant's, not another's.
    queued = answer(post_run({"mode": "plan"}, FABRIKAM), 202)
    assert queued["statusUrl"].endswith(f"?tenant={FABRIKAM}")
    assert answer(get_url(queued["statusUrl"]))["status"] == "queued"
    assert answer(get(f"runs/{queued['runId']}", {"tenant": CONTOSO}), 404)


def test_a_missing_bad_or_unknown_tenant_is_refused_and_a_disabled_one_only_reads(
    deployment: Deployment,
):
    for route in ("runs", "status", "waiting"):
        error = answer(get(route), 400)["error"]
        assert "`tenant`" in error["message"] and "3 tenant(s)" in error["message"], route
    assert "`tenant`" in answer(post_run({"mode": "plan"}, None), 400)["error"]["message"]
    bad = answer(get("runs", {"tenant": "contoso"}), 400)["error"]["message"]
    assert "`tenant` must be a tenant id (GUID), got 'contoso'" in bad
    assert answer(get("status", {"tenant": f"{CONTOSO}\n"}), 400)
    listed = answer(get("tenants", {"tenant": CONTOSO}), 400)["error"]["message"]
    assert listed == "unknown query parameter(s): tenant (it takes none)"
    unknown = answer(get("dashboard", {"tenant": UNKNOWN}), 404)["error"]
    assert unknown == {
        "code": "NotFound",
        "message": f"tenant {UNKNOWN} is not one this deployment enforces",
    }

    done = plan(NORTHWIND)
    deployment.write_tenants(
        Tenant(CONTOSO, "Contoso"), Tenant(NORTHWIND, "Northwind Traders", enabled=False)
    )
    refused = answer(post_run({"mode": "plan", "wait": True}, NORTHWIND), 409)["error"]
    assert refused["code"] == "Conflict" and "is disabled" in refused["message"]
    assert [r["runId"] for r in answer(get("runs", {"tenant": NORTHWIND}))["value"]] == [
        done["runId"]
    ], "nothing was run, and its runs still read"
    rows = answer(get("tenants"))["value"]
    assert [(r["displayName"], r["enabled"]) for r in rows] == [
        ("Contoso", True),
        ("Northwind Traders", False),
    ]
    # A tenant removed from the records is not enforced any more: its rows are not served.
    assert answer(get("runs", {"tenant": FABRIKAM}), 404)


def test_role_limits_in_the_tenant_records_hide_and_refuse_tenants(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    plan(FABRIKAM)
    deployment.write_tenants(
        Tenant(CONTOSO, "Contoso"),
        Tenant(FABRIKAM, "Fabrikam", readers=(ALICE_OID,)),
        Tenant(NORTHWIND, "Northwind Traders", operators=("carol@msp.example",)),
    )
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    function_app.settings.cache_clear()
    alice = caller("Licensing.Reader", name="alice@msp.example", oid=ALICE_OID.upper())
    bob = caller("Licensing.Reader", name="bob@msp.example", oid=secrets.token_hex(16))
    carol = caller("Licensing.Operator", name="carol@msp.example")
    dave = caller("Licensing.Operator", name="dave@msp.example")

    def names(who: dict[str, str]) -> list[str]:
        return [r["displayName"] for r in answer(get("tenants", headers=who))["value"]]

    assert names(alice) == ["Contoso", "Fabrikam", "Northwind Traders"]
    assert names(bob) == ["Contoso", "Northwind Traders"], "Fabrikam lists its readers"
    assert answer(get("runs", {"tenant": FABRIKAM}, alice))["value"]
    refused = answer(get("runs", {"tenant": FABRIKAM}, bob), 403)["error"]
    assert "bob@msp.example may not see tenant Fabrikam" in refused["message"]
    assert "`readers`" in refused["message"]
    assert answer(get("dashboard", {"tenant": FABRIKAM}, bob), 403)
    overview = get("dashboard", headers=bob).get_body().decode()
    assert "Northwind Traders" in overview and "Fabrikam" not in overview

    # Northwind's operators: Carol may apply there, Dave (an Operator too) may only read and plan.
    error = answer(post_run({"mode": "apply"}, NORTHWIND, dave), 403)["error"]["message"]
    assert "dave@msp.example may not start apply runs on tenant Northwind Traders" in error
    assert answer(post_run({"mode": "plan"}, NORTHWIND, dave), 202)
    assert answer(post_run({"mode": "apply"}, NORTHWIND, carol), 202)
    assert answer(post_run({"mode": "apply"}, CONTOSO, dave), 202), "no operators list: any"


def test_a_tenant_whose_rows_cannot_be_read_shows_its_error_and_the_others_still_show(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    plan(CONTOSO)
    plan(NORTHWIND)
    real = TableStore.list_runs

    def failing(store: TableStore, limit: int = 20) -> list[dict[str, Any]]:
        if store.tenant_id == NORTHWIND:
            raise ConnectionError("storage account unreachable")
        return real(store, limit)

    monkeypatch.setattr(TableStore, "list_runs", failing)
    listed = get("tenants")
    documented("/tenants", listed)
    rows = {r["tenantId"]: r for r in answer(listed)["value"]}
    broken = rows[NORTHWIND]
    assert "storage account unreachable" in broken["error"]
    assert [broken[k] for k in ("lastRun", "seatsShort", "waiting", "openAlerts")] == [None] * 4
    assert rows[CONTOSO]["error"] is None and rows[CONTOSO]["lastRun"]["status"] == "succeeded"
    page = get("dashboard").get_body().decode()
    assert "unknown: its rows could not be read" in page and "Contoso" in page


def test_the_overview_page_has_a_row_per_tenant_linking_to_its_dashboard(
    deployment: Deployment,
):
    northwind = plan(NORTHWIND)
    response = get("dashboard", {"code": "k3y"})
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_body().decode()
    rows = re.findall(r'<tr class="tenant" data-tenant="([^"]*)">(.*?)</tr>', page, re.S)
    assert [t for t, _ in rows] == [CONTOSO, FABRIKAM, NORTHWIND]
    cells = dict(rows)
    assert f'href="dashboard?tenant={NORTHWIND}&amp;code=k3y"' in cells[NORTHWIND]
    assert northwind["runId"] in cells[NORTHWIND] and "succeeded" in cells[NORTHWIND]
    short = sum(s["shortfall"] for s in northwind["skus"])
    assert re.search(rf'class="n seats-short"><span class="warn">{short}</span>', cells[NORTHWIND])
    assert f'class="n waiting">{northwind["waiting"]["people"]}' in cells[NORTHWIND]
    assert "no run yet" in cells[FABRIKAM] and "unknown" in cells[FABRIKAM]

    drill = get("dashboard", {"tenant": NORTHWIND, "code": "k3y"}).get_body().decode()
    assert "Group licensing: seats · Northwind Traders" in drill
    assert 'href="dashboard?code=k3y"' in drill, "back to the overview, with the same key"
    assert northwind["runId"] in drill


def test_a_single_tenant_install_lists_its_one_implicit_tenant(
    deployment: Deployment,
):
    deployment.write_tenants()  # no records: the implicit tenant, as before issue 17
    done = answer(post_run({"mode": "plan", "wait": True}, None))
    rows = answer(get("tenants"))["value"]
    assert len(rows) == 1 and rows[0]["tenantId"] is None
    assert rows[0]["lastRun"]["runId"] == done["runId"]
    assert rows[0]["lastRun"]["url"] == f"http://localhost:7071/api/runs/{done['runId']}"
    assert rows[0]["links"]["status"] == "http://localhost:7071/api/status"
    assert answer(get("runs"))["value"][0]["runId"] == done["runId"]
    assert "<h1>Group licensing: seats</h1>" in get("dashboard").get_body().decode()
    assert answer(get("runs", {"tenant": CONTOSO}), 404)["error"]["code"] == "NotFound"


def test_a_tenant_the_app_cannot_get_a_token_for_is_named_not_a_bare_failure(
    deployment: Deployment,
):
    # A record for a tenant that has not consented (the simulator does not serve it).
    deployment.write_tenants(Tenant(CONTOSO, "Contoso"), Tenant(UNKNOWN, "Not consented"))
    error = answer(get("status", {"tenant": UNKNOWN}), 503)["error"]
    assert error["code"] == "Misconfigured" and UNKNOWN in error["message"]
    rows = {r["tenantId"]: r for r in answer(get("tenants"))["value"]}
    assert rows[UNKNOWN]["lastRun"] is None and rows[UNKNOWN]["error"] is None
    assert rows[CONTOSO]["error"] is None
