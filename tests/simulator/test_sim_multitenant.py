"""Several tenants in one simulator (docs/simulator.md "Several tenants"), over real HTTP: each
token names its tenant, and data, request logs, outboxes, faults and throttling stay apart."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev.services import Simulator
from simulator.server import SimServer, make_token, start_server
from simulator.tenant import Tenant
from tests.simulator.conftest import (
    DEMO,
    READ_ALL,
    ROOT,
    TENANT_ID,
    WRITE_ALL,
    Client,
    small_tenant,
)

OTHER_ID = "22222222-2222-4222-8222-222222222222"
UNKNOWN_ID = "99999999-9999-4999-8999-999999999999"
TENANTS = ROOT / "simulator" / "tenants"
FABRIKAM = TENANTS / "fabrikam.json"
NORTHWIND = TENANTS / "northwind.json"
MAIL = {
    "message": {
        "subject": "Seats low",
        "body": {"contentType": "Text", "content": "E5 has 0 free seats."},
        "toRecipients": [{"emailAddress": {"address": "it@contoso.com"}}],
    },
    "saveToSentItems": False,
}


def other_tenant() -> dict[str, Any]:
    """The small tenant under another id and name, with one more user."""
    data = small_tenant()
    data["tenantId"] = OTHER_ID
    data["displayName"] = "Other Ltd"
    data["users"].append(
        {"id": "10000000-0000-4000-8000-000000000077", "userPrincipalName": "extra@other.com"}
    )
    return data


class TenantClient(Client):
    """A client whose tokens are asked for one tenant (`tenantId` in the token request)."""

    def __init__(self, server: SimServer, tenant_id: str | None) -> None:
        super().__init__(server)
        self.tenant_id = tenant_id

    def token(self, roles: tuple[str, ...]) -> str:
        if roles not in self._tokens:
            body: dict[str, Any] = {"roles": list(roles)}
            if self.tenant_id is not None:
                body["tenantId"] = self.tenant_id
            reply = self.call("POST", "/_sim/token", body=body, auth=None)
            assert reply.status == 200, reply.text
            self._tokens[roles] = reply.json["access_token"]
        return self._tokens[roles]


@pytest.fixture
def two() -> Iterator[tuple[TenantClient, TenantClient]]:
    """The default tenant (TENANT_ID) and a second one (OTHER_ID) in one server."""
    server = start_server([Tenant.from_dict(small_tenant()), Tenant.from_dict(other_tenant())])
    try:
        yield TenantClient(server, None), TenantClient(server, OTHER_ID)
    finally:
        server.stop()


def _users(client: Client) -> set[str]:
    value = client.get("/v1.0/users?$select=userPrincipalName&$top=999").json["value"]
    return {u["userPrincipalName"] for u in value}


def test_each_token_reads_its_own_tenant(two: tuple[TenantClient, TenantClient]) -> None:
    home, other = two
    assert "extra@other.com" in _users(other)
    assert "extra@other.com" not in _users(home)
    home_sku = home.get("/v1.0/subscribedSkus").json["value"][0]
    other_sku = other.get("/v1.0/subscribedSkus").json["value"][0]
    assert home_sku["id"].startswith(TENANT_ID + "_")
    assert other_sku["id"].startswith(OTHER_ID + "_")


def test_a_write_in_one_tenant_leaves_the_other_alone(
    two: tuple[TenantClient, TenantClient],
) -> None:
    home, other = two
    group = "20000000-0000-4000-8000-000000000002"
    body = {
        "addLicenses": [{"skuId": "f8a1db68-be16-40ed-86d5-cb42ce701560"}],
        "removeLicenses": [],
    }
    assert other.post(f"/v1.0/groups/{group}/assignLicense", body).status == 202
    skus = f"/v1.0/groups/{group}?$select=assignedLicenses"
    assert other.get(skus).json["assignedLicenses"] != []
    assert home.get(skus).json["assignedLicenses"] == []
    # The admin view of each tenant shows the same.
    state = home.get(f"/_sim/tenants/{OTHER_ID}/state", auth=None).json
    assert next(g for g in state["groups"] if g["id"] == group)["assignedLicenses"] != []
    assert next(g for g in home.state()["groups"] if g["id"] == group)["assignedLicenses"] == []


def test_a_token_without_tenant_id_is_the_default_tenants(
    two: tuple[TenantClient, TenantClient],
) -> None:
    home, _ = two
    # A token made without a tid claim (as before several tenants existed) reads the default.
    old = make_token(list(READ_ALL))
    assert "extra@other.com" not in _users_with(home, old)
    named = home.post(
        "/_sim/token", {"roles": list(READ_ALL), "tenantId": TENANT_ID.upper()}, auth=None
    )
    assert named.status == 200
    assert "user1@contoso.com" in _users_with(home, named.json["access_token"])
    # Under /_sim/tenants/<id>/token the route names the tenant, and a body naming another is
    # refused.
    routed = home.post(f"/_sim/tenants/{OTHER_ID}/token", {"roles": list(READ_ALL)}, auth=None)
    assert "extra@other.com" in _users_with(home, routed.json["access_token"])
    mixed = home.post(
        f"/_sim/tenants/{TENANT_ID}/token", {"roles": [], "tenantId": OTHER_ID}, auth=None
    )
    assert mixed.status == 400 and "not the tenant of this route" in mixed.json["error"]["message"]


def _users_with(client: Client, token: str) -> set[str]:
    reply = client.get("/v1.0/users?$select=userPrincipalName", auth=f"Bearer {token}")
    assert reply.status == 200, reply.text
    return {u["userPrincipalName"] for u in reply.json["value"]}


def test_an_unknown_tenant_gets_entras_tenant_not_found(
    two: tuple[TenantClient, TenantClient],
) -> None:
    home, _ = two
    reply = home.post("/_sim/token", {"roles": list(READ_ALL), "tenantId": UNKNOWN_ID}, auth=None)
    assert reply.status == 400
    assert reply.json["error"] == "invalid_request"
    assert reply.json["error_description"].startswith(
        f"AADSTS90002: Tenant '{UNKNOWN_ID}' not found."
    )
    assert reply.json["error_codes"] == [90002]
    bad = home.post("/_sim/token", {"roles": [], "tenantId": 7}, auth=None)
    assert bad.status == 400 and "tenantId" in bad.json["error"]["message"]


def test_a_tenant_that_withdrew_consent_gets_no_token_and_old_tokens_stop(
    two: tuple[TenantClient, TenantClient],
) -> None:
    home, other = two
    assert other.get("/v1.0/groups").status == 200  # a token from before the withdrawal
    off = home.post(f"/_sim/tenants/{OTHER_ID}/consent", {"consented": False}, auth=None)
    assert off.status == 200 and off.json["consented"] is False
    reply = home.post(
        "/_sim/token", {"roles": list(READ_ALL), "tenantId": OTHER_ID, "appId": "app-1"}, auth=None
    )
    assert reply.status == 400 and reply.json["error"] == "invalid_client"
    assert reply.json["error_description"].startswith(
        f"AADSTS700016: Application with identifier 'app-1' was not found in the directory "
        f"'{OTHER_ID}'."
    )
    refused = other.get("/v1.0/groups")
    assert refused.status == 401
    assert refused.json["error"]["code"] == "Authorization_IdentityNotFound"
    assert home.get("/v1.0/groups").status == 200  # the other tenant is untouched
    listed = {t["tenantId"]: t for t in home.get("/_sim/tenants", auth=None).json["value"]}
    assert listed[OTHER_ID]["consented"] is False and listed[TENANT_ID]["consented"] is True
    # Consenting again (onboarding) gives tokens again.
    home.post(f"/_sim/tenants/{OTHER_ID}/consent", {"consented": True}, auth=None)
    assert other.get("/v1.0/groups").status == 200
    bad = home.post(f"/_sim/tenants/{OTHER_ID}/consent", {"consented": "no"}, auth=None)
    assert bad.status == 400


def test_a_removed_tenants_tokens_get_401(two: tuple[TenantClient, TenantClient]) -> None:
    home, other = two
    assert other.get("/v1.0/groups").status == 200
    assert home.call("DELETE", f"/_sim/tenants/{OTHER_ID}", auth=None).status == 204
    reply = other.get("/v1.0/groups")
    assert reply.status == 401 and reply.json["error"]["code"] == "InvalidAuthenticationToken"
    assert OTHER_ID in reply.json["error"]["message"]
    assert home.get(f"/_sim/tenants/{OTHER_ID}/requests", auth=None).status == 404
    assert home.call("DELETE", f"/_sim/tenants/{TENANT_ID}", auth=None).status == 400
    assert [t["tenantId"] for t in home.get("/_sim/tenants", auth=None).json["value"]] == [
        TENANT_ID
    ]


def test_a_tenant_added_at_runtime_is_served(demo: Client) -> None:
    added = demo.post("/_sim/tenants", other_tenant(), auth=None)
    assert added.status == 201 and added.json["displayName"] == "Other Ltd"
    other = TenantClient(demo.server, OTHER_ID)
    assert "extra@other.com" in _users(other)
    again = demo.post("/_sim/tenants", other_tenant(), auth=None)
    assert again.status == 400 and "already served" in again.json["error"]["message"]
    broken = demo.post("/_sim/tenants", {"tenantId": "not-a-guid"}, auth=None)
    assert broken.status == 400 and "$.tenantId" in broken.json["error"]["message"]


def test_tenants_list_names_and_counts(two: tuple[TenantClient, TenantClient]) -> None:
    home, other = two
    other.get("/v1.0/users")
    rows = home.get("/_sim/tenants", auth=None).json["value"]
    assert [(r["tenantId"], r["default"]) for r in rows] == [(TENANT_ID, True), (OTHER_ID, False)]
    assert rows[1]["displayName"] == "Other Ltd" and rows[0]["displayName"] == TENANT_ID
    assert (rows[0]["users"], rows[1]["users"]) == (6, 7)
    assert (rows[0]["requests"], rows[1]["requests"]) == (0, 1)
    assert home.get(f"/_sim/tenants/{OTHER_ID}", auth=None).json["groups"] == 3
    missing = home.get(f"/_sim/tenants/{UNKNOWN_ID}/requests", auth=None)
    assert missing.status == 404 and UNKNOWN_ID in missing.json["error"]["message"]


def test_request_logs_and_outboxes_are_per_tenant(two: tuple[TenantClient, TenantClient]) -> None:
    home, other = two
    assert other.post("/v1.0/users/user1@contoso.com/sendMail", MAIL).status == 202
    home.get("/v1.0/groups")
    home.get("/v1.0/groups")
    other_log = home.get(f"/_sim/tenants/{OTHER_ID}/requests", auth=None).json["value"]
    assert [(r["method"], r["path"]) for r in other_log] == [
        ("POST", "/v1.0/users/user1@contoso.com/sendMail")
    ]
    assert [r["path"] for r in home.get("/_sim/requests", auth=None).json["value"]] == [
        "/v1.0/groups",
        "/v1.0/groups",
    ]
    # The default tenant is also reachable under /_sim/tenants/<its id>/.
    assert len(home.get(f"/_sim/tenants/{TENANT_ID}/requests", auth=None).json["value"]) == 2
    assert home.get("/_sim/outbox", auth=None).json["value"] == []
    sent = home.get(f"/_sim/tenants/{OTHER_ID}/outbox", auth=None).json["value"]
    assert [m["message"]["subject"] for m in sent] == ["Seats low"]
    assert home.call("DELETE", f"/_sim/tenants/{OTHER_ID}/outbox", auth=None).status == 204
    assert home.get(f"/_sim/tenants/{OTHER_ID}/outbox", auth=None).json["value"] == []


def test_faults_and_switches_are_per_tenant(two: tuple[TenantClient, TenantClient]) -> None:
    home, other = two
    fault = {"path": "/groups", "status": 503, "count": 5}
    assert home.post(f"/_sim/tenants/{OTHER_ID}/faults", fault, auth=None).status == 201
    assert other.get("/v1.0/groups").status == 503
    assert home.get("/v1.0/groups").status == 200
    assert home.get("/_sim/faults", auth=None).json["value"] == []
    # Per-tenant settings change only that tenant; process-wide ones are refused there.
    patched = home.call(
        "PATCH", f"/_sim/tenants/{OTHER_ID}/config", body={"hiddenMembers": "empty"}, auth=None
    )
    assert patched.status == 200 and patched.json["hiddenMembers"] == "empty"
    assert home.get("/_sim/config", auth=None).json["hiddenMembers"] == "forbidden"
    wide = home.call("PATCH", f"/_sim/tenants/{OTHER_ID}/config", body={"latencyMs": 5}, auth=None)
    assert wide.status == 400 and "process-wide" in wide.json["error"]["message"]


def test_throttling_one_tenant_does_not_throttle_the_other() -> None:
    # The same app (the default one) in two tenants: Graph's budgets are per app per tenant.
    server = start_server(
        [Tenant.from_dict(small_tenant()), Tenant.from_dict(other_tenant())], ru_limit=5
    )
    try:
        home, other = TenantClient(server, None), TenantClient(server, OTHER_ID)
        statuses = [other.get("/v1.0/groups").status for _ in range(8)]
        assert 429 in statuses
        throttled = other.get("/v1.0/groups")
        assert throttled.status == 429
        assert throttled.headers["x-ms-throttle-scope"].endswith(f"/{OTHER_ID}")
        assert [home.get("/v1.0/groups").status for _ in range(2)] == [200, 200]
    finally:
        server.stop()


def test_write_limits_are_per_tenant() -> None:
    server = start_server(
        [Tenant.from_dict(small_tenant()), Tenant.from_dict(other_tenant())],
        ru_limit=0,
        tenant_write_limit=2,
    )
    try:
        home, other = TenantClient(server, None), TenantClient(server, OTHER_ID)
        path = "/v1.0/users/user1@contoso.com/sendMail"
        assert [other.post(path, MAIL).status for _ in range(3)] == [202, 202, 429]
        assert home.post(path, MAIL).status == 202
    finally:
        server.stop()


def test_batch_items_run_in_the_tokens_tenant(two: tuple[TenantClient, TenantClient]) -> None:
    _, other = two
    batch = {"requests": [{"id": "1", "method": "GET", "url": "/users/extra@other.com"}]}
    reply = other.post("/v1.0/$batch", batch)
    assert reply.status == 200 and reply.json["responses"][0]["status"] == 200


def test_the_demo_tenants_load_with_distinct_ids_and_the_shared_policys_skus() -> None:
    tenants = [Tenant.from_file(p) for p in (DEMO, FABRIKAM, NORTHWIND)]
    assert len({t.tenant_id for t in tenants}) == 3
    for t in tenants:
        parts = {s.part_number for s in t.skus.values()}
        assert {"ENTERPRISEPREMIUM", "EMSPREMIUM", "POWER_BI_PRO"} <= parts
    northwind = tenants[2]
    e5 = northwind.find_sku("ENTERPRISEPREMIUM")
    assert e5 is not None
    # Runs short: LIC-Warehouse-E5 (5 members, unlicensed) wants more E5 seats than are free.
    assert northwind.free(e5.sku_id) < 5


def test_cli_serves_several_tenant_files(tmp_path: Path) -> None:
    out = tmp_path / "tenants.json"
    sim = Simulator(
        DEMO, tenants=(FABRIKAM, NORTHWIND), extra_args=("--tenants-out", str(out))
    ).start()
    try:
        listed = json.loads(out.read_text())
        assert [t["displayName"] for t in listed] == ["Contoso", "Fabrikam", "Northwind Traders"]
        assert [t["tenantId"] for t in sim.tenant_list()] == [t["tenantId"] for t in listed]
        fabrikam = listed[1]["tenantId"]
        token = sim.admin("POST", "/_sim/token", {"roles": list(WRITE_ALL), "tenantId": fabrikam})
        req = urllib.request.Request(
            f"{sim.graph_base_url}/groups?$select=displayName",
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            names = {g["displayName"] for g in json.loads(resp.read())["value"]}
        assert "LIC-Design-PowerBI" in names and "LIC-Support-E5" not in names
        assert len(sim.admin_for(fabrikam, "GET", "/_sim/requests")["value"]) == 1
        assert sim.admin("GET", "/_sim/requests")["value"] == []
    finally:
        sim.stop()


def test_cli_generates_several_tenants(tmp_path: Path) -> None:
    out = tmp_path / "tenants.json"
    sim = Simulator(
        generate="users=40,groups=4,skus=2",
        generate_tenants=3,
        extra_args=("--seed", "5", "--tenants-out", str(out)),
    ).start()
    try:
        listed = json.loads(out.read_text())
        assert len({t["tenantId"] for t in listed}) == 3
        assert [t["displayName"] for t in listed] == [
            "Generated tenant 001",
            "Generated tenant 002",
            "Generated tenant 003",
        ]
        rows = sim.tenant_list()
        assert [r["users"] for r in rows] == [40, 40, 40]
        assert sim.admin_for(listed[2]["tenantId"], "GET", "config")["ruLimit"] == 3500
    finally:
        sim.stop()


def test_cli_refuses_a_tenant_twice_and_generate_tenants_alone(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "simulator", "serve", "--port", "0"]
    twice = subprocess.run(
        [*serve, "--tenant", str(DEMO), "--tenant", str(DEMO)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert twice.returncode == 2 and "are the same tenant" in twice.stderr
    alone = subprocess.run(
        [*serve, "--tenant", str(DEMO), "--generate-tenants", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert alone.returncode == 2 and "--generate-tenants needs --generate" in alone.stderr
    with pytest.raises(ValueError, match="generate_tenants needs a `generate` spec"):
        Simulator(DEMO, generate_tenants=2).start()
