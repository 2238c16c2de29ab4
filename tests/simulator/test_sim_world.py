"""The behaviours where the engine could otherwise get away with a bug because the simulator
agreed with it (docs/simulator.md "Switches"): licence states and a success's null error, the
switches where Microsoft's docs are silent, removal and add-on rules from "Identify and resolve
license assignment problems for a group", hidden memberships and the subscribedSkus permission.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.__main__ import main as sim_main
from simulator.tenant import Tenant, TenantError
from tests.simulator.conftest import (
    E5,
    EMS,
    READ_ALL,
    TENANT_ID,
    Client,
    gid,
    serve,
    small_tenant,
    uid,
)

BASE = "a0000000-0000-4000-8000-000000000001"  # an E3-like product
ADDON = "a0000000-0000-4000-8000-000000000002"  # an add-on (Audio Conferencing-like)
RIVAL = "a0000000-0000-4000-8000-000000000003"  # carries a plan that conflicts with BASE's
EXO1 = "b0000000-0000-4000-8000-000000000001"
SFB = "b0000000-0000-4000-8000-000000000002"
AUDIO = "b0000000-0000-4000-8000-000000000003"
EXO2 = "b0000000-0000-4000-8000-000000000004"
HIDDEN = gid(7)


def rules_tenant() -> dict[str, Any]:
    """small_tenant plus three SKUs with service plan rules and a hidden-membership group:
    AUDIO (ADDON) needs SFB (BASE); EXO2 (RIVAL) cannot be held with EXO1 (BASE)."""
    t = small_tenant()
    t["skus"] += [
        {
            "skuId": BASE,
            "skuPartNumber": "BASEPACK",
            "prepaidUnits": {"enabled": 10},
            "servicePlans": [
                {"servicePlanId": EXO1, "servicePlanName": "EXCHANGE_S_STANDARD"},
                {"servicePlanId": SFB, "servicePlanName": "MCOSTANDARD"},
            ],
        },
        {
            "skuId": ADDON,
            "skuPartNumber": "MCOMEETADV",
            "prepaidUnits": {"enabled": 10},
            "servicePlans": [
                {
                    "servicePlanId": AUDIO,
                    "servicePlanName": "MCOMEETADV",
                    "prerequisitePlans": [SFB],
                }
            ],
        },
        {
            "skuId": RIVAL,
            "skuPartNumber": "RIVALPACK",
            "prepaidUnits": {"enabled": 10},
            "servicePlans": [
                {
                    "servicePlanId": EXO2,
                    "servicePlanName": "EXCHANGE_S_ENTERPRISE_RIVAL",
                    "mutuallyExclusiveWith": [EXO1],
                }
            ],
        },
    ]
    t["groups"].append(
        {
            "id": HIDDEN,
            "displayName": "LIC-Board-Hidden",
            "visibility": "HiddenMembership",
            "members": [uid(1), uid(2), uid(3), uid(4)],
        }
    )
    return t


@pytest.fixture
def world() -> Iterator[Client]:
    server = serve(rules_tenant())
    try:
        yield Client(server)
    finally:
        server.stop()


def _assign(client: Client, group: str, add: list[dict[str, Any]], remove: list[str] = []):  # noqa: B006
    return client.post(
        f"/v1.0/groups/{group}/assignLicense", {"addLicenses": add, "removeLicenses": remove}
    )


def _direct(client: Client, user: str, add: list[dict[str, Any]], remove: list[str] = []):  # noqa: B006
    return client.post(
        f"/v1.0/users/{user}/assignLicense", {"addLicenses": add, "removeLicenses": remove}
    )


def _graph_states(client: Client, user: str) -> list[dict[str, Any]]:
    reply = client.get(f"/v1.0/users/{user}?$select=licenseAssignmentStates,assignedLicenses")
    assert reply.status == 200, reply.text
    return reply.json["licenseAssignmentStates"]


def _by_group(client: Client, user: str, group: str) -> dict[str, tuple[str, str | None]]:
    return {
        s["skuId"]: (s["state"], s["error"])
        for s in _graph_states(client, user)
        if s["assignedByGroup"] == group
    }


def _assigned(client: Client, user: str) -> set[str]:
    reply = client.get(f"/v1.0/users/{user}?$select=assignedLicenses")
    return {a["skuId"] for a in reply.json["assignedLicenses"]}


# ---- states and errors ---------------------------------------------------------------------


def test_a_successful_assignment_has_a_null_error_over_http(client: Client) -> None:
    states = _graph_states(client, uid(1))
    assert states and all(s["state"] == "Active" for s in states)
    # licenseAssignmentState: "If the license is assigned successfully, this field is Null."
    assert [s["error"] for s in states] == [None] * len(states)


def test_a_suspended_subscription_leaves_its_assignments_disabled_but_counted(
    client: Client,
) -> None:
    before = client.consumed("ENTERPRISEPREMIUM")
    reply = client.call(
        "PATCH", f"/_sim/skus/{E5}", body={"capabilityStatus": "Suspended"}, auth=None
    )
    assert reply.status == 200 and reply.json["capabilityStatus"] == "Suspended"
    assert _by_group(client, uid(1), gid(1))[E5] == ("Disabled", None)
    assert _by_group(client, uid(1), gid(1))[EMS] == ("Active", None)
    assert client.consumed("ENTERPRISEPREMIUM") == before
    client.call("PATCH", f"/_sim/skus/{E5}", body={"capabilityStatus": "Enabled"}, auth=None)
    assert _by_group(client, uid(1), gid(1))[E5] == ("Active", None)
    bad = client.call("PATCH", f"/_sim/skus/{E5}", body={"capabilityStatus": "Off"}, auth=None)
    assert bad.status == 400


# ---- switch: an Error SKU in assignedLicenses ------------------------------------------------


@pytest.mark.parametrize("listed", [False, True])
def test_error_sku_in_assigned_licenses_switch(listed: bool) -> None:
    t = small_tenant()
    t["skus"][0]["prepaidUnits"]["enabled"] = 2  # E5: users 1 and 2 take both seats
    server = serve(t, error_sku_in_assigned_licenses=listed)
    try:
        client = Client(server)
        client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(3)}, auth=None)
        assert _by_group(client, uid(3), gid(1)) == {
            E5: ("Error", "CountViolation"),
            EMS: ("Error", "CountViolation"),
        }
        assert _assigned(client, uid(3)) == ({E5, EMS} if listed else set())
        # The seat is not taken either way.
        assert client.consumed("ENTERPRISEPREMIUM") == 2
        # The same answer through $filter on assignedLicenses.
        flt = f"/v1.0/users?$filter=assignedLicenses/any(a:a/skuId%20eq%20{E5})&$select=id"
        ids = {u["id"] for u in client.get(flt).json["value"]}
        assert (uid(3) in ids) is listed
    finally:
        server.stop()


# ---- switch: where the error lands on a multi-SKU group ----------------------------------


@pytest.mark.parametrize(
    ("mode", "ems_error"), [("all", "CountViolation"), ("short-only", "Other")]
)
def test_multi_sku_error_switch(mode: str, ems_error: str) -> None:
    t = small_tenant()
    t["skus"][0]["prepaidUnits"]["enabled"] = 2  # E5 runs short, EMS has seats
    server = serve(t, multi_sku_error=mode)
    try:
        client = Client(server)
        client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(3)}, auth=None)
        assert _by_group(client, uid(3), gid(1)) == {
            E5: ("Error", "CountViolation"),
            EMS: ("Error", ems_error),
        }
        # All-or-nothing either way: no EMS seat is taken.
        assert client.consumed("EMSPREMIUM") == 2
        # Seats bought, then a reprocess clears both.
        client.call("PATCH", f"/_sim/skus/{E5}", body={"enabled": 3}, auth=None)
        assert client.post(f"/v1.0/users/{uid(3)}/reprocessLicenseAssignment").status == 200
        assert _by_group(client, uid(3), gid(1)) == {E5: ("Active", None), EMS: ("Active", None)}
    finally:
        server.stop()


def test_switches_are_set_through_the_admin_api_and_checked(client: Client) -> None:
    config = client.get("/_sim/config", auth=None).json
    assert config["errorSkuInAssignedLicenses"] is False
    assert config["multiSkuError"] == "all"
    assert config["hiddenMembers"] == "forbidden"
    changed = client.call(
        "PATCH",
        "/_sim/config",
        body={"errorSkuInAssignedLicenses": True, "multiSkuError": "short-only"},
        auth=None,
    )
    assert changed.status == 200, changed.text
    assert changed.json["errorSkuInAssignedLicenses"] is True
    assert changed.json["multiSkuError"] == "short-only"
    for bad in ({"multiSkuError": "some"}, {"hiddenMembers": 1}, {"errorSkuInAssignedLicenses": 1}):
        reply = client.call("PATCH", "/_sim/config", body=bad, auth=None)
        assert reply.status == 400, bad
    assert client.get("/_sim/config", auth=None).json["multiSkuError"] == "short-only"


def test_the_cli_refuses_an_unknown_switch_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        sim_main(["serve", "--tenant", "x.json", "--multi-sku-error", "some"])
    assert "--multi-sku-error" in capsys.readouterr().err


# ---- "Identify and resolve license assignment problems for a group" ----------------------


def test_an_add_on_without_its_prerequisite_fails_at_assign_license(world: Client) -> None:
    refused = _assign(world, gid(2), [{"skuId": ADDON}])
    assert refused.status == 400
    assert "requires MCOSTANDARD" in refused.json["error"]["message"]
    assert (
        world.get(f"/v1.0/groups/{gid(2)}?$select=assignedLicenses").json["assignedLicenses"] == []
    )
    # The prerequisite disabled in the same group does not count.
    disabled = _assign(world, gid(2), [{"skuId": BASE, "disabledPlans": [SFB]}, {"skuId": ADDON}])
    assert disabled.status == 400
    assert _assign(world, gid(2), [{"skuId": BASE}, {"skuId": ADDON}]).status == 202
    # Removing the prerequisite while the add-on stays is refused the same way.
    assert _assign(world, gid(2), [], [BASE]).status == 400
    assert _by_group(world, uid(3), gid(2)) == {BASE: ("Active", None), ADDON: ("Active", None)}


def test_a_direct_add_on_needs_its_prerequisite_from_some_source(world: Client) -> None:
    assert _direct(world, uid(3), [{"skuId": ADDON}]).status == 400
    assert _assign(world, gid(2), [{"skuId": BASE}]).status == 202  # user 3 gets SFB
    assert _direct(world, uid(3), [{"skuId": ADDON}]).status == 200


def test_removing_a_plan_another_licence_needs_is_a_dependency_violation(world: Client) -> None:
    assert _assign(world, gid(2), [{"skuId": BASE}]).status == 202
    assert _direct(world, uid(3), [{"skuId": ADDON}]).status == 200  # needs SFB from G2
    seats = world.consumed("BASEPACK")
    assert _assign(world, gid(2), [], [BASE]).status == 202
    # User 3 keeps BASE (the removal failed) with the error recorded; user 4 lost it.
    assert _by_group(world, uid(3), gid(2)) == {BASE: ("ActiveWithError", "DependencyViolation")}
    assert _by_group(world, uid(4), gid(2)) == {}
    assert world.consumed("BASEPACK") == seats - 2  # users 4 and 5 freed theirs, 3 did not
    errors = world.get(f"/v1.0/groups/{gid(2)}/membersWithLicenseErrors?$select=id").json
    assert [m["id"] for m in errors["value"]] == [uid(3)]
    # Once the dependent licence goes, a reprocess finishes the removal.
    assert _direct(world, uid(3), [], [ADDON]).status == 200
    world.post(f"/v1.0/users/{uid(3)}/reprocessLicenseAssignment")
    assert _by_group(world, uid(3), gid(2)) == {}


def test_leaving_the_group_is_also_a_dependency_violation(world: Client) -> None:
    _assign(world, gid(2), [{"skuId": BASE}])
    _direct(world, uid(3), [{"skuId": ADDON}])
    world.call("DELETE", f"/_sim/groups/{gid(2)}/members/{uid(3)}", auth=None)
    assert _by_group(world, uid(3), gid(2)) == {BASE: ("ActiveWithError", "DependencyViolation")}


def test_mutually_exclusive_plans_are_checked_per_plan_honouring_disabled_plans(
    world: Client,
) -> None:
    assert _assign(world, gid(2), [{"skuId": BASE}]).status == 202  # users 3-5 hold EXO1
    world.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(3)}, auth=None)
    # RIVAL's EXO2 conflicts with EXO1 held through G2: the whole group fails for user 3.
    assert _assign(world, gid(1), [{"skuId": RIVAL}]).status == 202
    states = _by_group(world, uid(3), gid(1))
    assert states[RIVAL] == ("Error", "MutuallyExclusiveViolation")
    assert states[E5] == ("Error", "MutuallyExclusiveViolation")
    assert _by_group(world, uid(1), gid(1))[RIVAL] == ("Active", None)
    # With EXO1 disabled in G2, nothing conflicts any more.
    assert _assign(world, gid(2), [{"skuId": BASE, "disabledPlans": [EXO1]}]).status == 202
    world.post(f"/v1.0/users/{uid(3)}/reprocessLicenseAssignment")
    assert _by_group(world, uid(3), gid(1))[RIVAL] == ("Active", None)
    # Direct assignment reports a plan conflict at once.
    _assign(world, gid(2), [{"skuId": BASE}])
    refused = _direct(world, uid(4), [{"skuId": RIVAL}])
    assert refused.status == 400 and "MutuallyExclusiveViolation" in refused.text
    # Disabling the conflicting plan in the direct assignment makes it acceptable.
    assert _direct(world, uid(4), [{"skuId": RIVAL, "disabledPlans": [EXO2]}]).status == 200


def test_plan_rules_must_name_real_plans() -> None:
    t = rules_tenant()
    t["skus"][4]["servicePlans"][0]["prerequisitePlans"] = ["b0000000-0000-4000-8000-0000000000ff"]
    with pytest.raises(TenantError, match=r"servicePlans\[0\]\.prerequisitePlans\[0\]"):
        Tenant.from_dict(t)


def test_plan_rules_survive_a_state_export_and_never_reach_subscribed_skus(
    world: Client,
) -> None:
    again = Tenant.from_dict(world.state())
    assert again.state_digest() == world.server.tenant.state_digest()
    skus = world.get("/v1.0/subscribedSkus").json["value"]
    plans = [p for s in skus for p in s["servicePlans"]]
    assert plans and all(
        set(p) <= {"servicePlanId", "servicePlanName", "provisioningStatus", "appliesTo"}
        for p in plans
    )


# ---- hidden membership ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "count"), [("forbidden", 403, None), ("empty", 200, 0), ("partial", 200, 2)]
)
def test_hidden_membership_without_member_read_hidden(
    mode: str, status: int, count: int | None
) -> None:
    server = serve(rules_tenant(), hidden_members=mode)
    try:
        client = Client(server)
        path = f"/v1.0/groups/{HIDDEN}/members?$select=id,userPrincipalName"
        reply = client.get(path, roles=READ_ALL)
        assert reply.status == status, reply.text
        if count is not None:
            assert len(reply.json["value"]) == count
            assert "@odata.nextLink" not in reply.json  # nothing says members are missing
        full = client.get(path, roles=(*READ_ALL, "Member.Read.Hidden"))
        assert full.status == 200 and len(full.json["value"]) == 4
        # An ordinary group is unaffected.
        assert len(client.get(f"/v1.0/groups/{gid(1)}/members", roles=READ_ALL).json["value"]) == 2
        group = client.get(f"/v1.0/groups/{HIDDEN}?$select=visibility", roles=READ_ALL).json
        assert group["visibility"] == "HiddenMembership"
    finally:
        server.stop()


def test_visibility_values_are_checked() -> None:
    t = rules_tenant()
    t["groups"][-1]["visibility"] = "Hidden"
    with pytest.raises(TenantError, match=r"\$\.groups\[3\]\.visibility"):
        Tenant.from_dict(t)


# ---- permissions ---------------------------------------------------------------------------


def test_licence_assignment_read_write_does_not_grant_reading_subscribed_skus(
    client: Client,
) -> None:
    denied = client.get("/v1.0/subscribedSkus", roles=("LicenseAssignment.ReadWrite.All",))
    assert denied.status == 403
    assert denied.json["error"]["code"] == "Authorization_RequestDenied"
    ok = client.get("/v1.0/subscribedSkus", roles=("LicenseAssignment.Read.All",))
    assert ok.status == 200 and ok.json["value"][0]["id"].startswith(TENANT_ID)


# ---- processing delay --------------------------------------------------------------------


def test_a_202_means_later_under_a_processing_delay() -> None:
    server = serve(rules_tenant(), processing_delay_s=0.4)
    try:
        client = Client(server)
        reply = _assign(client, gid(2), [{"skuId": BASE}])
        assert reply.status == 202
        assert reply.json["licenseProcessingState"]["state"] == "QueuedForProcessing"
        assert _by_group(client, uid(3), gid(2)) == {}  # nothing processed yet
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _by_group(client, uid(3), gid(2)):
            time.sleep(0.05)
        assert _by_group(client, uid(3), gid(2)) == {BASE: ("Active", None)}
    finally:
        server.stop()


# ---- where Microsoft's docs disagree, the documented example wins --------------------------


@pytest.mark.parametrize("advanced", [False, True])
def test_has_members_with_license_errors_is_accepted_as_group_list_example_2_sends_it(
    advanced: bool,
) -> None:
    # The rendered capability table marks the filter default-only; Microsoft's List groups
    # example 2 sends it with ConsistencyLevel: eventual and $count=true and gets a 200.
    t = small_tenant()
    t["skus"][0]["prepaidUnits"]["enabled"] = 2
    server = serve(t)
    try:
        client = Client(server)
        client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(3)}, auth=None)
        query = "$filter=hasMembersWithLicenseErrors%20eq%20true&$select=id"
        headers = {"ConsistencyLevel": "eventual"} if advanced else {}
        reply = client.get(
            f"/v1.0/groups?{query}" + ("&$count=true" if advanced else ""), headers=headers
        )
        assert reply.status == 200, reply.text
        assert [g["id"] for g in reply.json["value"]] == [gid(1)]
    finally:
        server.stop()
