"""The engine end to end under every value of each simulator switch (docs/simulator.md
"Switches"): where Microsoft's docs are silent the engine must be right whichever way Entra
behaves. Each test asserts what an administrator would notice: the decisions, the writes, and
the licences members end up with."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from shared.credentials import LocalSimulatorCredential
from shared.graph import required_roles, token_roles
from shared.run import execute_run
from shared.settings import Mode
from tests.integration.conftest import World
from tests.integration.tenants import E5, EMS, EXO, PBI, POLICY, TenantBuilder

ERROR_SKU_LISTED = {False: (), True: ("--error-sku-in-assigned-licenses",)}
MULTI_SKU_ERROR = ("all", "short-only")
HIDDEN_MEMBERS = ("forbidden", "empty", "partial")


def run(world: World, mode: Mode = "apply", roles: list[str] | None = None) -> dict[str, Any]:
    credential = None
    if roles is not None:  # a deployment granted exactly these Graph permissions
        assert world.settings.sim_token_url is not None
        credential = LocalSimulatorCredential(
            world.settings.sim_token_url, world.settings.graph_base_url, roles
        )
    report = asyncio.run(execute_run(world.settings, mode, "test", credential=credential))
    return report.summary()


def by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["displayName"]: g for g in summary["groups"]}


def states(world: World, group_name: str) -> dict[str, dict[str, tuple[str, str | None]]]:
    """UPN -> {skuId: (state, error)} of the group's assignments, once processing is done."""
    state = world.wait_for_processing()
    group = next(g for g in state["groups"] if g["displayName"] == group_name)
    users = {u["id"]: u for u in state["users"]}
    return {
        users[m]["userPrincipalName"]: {
            s["skuId"]: (s["state"], s["error"])
            for s in users[m]["licenseAssignmentStates"]
            if s["assignedByGroup"] == group["id"]
        }
        for m in group["members"]
        if m in users
    }


def consumed(world: World) -> dict[str, int]:
    return {s["skuId"]: s["consumedUnits"] for s in world.state()["skus"]}


# ---- an Error SKU in assignedLicenses, or not ------------------------------------------


@pytest.mark.parametrize("listed", [False, True], ids=["error-sku-not-listed", "error-sku-listed"])
def test_count_violation_is_reprocessed_once_seats_are_bought(world_factory: Any, listed: bool):
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 4), [{"skuId": PBI, "disabledPlans": []}])
    world = world_factory(t.build(), POLICY, sim_args=ERROR_SKU_LISTED[listed])

    blocked = by_name(run(world))["LIC-BI"]
    assert blocked["decision"] == "blocked-seats", blocked["reason"]
    assert blocked["shortfall"] == {"POWER_BI_PRO": 2}
    assert world.licence_writes() == []

    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 4})
    fixed = by_name(run(world))["LIC-BI"]
    assert fixed["decision"] == "reprocess", fixed["reason"]
    assert fixed["reprocessUsers"] == 2 and fixed["outcome"] == "applied"
    held = states(world, "LIC-BI")
    assert all(s == {PBI: ("Active", None)} for s in held.values()), held
    assert consumed(world)[PBI] == 4
    assert by_name(run(world))["LIC-BI"]["decision"] == "compliant"


# ---- where the error lands on a multi-SKU group ------------------------------------------


@pytest.mark.parametrize("mode", MULTI_SKU_ERROR)
def test_a_multi_sku_group_short_on_one_sku(world_factory: Any, mode: str):
    # E5 + EMS on the group, 4 members, 2 E5 seats: 2 members fail the whole group.
    t = TenantBuilder(e5=2, ems=10)
    t.group(
        "LIC-Multi",
        "e5-full",
        t.users_named("multi", 4),
        [{"skuId": E5, "disabledPlans": []}, {"skuId": EMS, "disabledPlans": []}],
    )
    world = world_factory(t.build(), POLICY, sim_args=("--multi-sku-error", mode))

    blocked = by_name(run(world))["LIC-Multi"]
    assert blocked["decision"] == "blocked-seats", blocked["reason"]
    assert blocked["shortfall"] == {"ENTERPRISEPREMIUM": 2}  # EMS is not short
    assert world.licence_writes() == []

    world.sim.admin("PATCH", f"/_sim/skus/{E5}", {"enabled": 4})
    fixed = by_name(run(world))["LIC-Multi"]
    assert fixed["decision"] == "reprocess", fixed["reason"]
    assert fixed["reprocessUsers"] == 2 and fixed["outcome"] == "applied"
    held = states(world, "LIC-Multi")
    want = {E5: ("Active", None), EMS: ("Active", None)}
    assert all(s == want for s in held.values()), held
    assert consumed(world)[E5] == 4 and consumed(world)[EMS] == 4
    assert by_name(run(world))["LIC-Multi"]["decision"] == "compliant"


# ---- hidden membership -------------------------------------------------------------------


@pytest.mark.parametrize("mode", HIDDEN_MEMBERS)
def test_a_hidden_membership_group_is_never_planned_on_a_partial_list(
    world_factory: Any, mode: str
):
    t = TenantBuilder()
    t.group("LIC-Board", "e5-full", t.users_named("board", 4), visibility="HiddenMembership")
    t.group("LIC-Open", "e5-full", t.users_named("open", 2))
    world = world_factory(t.build(), POLICY, sim_args=("--hidden-members", mode))

    # A deployment that forgot Member.Read.Hidden: whatever Graph answers (403, nobody, some
    # members), the group is unknown and untouched; the others go on.
    forgot = [r for r in required_roles() if r != "Member.Read.Hidden"]
    summary = run(world, roles=forgot)
    board = by_name(summary)["LIC-Board"]
    assert board["decision"] == "unknown", board
    assert "Member.Read.Hidden" in board["reason"]
    assert summary["status"] == "partial"
    board_id = world.group("LIC-Board")["id"]
    assert not any(board_id in w["path"] for w in world.licence_writes())
    assert by_name(summary)["LIC-Open"]["outcome"] == "applied"

    # Granted (the shipped permission set): read completely and assigned to all four.
    board = by_name(run(world))["LIC-Board"]
    assert board["decision"] == "assign" and board["memberCount"] == 4
    assert board["demand"] == {"ENTERPRISEPREMIUM": 4, "EMSPREMIUM": 4}
    held = states(world, "LIC-Board")
    assert len(held) == 4 and all(s[E5] == ("Active", None) for s in held.values())


# ---- permissions: LicenseAssignment.ReadWrite.All does not read subscribedSkus ----------


def test_a_deployment_without_licence_assignment_read_fails_naming_it(world_factory: Any):
    t = TenantBuilder()
    t.group("LIC-New", "e5-full", t.users_named("new", 2))
    world = world_factory(t.build(), POLICY)
    # Organization.Read.All (granted for the subscriptions) also reads subscribedSkus, as List
    # subscribedSkus lists it among the higher permissions: this deployment has neither.
    forgot = [
        r
        for r in required_roles()
        if r not in ("LicenseAssignment.Read.All", "Organization.Read.All")
    ]
    assert "LicenseAssignment.ReadWrite.All" in forgot
    summary = run(world, roles=forgot)
    assert summary["status"] == "failed"
    assert "403" in summary["error"] and "LicenseAssignment.Read.All" in summary["error"]
    assert world.licence_writes() == []


# ---- asynchronous processing: a 202 means later -----------------------------------------


def test_a_second_run_while_entra_still_processes_writes_nothing_more(world_factory: Any):
    t = TenantBuilder(e5=5, ems=5)
    t.group("LIC-A", "e5-full", t.users_named("a", 3))
    t.group("LIC-B", "e5-full", t.users_named("b", 2))
    # Entra can take hours: the run does not wait for it (LICENSING_MEASURE_WAIT_SECONDS=0).
    world = world_factory(
        t.build(),
        POLICY,
        sim_args=("--processing-delay-s", "1"),
        LICENSING_MEASURE_WAIT_SECONDS="0",
    )
    first = by_name(run(world))
    assert first["LIC-A"]["decision"] == first["LIC-B"]["decision"] == "assign"
    assert world.group("LIC-A")["licenseProcessingState"]["state"] != "ProcessingComplete"
    world.clear_requests()
    # Entra has not processed the groups yet: nobody holds a seat, but the seats are spoken for.
    second = by_name(run(world))
    assert world.licence_writes() == []
    assert {g["decision"] for g in second.values()} == {"compliant"}, second
    held = states(world, "LIC-A") | states(world, "LIC-B")
    assert len(held) == 5 and all(s[E5] == ("Active", None) for s in held.values())


def test_a_suspended_subscription_is_reported_and_its_disabled_users_left_alone(
    world_factory: Any,
):
    t = TenantBuilder()
    t.group(
        "LIC-E5",
        "e5-full",
        t.users_named("e5", 2),
        [{"skuId": E5, "disabledPlans": []}, {"skuId": EMS, "disabledPlans": []}],
    )
    world = world_factory(t.build(), POLICY)
    assert by_name(run(world))["LIC-E5"]["decision"] == "compliant"
    world.sim.admin("PATCH", f"/_sim/skus/{E5}", {"capabilityStatus": "Suspended"})
    held = states(world, "LIC-E5")
    assert all(s[E5] == ("Disabled", None) for s in held.values()), held
    world.clear_requests()
    group = by_name(run(world))["LIC-E5"]
    assert group["decision"] == "blocked-policy" and "Suspended" in group["reason"]
    assert world.licence_writes() == []


# ---- "Identify and resolve license assignment problems for a group" ----------------------

ADDON = "c0000000-0000-4000-8000-000000000001"
ADDON_PLAN = "c0000000-0000-4000-8000-000000000002"
RIVAL = "c0000000-0000-4000-8000-000000000003"
RIVAL_PLAN = "c0000000-0000-4000-8000-000000000004"


def _rules_tenant() -> TenantBuilder:
    """E5's Exchange plan is the add-on's prerequisite and conflicts with RIVAL's plan."""
    t = TenantBuilder()
    t.skus += [
        {
            "skuId": ADDON,
            "skuPartNumber": "MCOMEETADV",
            "prepaidUnits": {"enabled": 10},
            "servicePlans": [
                {
                    "servicePlanId": ADDON_PLAN,
                    "servicePlanName": "MCOMEETADV",
                    "prerequisitePlans": [EXO],
                }
            ],
        },
        {
            "skuId": RIVAL,
            "skuPartNumber": "EXCHANGESTANDARD",
            "prepaidUnits": {"enabled": 10},
            "servicePlans": [
                {
                    "servicePlanId": RIVAL_PLAN,
                    "servicePlanName": "EXCHANGE_S_STANDARD",
                    "mutuallyExclusiveWith": [EXO],
                }
            ],
        },
    ]
    return t


def _policy_with(extra_profiles: str) -> str:
    head, selectors = POLICY.split("selectors:")
    return head + extra_profiles + "selectors:" + selectors


def test_an_add_on_without_its_prerequisite_fails_at_assign_license(world_factory: Any):
    t = _rules_tenant()
    t.group("LIC-Addon", "addon-alone", t.users_named("addon", 2))
    t.group("LIC-Addon-E5", "addon-with-e5", t.users_named("both", 2))
    policy = _policy_with(
        "  addon-alone:\n    skus: [{sku: MCOMEETADV}]\n"
        "  addon-with-e5:\n    skus: [{sku: ENTERPRISEPREMIUM}, {sku: MCOMEETADV}]\n"
    )
    world = world_factory(t.build(), policy)
    summary = run(world)
    groups = by_name(summary)
    alone = groups["LIC-Addon"]
    assert alone["outcome"] == "failed", alone
    assert "requires EXCHANGE_S_ENTERPRISE" in alone["outcomeDetail"]
    assert world.group("LIC-Addon")["assignedLicenses"] == []
    assert groups["LIC-Addon-E5"]["outcome"] == "applied"
    held = states(world, "LIC-Addon-E5")
    assert all(s[ADDON] == ("Active", None) for s in held.values()), held


@pytest.mark.parametrize("disable_exchange", [False, True])
def test_conflicting_service_plans_are_reported_unless_the_profile_disables_them(
    world_factory: Any, disable_exchange: bool
):
    t = _rules_tenant()
    members = t.users_named("m", 2)
    t.users[0]["directLicenses"] = [{"skuId": RIVAL, "disabledPlans": []}]  # m0: a rival plan
    t.group("LIC-E5", "e5-custom", members)
    plans = "[EXCHANGE_S_ENTERPRISE]" if disable_exchange else "[]"
    policy = _policy_with(
        f"  e5-custom:\n    skus: [{{sku: ENTERPRISEPREMIUM, disabledPlans: {plans}}}]\n"
    )
    world = world_factory(t.build(), policy)
    assert by_name(run(world))["LIC-E5"]["outcome"] == "applied"
    held = states(world, "LIC-E5")
    m0 = "m0@contoso.example"
    if disable_exchange:
        assert held[m0][E5] == ("Active", None)
    else:
        assert held[m0][E5] == ("Error", "MutuallyExclusiveViolation")
        world.clear_requests()
        # Reported with the advice; seats would not fix it, so nothing is reprocessed.
        again = by_name(run(world))["LIC-E5"]
        assert again["licenseErrors"] == {"MutuallyExclusiveViolation": [m0]}
        assert world.licence_writes() == []


def test_a_removal_blocked_by_a_dependent_licence_is_reported(world_factory: Any):
    # The group carries E5, which the policy no longer lists; one member holds the add-on
    # directly, which needs E5's Exchange plan: Entra cannot take E5 from that member.
    t = _rules_tenant()
    members = t.users_named("dep", 3)
    t.users[0]["directLicenses"] = [{"skuId": ADDON, "disabledPlans": []}]
    t.group(
        "LIC-Move",
        "powerbi",
        members,
        [{"skuId": E5, "disabledPlans": []}, {"skuId": PBI, "disabledPlans": []}],
    )
    world = world_factory(t.build(), POLICY + "removeUnlistedLicenses: true\n")
    first = by_name(run(world))["LIC-Move"]
    assert first["removeLicenses"] == [E5] and first["outcome"] == "applied"
    held = states(world, "LIC-Move")
    assert held["dep0@contoso.example"][E5] == ("ActiveWithError", "DependencyViolation")
    assert E5 not in held["dep1@contoso.example"]
    # The next run tells the administrator who still holds the licence and why.
    again = by_name(run(world))["LIC-Move"]
    assert again["licenseErrors"].get("DependencyViolation") == ["dep0@contoso.example"], again


def test_the_token_roles_the_engine_reads_are_the_jwt_roles_claim():
    # An Entra app-only access token is a JWT whose payload carries the granted app roles.
    payload = (
        base64.urlsafe_b64encode(
            json.dumps(
                {"aud": "https://graph.microsoft.com", "roles": ["Member.Read.Hidden"]}
            ).encode()
        )
        .decode()
        .rstrip("=")
    )
    assert token_roles(f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln") == {"Member.Read.Hidden"}
    # Anything unreadable grants nothing, so a hidden group stays unknown.
    assert token_roles("opaque-token") == frozenset()
    assert token_roles("a.%%%.b") == frozenset()
    assert token_roles("a." + base64.urlsafe_b64encode(b'{"roles": "x"}').decode() + ".b") == set()
