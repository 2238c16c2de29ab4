"""Removals end to end (issues 14 and 15): migration from direct assignment, reclaim from disabled
accounts, sudden losses. msgraph-sdk over HTTP to the simulator, records in Azurite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.report import render_run
from shared.run import execute_run, read_run
from shared.settings import Mode
from shared.store import to_properties
from tests.integration.conftest import World
from tests.integration.tenants import E5, EMS, PBI, POLICY, YAMMER, TenantBuilder

CARRY = [{"skuId": E5, "disabledPlans": []}, {"skuId": EMS, "disabledPlans": []}]
NO_YAMMER = [{"skuId": E5, "disabledPlans": [YAMMER]}, {"skuId": EMS, "disabledPlans": []}]


def run(world: World, mode: Mode = "plan") -> dict[str, Any]:
    return asyncio.run(execute_run(world.settings, mode, "test")).summary()


def direct(t: TenantBuilder, uid: str, *licenses: dict[str, Any]) -> str:
    next(u for u in t.users if u["id"] == uid)["directLicenses"] = list(licenses)
    return uid


def user_states(world: World, uid: str) -> list[dict[str, Any]]:
    user = next(u for u in world.state()["users"] if u["id"] == uid)
    return user["licenseAssignmentStates"]


def consumed(world: World, sku: str) -> int:
    return next(s["consumedUnits"] for s in world.state()["skus"] if s["skuId"] == sku)


def migrated_tenant() -> tuple[TenantBuilder, dict[str, str]]:
    """Direct and group assignments mixed, as a tenant looks half-way through a migration."""
    t = TenantBuilder(e5=20, ems=20, pbi=5)
    # EMS is not offered in CU: the group's licences fail for a member there (all or nothing).
    t.sku(EMS)["prohibitedUsageLocations"] = ["CU"]
    u = {
        "same": direct(t, t.user("same"), {"skuId": E5, "disabledPlans": []}),
        "fewer": direct(t, t.user("fewer"), {"skuId": E5, "disabledPlans": [YAMMER]}),
        "error": direct(t, t.user("error"), {"skuId": E5, "disabledPlans": []}),
        "more": direct(t, t.user("more"), {"skuId": E5, "disabledPlans": []}),
        "other": direct(t, t.user("other"), {"skuId": PBI, "disabledPlans": []}),
        "plain": t.user("plain"),
        "outside": direct(t, t.user("outside"), {"skuId": E5, "disabledPlans": []}),
    }
    next(x for x in t.users if x["id"] == u["error"])["usageLocation"] = "CU"
    g = {
        "mig": t.group(
            "LIC-Mig", "e5-full", [u["same"], u["fewer"], u["error"], u["other"], u["plain"]], CARRY
        ),
        # The group disables Yammer, the direct assignment does not: removing it would take a plan.
        "noyam": t.group("LIC-NoYammer", "e5-no-yammer", [u["more"]], NO_YAMMER),
    }
    return t, {**u, **g}


OPT_IN_DIRECT = POLICY + "migration:\n  removeRedundantDirect: true\n"


def test_a_migrated_tenant_is_reported_per_group_and_sku_and_nothing_is_removed_by_default(
    world_factory: Any,
):
    t, _ = migrated_tenant()
    world = world_factory(t.build(), POLICY)
    summary = run(world, "apply")
    rem = summary["removals"]
    rows = {(m["displayName"], m["skuPartNumber"]): m for m in rem["migration"]}
    assert set(rows) == {("LIC-Mig", "ENTERPRISEPREMIUM"), ("LIC-NoYammer", "ENTERPRISEPREMIUM")}
    mig = rows[("LIC-Mig", "ENTERPRISEPREMIUM")]
    assert (mig["directHolders"], mig["redundant"]) == (3, 2)
    users = {x["upn"].split("@")[0]: x for x in mig["users"]}
    assert users["same"]["redundant"] and users["fewer"]["redundant"]
    assert not users["error"]["redundant"]
    assert users["error"]["inheritedState"] == "Error"
    assert "ProhibitedInUsageLocationViolation" in users["error"]["whyNot"]
    noyam = rows[("LIC-NoYammer", "ENTERPRISEPREMIUM")]
    assert noyam["redundant"] == 0
    assert noyam["users"][0]["missingPlans"] == ["YAMMER_ENTERPRISE"]
    assert "one seat per SKU" in rem["seatsNote"]
    assert rem["removals"] == []  # the opt-in is off
    assert not [w for w in world.licence_writes() if w["path"].startswith("/v1.0/users/")]
    # Read back from Table Storage, the same report.
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None
    assert recorded["removals"]["migration"] == rem["migration"]
    assert "Direct assignments held by members of tagged groups" in render_run(recorded)


def test_the_opt_in_removes_exactly_the_redundant_direct_assignments(world_factory: Any):
    t, ids = migrated_tenant()
    world = world_factory(t.build(), OPT_IN_DIRECT)
    e5_before = consumed(world, E5)

    planned = run(world, "plan")
    listed = {
        (r["kind"], r["upn"].split("@")[0], tuple(r["skus"]))
        for r in planned["removals"]["removals"]
    }
    assert listed == {
        ("direct-license", "same", ("ENTERPRISEPREMIUM",)),
        ("direct-license", "fewer", ("ENTERPRISEPREMIUM",)),
    }
    assert {r["outcome"] for r in planned["removals"]["removals"]} == {"not-applied"}
    text = render_run(planned)
    assert "Removals (2)" in text and "same@contoso.example" in text
    assert not world.licence_writes()  # plan mode writes nothing
    # The run detail (API GET /api/runs/{runId}, CLI show) lists them from Table Storage.
    recorded = read_run(world.store, planned["runId"])
    assert recorded is not None
    assert {(r["upn"], r["outcome"]) for r in recorded["removals"]["removals"]} == {
        ("same@contoso.example", "not-applied"),
        ("fewer@contoso.example", "not-applied"),
    }
    assert "Removals (2)" in render_run(recorded)

    world.clear_requests()
    applied = run(world, "apply")
    assert applied["status"] == "succeeded"
    posted = [w for w in world.licence_writes() if w["path"].startswith("/v1.0/users/")]
    assert sorted(w["path"] for w in posted) == sorted(
        f"/v1.0/users/{ids[n]}/assignLicense" for n in ("same", "fewer")
    )
    for n in ("same", "fewer"):
        states = user_states(world, ids[n])
        assert [s["assignedByGroup"] for s in states if s["skuId"] == E5] == [ids["mig"]]
        assert all(s["state"] == "Active" for s in states)
    # Never one in error, one covering fewer plans, one outside the profile or outside groups.
    for n, sku in (("error", E5), ("more", E5), ("other", PBI), ("outside", E5)):
        assert any(
            s["assignedByGroup"] is None and s["skuId"] == sku for s in user_states(world, ids[n])
        ), n
    assert consumed(world, E5) == e5_before  # seats do not change

    rows = world.store.get_removals(applied["runId"])
    assert sorted((r["Upn"].split("@")[0], r["Kind"], r["Outcome"]) for r in rows) == [
        ("fewer", "direct-license", "applied"),
        ("same", "direct-license", "applied"),
    ]
    # The next run finds nothing left to remove.
    assert run(world, "plan")["removals"]["removals"] == []


def test_the_direct_removals_budget_refuses_the_run_before_any_write(world_factory: Any):
    t, _ = migrated_tenant()
    world = world_factory(t.build(), OPT_IN_DIRECT + "changeBudget:\n  maxDirectRemovals: 1\n")
    summary = run(world, "apply")
    assert summary["status"] == "refused"
    assert "2 direct assignments removed, the budget allows 1" in summary["refusedReason"]
    assert not world.licence_writes()


def reclaim_tenant() -> tuple[TenantBuilder, dict[str, str]]:
    t = TenantBuilder(e5=20, ems=20, pbi=5)
    u = {n: t.user(n) for n in ("active", "old", "new")}
    for n in ("old", "new"):
        next(x for x in t.users if x["id"] == u[n])["accountEnabled"] = False
    g = t.group("LIC-Staff", "e5-full", list(u.values()), CARRY)
    return t, {**u, "group": g}


def test_disabled_members_are_reported_and_removed_only_with_the_opt_in_after_the_days(
    world_factory: Any,
):
    t, ids = reclaim_tenant()
    world = world_factory(t.build(), POLICY)
    # "old" was first seen disabled 40 days ago (the row a run 40 days ago would have written).
    world.store.ensure_tables()
    world.store.note_disabled({ids["old"]: (datetime.now(UTC) - timedelta(days=40), "old")})

    first = run(world, "apply")  # opt-in off: reported, never removed
    disabled = first["removals"]["disabledMembers"]
    assert [d["displayName"] for d in disabled] == ["LIC-Staff"]
    days = {u["upn"].split("@")[0]: u["daysDisabled"] for u in disabled[0]["users"]}
    assert days == {"old": 40, "new": 0}
    assert disabled[0]["seatsHeld"] == {"ENTERPRISEPREMIUM": 2, "EMSPREMIUM": 2}
    assert first["removals"]["removals"] == []
    assert not [w for w in world.licence_writes() if w["method"] == "DELETE"]
    # The run remembered when it first saw "new" disabled.
    assert set(world.store.disabled_first_seen()) == {ids["old"], ids["new"]}

    # Opt in after 30 days: only "old" qualifies.
    (world.settings.policy_path).write_text(
        POLICY + "reclaim:\n  removeDisabledMembersAfterDays: 30\n"
    )
    e5_before = consumed(world, E5)
    planned = run(world, "plan")
    assert [(r["kind"], r["upn"]) for r in planned["removals"]["removals"]] == [
        ("group-member", "old@contoso.example")
    ]
    assert planned["removals"]["removals"][0]["frees"] == ["EMSPREMIUM", "ENTERPRISEPREMIUM"]
    world.clear_requests()
    applied = run(world, "apply")
    assert applied["status"] == "succeeded", applied
    deletes = [w for w in world.licence_writes() if w["method"] == "DELETE"]
    assert [w["path"] for w in deletes] == [
        f"/v1.0/groups/{ids['group']}/members/{ids['old']}/$ref"
    ]
    world.wait_for_processing()
    assert consumed(world, E5) == e5_before - 1  # the seat it freed
    assert user_states(world, ids["old"]) == []
    members = set(world.group("LIC-Staff")["members"])
    assert members == {ids["active"], ids["new"]}
    row = world.store.get_removals(applied["runId"])[0]
    assert (row["Kind"], row["Outcome"], row["GroupId"]) == (
        "group-member",
        "applied",
        ids["group"],
    )
    assert "ENTERPRISEPREMIUM" in row["FreesJson"]


def test_a_30_percent_member_drop_alerts_and_blocks_every_removal_that_run(world_factory: Any):
    t = TenantBuilder(e5=30, ems=30, pbi=5)
    staff = t.users_named("staff", 10)
    redundant = direct(t, staff[0], {"skuId": E5, "disabledPlans": []})
    big = t.group("LIC-Big", "e5-full", staff, CARRY)
    unlisted = t.group(
        "LIC-BI", "powerbi", t.users_named("bi", 2), [{"skuId": PBI}, {"skuId": EMS}]
    )
    policy = (
        OPT_IN_DIRECT + "removeUnlistedLicenses: true\nsuddenLoss:\n  percent: 20\n  minUsers: 2\n"
    )
    world = world_factory(t.build(), policy)
    baseline = run(world, "plan")
    assert baseline["status"] == "succeeded"
    assert len(baseline["removals"]["removals"]) == 1  # what the next apply would remove

    for uid in staff[7:]:  # 3 of 10 leave (30 %): a rule or a sync gone wrong
        world.sim.admin("DELETE", f"/_sim/groups/{big}/members/{uid}")
    world.clear_requests()
    summary = run(world, "apply")
    rem = summary["removals"]
    # The members who left took their seats with them: the SKUs dropped too (EMS 12 -> 9).
    assert [(x["kind"], x["name"], x["lost"], x["percent"]) for x in rem["suddenLosses"]] == [
        ("group-shrank", "LIC-Big", 3, 30),
        ("sku-dropped", "ENTERPRISEPREMIUM", 3, 30),
        ("sku-dropped", "EMSPREMIUM", 3, 25),
    ]
    assert "no removal this run" in rem["removalsBlocked"]
    assert "LIC-Big" in rem["removalsBlocked"]
    assert [r["outcome"] for r in rem["removals"]] == ["not-applied"]
    writes = world.licence_writes()
    assert not [w for w in writes if w["path"].startswith("/v1.0/users/")]
    # The unlisted licence stays on the group.
    world.wait_for_processing()
    carried = {a["skuId"] for a in world.group("LIC-BI")["assignedLicenses"]}
    assert EMS in carried and unlisted
    assert any(s["assignedByGroup"] is None for s in user_states(world, redundant))
    bi = next(g for g in summary["groups"] if g["displayName"] == "LIC-BI")
    assert bi["removeLicenses"] == []
    assert any("not removed this run" in n for n in bi["notes"])
    alerts = {a["condition"]: a for a in summary["alerts"]}
    assert alerts[f"group-shrank-{big}"]["transition"] == "opened"
    assert "Sudden loss (group-shrank): LIC-Big" in render_run(summary)


def test_outside_group_licensing_is_an_opt_in_tenant_wide_read(world_factory: Any):
    t, _ = migrated_tenant()
    world = world_factory(t.build(), POLICY + "migration:\n  reportOutsideGroups: true\n")
    summary = run(world, "plan")
    outside = {o["skuPartNumber"]: o for o in summary["removals"]["outsideGroupLicensing"]}
    # "outside" holds E5 only directly and is in no tagged group; "other" holds Power BI directly
    # but is in LIC-Mig, so it is not outside group licensing.
    assert outside["ENTERPRISEPREMIUM"]["count"] == 1
    assert outside["ENTERPRISEPREMIUM"]["users"] == ["outside@contoso.example"]
    assert outside["EMSPREMIUM"]["count"] == 0
    reads = [r for r in world.requests() if r["path"] == "/v1.0/users"]
    assert reads and all("assignedLicenses/any" in r["query"] for r in reads)
    assert "Outside group licensing" in render_run(summary)
    # Off by default: no tenant-wide read at all.
    default = world_factory(t.build(), POLICY)
    assert run(default, "plan")["removals"]["outsideGroupLicensing"] is None
    assert not [r for r in default.requests() if r["path"] == "/v1.0/users"]


def test_seats_reclaimed_from_disabled_accounts_go_to_the_first_waiting_group_next_run(
    world_factory: Any,
):
    # E5 and EMS: 3 seats each, LIC-Staff holds 2 (one of them a long-disabled account), so one is
    # free; LIC-New needs 2 and waits. Reclaiming the disabled account frees the second seat.
    t = TenantBuilder(e5=3, ems=3, pbi=5)
    active, old = t.user("active"), t.user("old")
    next(x for x in t.users if x["id"] == old)["accountEnabled"] = False
    t.group("LIC-Staff", "e5-full", [active, old], CARRY)
    newcomers = t.users_named("new", 2)
    waiting_group = t.group("LIC-New", "e5-full", newcomers)
    world = world_factory(t.build(), POLICY + "reclaim:\n  removeDisabledMembersAfterDays: 30\n")
    world.store.ensure_tables()
    world.store.note_disabled({old: (datetime.now(UTC) - timedelta(days=40), "old")})

    first = run(world, "apply")
    assert first["status"] == "succeeded", first
    decisions = {g["displayName"]: g["decision"] for g in first["groups"]}
    assert decisions["LIC-New"] == "blocked-seats"  # the freed seat is not promised this run
    assert [(r["upn"], r["outcome"]) for r in first["removals"]["removals"]] == [
        ("old@contoso.example", "applied")
    ]
    waiting = first["waiting"]
    assert waiting["people"] == 2
    world.wait_for_processing()
    assert consumed(world, E5) == 1  # the seat the disabled account held is free again

    second = run(world, "apply")
    assert second["status"] == "succeeded", second
    decisions = {g["displayName"]: g["decision"] for g in second["groups"]}
    assert decisions["LIC-New"] == "assign"
    world.wait_for_processing()
    group = world.group("LIC-New")
    assert {lic["skuId"] for lic in group["assignedLicenses"]} == {E5, EMS}
    assert consumed(world, E5) == 3 and waiting_group == group["id"]
    assert second["waiting"]["people"] == 0  # served: nobody waits any more


def test_a_run_of_some_groups_forgets_the_accounts_it_read_enabled_and_keeps_the_others(
    world_factory: Any,
):
    t = TenantBuilder(e5=20, ems=20, pbi=5)
    back, unseen = t.user("back"), t.user("unseen")
    staff = t.group("LIC-Staff", "e5-full", [back, t.user("active")], CARRY)
    t.group("LIC-Other", "e5-full", [unseen], CARRY)
    world = world_factory(t.build(), POLICY)
    world.store.ensure_tables()
    # Both were first seen disabled 10 days ago; "back" has been enabled again since.
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    world.store.note_disabled({back: (ten_days_ago, "back"), unseen: (ten_days_ago, "unseen")})

    report = asyncio.run(execute_run(world.settings, "plan", "test", group_ids=[staff]))
    assert report.status == "succeeded" and report.limited_to
    # Read enabled: its row goes. Not read by this run: its row stays, whatever it is now.
    assert set(world.store.disabled_first_seen()) == {unseen}


def test_a_run_whose_removal_reports_outgrow_a_table_property_reads_back_whole(
    world_factory: Any,
):
    """The M tenant's disabled members (500 groups, 20 listed each) made reports of ~200,000
    characters: cut to fit one Table property, the run no longer read back (its page failed)."""
    t = TenantBuilder(e5=400, ems=400, pbi=5)
    for g in range(15):
        members = t.users_named(f"a-disabled-member-with-a-long-name-{g:02d}-", 20)
        for x in t.users:
            if x["id"] in members:
                x["accountEnabled"] = False
        t.group(f"LIC-Staff-{g:02d}", "e5-full", members, CARRY)
    world = world_factory(t.build(), POLICY)
    summary = run(world)
    reports = {k: v for k, v in summary["removals"].items() if k != "removals"}
    assert len(json.dumps(reports)) > 40_000
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None
    assert {k: v for k, v in recorded["removals"].items() if k != "removals"} == reports
    # A run recorded by an earlier version kept its reports cut short: it reads back without them.
    cut = {"RowKey": "removals-report", "Kind": "removals", **to_properties({"report": reports})}
    world.store.put_group_results(summary["runId"], [cut])
    older = read_run(world.store, summary["runId"])
    assert older is not None and older["removals"] == {"removals": recorded["removals"]["removals"]}
