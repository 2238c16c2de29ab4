"""Alert mail end to end: the simulator's outbox holds exactly the mails a person would expect."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.run import execute_run, read_run
from tests.integration.conftest import World
from tests.integration.tenants import PBI, POLICY, TenantBuilder


def apply(world: World) -> dict[str, Any]:
    return asyncio.run(execute_run(world.settings, "apply", "test")).summary()


def subjects(world: World) -> list[str]:
    return [m["message"]["subject"] for m in world.sim.admin("GET", "/_sim/outbox")["value"]]


def test_exhaustion_mails_once_again_when_worse_and_when_resolved(world_factory: Any):
    t = TenantBuilder(pbi=2)
    bi = t.group("LIC-BI", "powerbi", t.users_named("bi", 4))
    world = world_factory(t.build(), POLICY)

    apply(world)  # 4 wanted, 2 free: short by 2
    assert subjects(world) == [
        "[Licensing] Power BI Pro (POWER_BI_PRO) has run out: 2 more seat(s) needed"
    ]
    apply(world)  # unchanged: no second mail
    assert len(subjects(world)) == 1

    newcomer = t.user("late")
    world.sim.admin("POST", "/_sim/users", t.users[-1])
    world.sim.admin("POST", f"/_sim/groups/{bi}/members", {"id": newcomer})
    apply(world)  # worse: short by 3
    assert subjects(world)[1:] == [
        "[Licensing] Worse: Power BI Pro (POWER_BI_PRO) has run out: 3 more seat(s) needed"
    ]

    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 10})  # seats bought
    summary = apply(world)
    assert {g["displayName"]: g["decision"] for g in summary["groups"]} == {"LIC-BI": "assign"}
    assert subjects(world)[2:] == [
        "[Licensing] Resolved: Power BI Pro (POWER_BI_PRO) has run out: 3 more seat(s) needed"
    ]
    apply(world)
    assert len(subjects(world)) == 3


def test_guest_added_then_removed_mails_blocked_then_resolved(world_factory: Any):
    t = TenantBuilder()
    team = t.group("LIC-Team", "e5-full", t.users_named("team", 2))
    world = world_factory(t.build(), POLICY)
    apply(world)
    assert subjects(world) == []

    guest = t.user("partner", guest=True)
    world.sim.admin("POST", "/_sim/users", t.users[-1])
    world.sim.admin("POST", f"/_sim/groups/{team}/members", {"id": guest})
    apply(world)
    apply(world)
    mails = world.sim.admin("GET", "/_sim/outbox")["value"]
    assert [m["message"]["subject"] for m in mails] == [
        "[Licensing] Group LIC-Team is blocked: 1 B2B guest(s)"
    ]
    assert "partner_fabrikam.com#EXT#@contoso.example" in mails[0]["message"]["body"]["content"]
    assert [r["emailAddress"]["address"] for r in mails[0]["message"]["toRecipients"]] == [
        "it-ops@contoso.com"
    ]

    world.sim.admin("DELETE", f"/_sim/groups/{team}/members/{guest}")
    apply(world)
    assert subjects(world)[1:] == [
        "[Licensing] Resolved: Group LIC-Team is blocked: 1 B2B guest(s)"
    ]


def test_a_failing_mailbox_leaves_enforcement_and_records_intact_and_retries(world_factory: Any):
    t = TenantBuilder(pbi=1)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 3))
    t.group("LIC-Team", "e5-full", t.users_named("team", 2))
    world = world_factory(t.build(), POLICY)
    # The mailbox refuses the app, as when the Exchange application access policy leaves it out.
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": "/sendMail", "status": 403, "count": 100, "code": "ErrorAccessDenied"},
    )

    summary = apply(world)
    assert summary["status"] == "succeeded"
    assert {g["displayName"]: g["outcome"] for g in summary["groups"]} == {
        "LIC-BI": "not-applied",
        "LIC-Team": "applied",
    }
    [alert] = summary["alerts"]
    assert (
        alert["sent"] is False and "403" in alert["error"] and "ErrorAccessDenied" in alert["error"]
    )
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None and recorded["alerts"] == summary["alerts"]
    assert subjects(world) == []

    world.sim.admin("DELETE", "/_sim/faults")
    apply(world)  # the unsent alert goes out on the next run
    assert subjects(world) == [
        "[Licensing] Power BI Pro (POWER_BI_PRO) has run out: 2 more seat(s) needed"
    ]


def test_an_operator_snoozes_a_condition_from_the_command_line(
    world_factory: Any, monkeypatch: Any, capsys: Any
):
    from shared.cli import main

    t = TenantBuilder(pbi=2)
    bi = t.group("LIC-BI", "powerbi", t.users_named("bi", 4))
    world = world_factory(t.build(), POLICY)
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    apply(world)
    assert len(subjects(world)) == 1
    key = f"sku-exhausted-{PBI}"
    assert main(["alerts"]) == 0
    assert key in capsys.readouterr().out
    assert main(["alerts", "--snooze", key, "--hours", "48"]) == 0
    assert "no mail until" in capsys.readouterr().out
    assert main(["alerts", "--snooze", "no-such-condition"]) == 1

    late = t.user("late")
    world.sim.admin("POST", "/_sim/users", t.users[-1])
    world.sim.admin("POST", f"/_sim/groups/{bi}/members", {"id": late})
    apply(world)  # worse, but snoozed: no mail
    assert len(subjects(world)) == 1
    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 10})
    apply(world)  # cleared: the resolved mail still goes out
    assert subjects(world)[1].startswith("[Licensing] Resolved: ")


# ---------------------------------------------------------------------------------------------
# A run resolves only what it actually read (each test starts with an open alert)


def states(world: World) -> dict[str, Any]:
    return {k: v["Status"] for k, v in world.store.alert_states().items()}


def guest_world(world_factory: Any) -> tuple[World, str, str]:
    """LIC-Partners is blocked by a guest (its alert mailed and open); LIC-Team is fine."""
    t = TenantBuilder()
    partners = t.group("LIC-Partners", "e5-full", [t.user("ann"), t.user("eve", guest=True)])
    team = t.group("LIC-Team", "e5-full", t.users_named("team", 2))
    world = world_factory(t.build(), POLICY)
    apply(world)
    assert subjects(world) == ["[Licensing] Group LIC-Partners is blocked: 1 B2B guest(s)"]
    return world, partners, team


def test_a_run_limited_to_other_groups_leaves_an_open_guest_alert_open(world_factory: Any):
    world, partners, team = guest_world(world_factory)
    summary = asyncio.run(execute_run(world.settings, "apply", "test", group_ids=[team])).summary()
    assert [g["displayName"] for g in summary["groups"]] == ["LIC-Team"]
    assert subjects(world)[1:] == []  # LIC-Partners was not read: nothing about it is "Resolved"
    assert states(world) == {f"group-guests-{partners}": "open"}
    # A full run that reads it and finds the guest gone resolves it, once.
    guest = next(u for u in world.state()["users"] if u["displayName"] == "eve")
    world.sim.admin("DELETE", f"/_sim/groups/{partners}/members/{guest['id']}")
    apply(world)
    assert subjects(world)[1:] == [
        "[Licensing] Resolved: Group LIC-Partners is blocked: 1 B2B guest(s)"
    ]


def test_a_group_whose_members_cannot_be_read_keeps_its_alert_open(world_factory: Any):
    world, partners, _ = guest_world(world_factory)
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": f"/groups/{partners}/members", "status": 403, "count": 100},
    )
    summary = apply(world)
    assert summary["status"] == "partial"
    assert subjects(world)[1:] == ["[Licensing] Licensing run partial"]
    assert states(world) == {f"group-guests-{partners}": "open", "run-problem": "open"}


def test_a_failed_run_sends_the_run_problem_and_resolves_nothing(world_factory: Any):
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 4))
    world = world_factory(t.build(), POLICY)
    apply(world)
    assert subjects(world) == [
        "[Licensing] Power BI Pro (POWER_BI_PRO) has run out: 2 more seat(s) needed"
    ]
    world.sim.admin("POST", "/_sim/faults", {"path": "/subscribedSkus", "status": 403, "count": 9})
    summary = apply(world)
    assert summary["status"] == "failed"
    assert subjects(world)[1:] == ["[Licensing] Licensing run failed"]
    assert states(world) == {f"sku-exhausted-{PBI}": "open", "run-problem": "open"}

    world.sim.admin("DELETE", "/_sim/faults")
    apply(world)  # read again, still short: no "Again" mail, only the run problem clears
    assert subjects(world)[2:] == ["[Licensing] Resolved: Licensing run failed"]


def without(world: World, role: str) -> Any:
    """A simulator credential with every permission the app declares except `role`."""
    from shared.credentials import LocalSimulatorCredential
    from shared.graph import required_roles

    s = world.settings
    assert s.sim_token_url is not None
    roles = [r for r in required_roles() if r != role]
    return LocalSimulatorCredential(s.sim_token_url, s.graph_base_url, roles)


def test_a_write_refused_403_names_the_permission_to_grant(world_factory: Any):
    t = TenantBuilder()
    t.group("LIC-Team", "e5-full", t.users_named("team", 2))
    world = world_factory(t.build(), POLICY)
    # The app was consented everything but the licence write.
    cred = without(world, "LicenseAssignment.ReadWrite.All")
    summary = asyncio.run(execute_run(world.settings, "apply", "test", credential=cred)).summary()

    assert summary["status"] == "partial"
    [team] = summary["groups"]
    assert team["outcome"] == "failed"
    assert "HTTP 403" in team["outcomeDetail"]
    assert "grant LicenseAssignment.ReadWrite.All" in team["outcomeDetail"]
    [mail] = world.sim.admin("GET", "/_sim/outbox")["value"]
    assert mail["message"]["subject"] == "[Licensing] Licensing run partial"
    body = mail["message"]["body"]["content"]
    assert "LicenseAssignment.ReadWrite.All" in body and "LIC-Team" in body


def test_a_reprocess_refused_403_names_its_own_permission(world_factory: Any):
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 4), [{"skuId": PBI, "disabledPlans": []}])
    world = world_factory(t.build(), POLICY)
    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 4})  # seats for the 2 stuck users
    cred = without(world, "User.ReadWrite.All")
    summary = asyncio.run(execute_run(world.settings, "apply", "test", credential=cred)).summary()
    [bi] = summary["groups"]
    assert bi["decision"] == "reprocess" and bi["outcome"] == "failed"
    assert "reprocessLicenseAssignment for user" in bi["outcomeDetail"]
    assert "grant User.ReadWrite.All" in bi["outcomeDetail"]
    assert bi["missingPermissions"] == ["User.ReadWrite.All"]


# ---------------------------------------------------------------------------------------------
# Measured means measured: Graph processes a group's licences after answering assignLicense

LOW_POLICY = POLICY + "skus: {POWER_BI_PRO: {warnBelowFree: 5}}\n"


def low_seat_world(world_factory: Any, delay_s: float, **settings: str) -> World:
    """10 Power BI seats, a warning below 5; LIC-BI's 7 members take 7 (3 left)."""
    t = TenantBuilder(pbi=10)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 7))
    world = world_factory(t.build(), LOW_POLICY, **settings)
    world.sim.admin("PATCH", "/_sim/config", {"processingDelayS": delay_s})
    return world


def test_seats_are_measured_once_graph_finished_processing_and_the_low_alert_fires(
    world_factory: Any,
):
    world = low_seat_world(world_factory, 0.6)
    summary = apply(world)
    [sku] = [s for s in summary["skus"] if s["skuId"] == PBI]
    assert sku["freeAfterSource"] == "measured"
    assert sku["freeAfter"] == 3  # what Graph counts once it processed the group
    assert world.state()["skus"][2]["consumedUnits"] == 7
    assert subjects(world) == [
        "[Licensing] Power BI Pro (POWER_BI_PRO) is running low: 3 free seat(s), "
        "under the warning level of 5"
    ]


def test_seats_still_processing_at_the_wait_cap_are_labelled_planned_and_still_alert(
    world_factory: Any,
):
    world = low_seat_world(world_factory, 30, LICENSING_MEASURE_WAIT_SECONDS="0.5")
    summary = apply(world)
    [sku] = [s for s in summary["skus"] if s["skuId"] == PBI]
    assert world.state()["skus"][2]["consumedUnits"] == 0  # Graph has not processed it yet
    assert sku["freeAfterSource"] == "planned" and sku["freeAfter"] == 3
    assert subjects(world) == [
        "[Licensing] Power BI Pro (POWER_BI_PRO) is running low: 3 free seat(s), "
        "under the warning level of 5"
    ]


def test_a_limited_run_or_a_profile_sku_the_tenant_lacks_leaves_a_seat_alert_open(
    world_factory: Any,
):
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 4))
    team = t.group("LIC-Team", "e5-full", t.users_named("team", 2))
    world = world_factory(t.build(), POLICY)
    apply(world)
    assert subjects(world) == [
        "[Licensing] Power BI Pro (POWER_BI_PRO) has run out: 2 more seat(s) needed"
    ]

    # Limited to LIC-Team: LIC-BI's demand for Power BI was not read.
    asyncio.run(execute_run(world.settings, "apply", "test", group_ids=[team]))
    assert subjects(world)[1:] == []

    # The policy gains a profile whose SKU the tenant does not have: the run fails before planning.
    world.settings.policy_path.write_text(POLICY.replace("profiles:", VISIO_PROFILE, 1))
    summary = apply(world)
    assert summary["status"] == "failed" and "VISIOCLIENT" in (summary["error"] or "")
    assert subjects(world)[1:] == ["[Licensing] Licensing run failed"]
    assert states(world) == {f"sku-exhausted-{PBI}": "open", "run-problem": "open"}


VISIO_PROFILE = "profiles:\n  visio:\n    skus: [{sku: VISIOCLIENT}]"
