"""The engine end to end: msgraph-sdk over real HTTP to the simulator, records in Azurite."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from shared.run import execute_run, read_run
from shared.settings import Mode
from tests.integration.conftest import World
from tests.integration.tenants import E5, EMS, PBI, POLICY, YAMMER, TenantBuilder


def run(world: World, mode: Mode = "apply", **kwargs: Any) -> dict[str, Any]:
    report = asyncio.run(execute_run(world.settings, mode, "test", **kwargs))
    return report.summary()


def by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["displayName"]: g for g in summary["groups"]}


def small_tenant() -> tuple[TenantBuilder, dict[str, str]]:
    t = TenantBuilder(e5=20, ems=20, pbi=3)
    ids = {
        "new": t.group("LIC-New", "e5-full", t.users_named("new", 3)),
        "guests": t.group(
            "LIC-Guests", "e5-full", [t.user("alice"), t.user("partner", guest=True)]
        ),
        "bi": t.group("LIC-BI", "powerbi", t.users_named("bi", 5)),
        "drift": t.group(
            "LIC-Drift",
            "e5-no-yammer",
            t.users_named("drift", 2),
            [{"skuId": E5, "disabledPlans": []}, {"skuId": EMS, "disabledPlans": []}],
        ),
        "untagged": t.group("All staff", None, t.users_named("staff", 2)),
    }
    return t, ids


def test_apply_assigns_repairs_and_blocks_with_reasons_in_graph_and_tables(world_factory: Any):
    t, ids = small_tenant()
    world = world_factory(t.build(), POLICY)
    summary = run(world)
    groups = by_name(summary)

    assert summary["status"] == "succeeded"
    assert set(groups) == {"LIC-New", "LIC-Guests", "LIC-BI", "LIC-Drift"}  # untagged is not read
    assert groups["LIC-New"]["decision"] == "assign" and groups["LIC-New"]["outcome"] == "applied"
    assert groups["LIC-Drift"]["decision"] == "repair"
    assert groups["LIC-Guests"]["decision"] == "blocked-guests"
    assert "partner_fabrikam.com#EXT#@contoso.example" in groups["LIC-Guests"]["reason"]
    assert groups["LIC-BI"]["decision"] == "blocked-seats"
    assert groups["LIC-BI"]["shortfall"] == {"POWER_BI_PRO": 2}

    # In Graph: only the assigned/repaired groups were written to.
    posted = {w["path"] for w in world.writes() if w["path"].endswith("/assignLicense")}
    assert posted == {
        f"/v1.0/groups/{ids['new']}/assignLicense",
        f"/v1.0/groups/{ids['drift']}/assignLicense",
    }
    # Entra processes the members after the 202: wait for it, as an admin would.
    state = world.wait_for_processing()
    assert world.group("LIC-Guests")["assignedLicenses"] == []
    assert world.group("LIC-BI")["assignedLicenses"] == []
    drift = {a["skuId"]: a["disabledPlans"] for a in world.group("LIC-Drift")["assignedLicenses"]}
    assert drift == {E5: [YAMMER], EMS: []}
    seats = {s["skuId"]: s["consumedUnits"] for s in state["skus"]}
    assert seats[E5] == 5 and seats[PBI] == 0  # 3 new + 2 drift members; nobody got Power BI

    # In Table Storage: the same decisions and reasons, read back.
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None and recorded["status"] == "succeeded"
    rgroups = by_name(recorded)
    assert rgroups["LIC-Guests"]["decision"] == "blocked-guests"
    assert rgroups["LIC-Guests"]["reason"] == groups["LIC-Guests"]["reason"]
    assert rgroups["LIC-BI"]["decision"] == "blocked-seats"
    assert rgroups["LIC-BI"]["shortfall"] == {"POWER_BI_PRO": 2}
    rskus = {s["skuPartNumber"]: s for s in recorded["skus"]}
    assert rskus["ENTERPRISEPREMIUM"]["freeBefore"] == 18  # the drift group already holds 2
    # 3 new seats taken, whether measured once Entra has processed the groups or planned while
    # it is still processing (a 202 means later): never the unchanged figure read too early.
    assert rskus["ENTERPRISEPREMIUM"]["freeAfter"] == 15
    assert rskus["ENTERPRISEPREMIUM"]["freeAfterSource"] in ("measured", "planned")


def test_second_apply_right_after_the_first_makes_no_graph_writes(world: World):
    first = run(world)
    assert first["graphWrites"] > 0
    world.clear_requests()
    second = run(world)
    assert world.writes() == []
    assert second["graphWrites"] == 0
    assert (
        second["counts"]["assign"]
        == second["counts"]["repair"]
        == second["counts"]["reprocess"]
        == 0
    )


def test_plan_mode_records_the_plan_and_writes_nothing(world_factory: Any):
    t, _ = small_tenant()
    world = world_factory(t.build(), POLICY)
    plan = run(world, "plan")
    assert world.writes() == []
    assert by_name(plan)["LIC-New"]["decision"] == "assign"
    assert by_name(plan)["LIC-New"]["outcome"] == "not-applied"
    rskus = {s["skuPartNumber"]: s for s in plan["skus"]}
    assert rskus["ENTERPRISEPREMIUM"]["freeAfter"] == 15
    assert rskus["ENTERPRISEPREMIUM"]["freeAfterSource"] == "planned"
    # ...and apply then does exactly what the plan said.
    applied = run(world, "apply")
    assert {g["displayName"]: g["decision"] for g in applied["groups"]} == {
        g["displayName"]: g["decision"] for g in plan["groups"]
    }


def test_malformed_policy_stops_the_run_before_any_graph_call(world_factory: Any):
    t, _ = small_tenant()
    bad = POLICY.replace("  powerbi:\n", "  powerbi:\n    colour: blue\n")
    world = world_factory(t.build(), bad)
    summary = run(world)
    assert summary["status"] == "failed"
    error = summary["error"]
    assert world.settings.policy_path.name in error
    assert "profiles.powerbi.colour" in error and "unknown key" in error
    assert world.requests() == []
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None and recorded["status"] == "failed" and recorded["error"] == error


def test_policy_naming_a_sku_the_tenant_lacks_fails_before_any_write(world_factory: Any):
    t, _ = small_tenant()
    world = world_factory(t.build(), POLICY.replace("sku: POWER_BI_PRO", "sku: POWER_BI_PREMIUM"))
    summary = run(world)
    assert summary["status"] == "failed" and "POWER_BI_PREMIUM" in summary["error"]
    assert world.requests() and world.licence_writes() == []
    [mail] = world.sim.admin("GET", "/_sim/outbox")["value"]  # operators hear of the failure
    assert mail["message"]["subject"] == "[Licensing] Licensing run failed"
    assert "POWER_BI_PREMIUM" in mail["message"]["body"]["content"]


def test_users_stuck_in_count_violation_are_reprocessed_once_seats_are_bought(world_factory: Any):
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 4), [{"skuId": PBI, "disabledPlans": []}])
    world = world_factory(t.build(), POLICY)
    blocked = run(world)
    assert by_name(blocked)["LIC-BI"]["decision"] == "blocked-seats"
    assert world.licence_writes() == []

    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 4})
    fixed = run(world)
    group = by_name(fixed)["LIC-BI"]
    assert group["decision"] == "reprocess" and group["reprocessUsers"] == 2
    assert group["outcome"] == "applied"
    assert {s["skuId"]: s["consumedUnits"] for s in world.state()["skus"]}[PBI] == 4
    assert by_name(run(world))["LIC-BI"]["decision"] == "compliant"


def test_a_group_with_many_users_stuck_reprocesses_them_side_by_side(world_factory: Any):
    # One group of 14 with 12 stuck for want of seats: once seats are bought, its users are
    # reprocessed concurrently, not one after another (each write waits on Graph's latency).
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 14), [{"skuId": PBI, "disabledPlans": []}])
    world = world_factory(t.build(), POLICY, sim_args=("--latency-ms", "150"))
    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 14})
    world.clear_requests()
    group = by_name(run(world))["LIC-BI"]
    assert group["decision"] == "reprocess" and group["reprocessUsers"] == 12
    assert group["outcome"] == "applied" and group["outcomeDetail"] == "reprocessed 12 user(s)"
    spans = sorted(
        (datetime.fromisoformat(w["at"]), w["latencyMs"] / 1000)
        for w in world.licence_writes()
        if w["path"].endswith("/reprocessLicenseAssignment")
    )
    assert len(spans) == 12
    in_flight = max(
        sum(1 for at, s in spans if at <= start < at + timedelta(seconds=s)) for start, _ in spans
    )
    assert in_flight > 1, "every reprocess waited for the one before it"


def test_one_user_whose_reprocessing_fails_does_not_hold_back_the_others(world_factory: Any):
    t = TenantBuilder(pbi=2)
    users = t.users_named("bi", 6)
    t.group("LIC-BI", "powerbi", users, [{"skuId": PBI, "disabledPlans": []}])
    world = world_factory(t.build(), POLICY)
    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 6})
    stuck = users[-1]  # the last members are the ones left without a seat
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": f"/users/{stuck}/reprocessLicenseAssignment", "status": 400, "count": 100},
    )
    group = by_name(run(world))["LIC-BI"]
    assert group["decision"] == "reprocess" and group["outcome"] == "failed"
    assert f"reprocessLicenseAssignment for user {stuck} failed: HTTP 400" in group["outcomeDetail"]
    assert group["outcomeDetail"].endswith("reprocessed 3 of 4 user(s)")
    reprocessed = {
        w["path"].split("/")[3]
        for w in world.licence_writes()
        if w["path"].endswith("/reprocessLicenseAssignment") and w["status"] < 400
    }
    assert len(reprocessed) == 3 and stuck not in reprocessed


def test_a_group_whose_members_cannot_be_read_is_unknown_and_untouched(world_factory: Any):
    t, ids = small_tenant()
    world = world_factory(t.build(), POLICY)
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": f"/groups/{ids['new']}/members", "status": 500, "count": 100},
    )
    summary = run(world)
    groups = by_name(summary)
    assert summary["status"] == "partial"
    assert groups["LIC-New"]["decision"] == "unknown"
    assert "500" in groups["LIC-New"]["reason"]
    assert not any(ids["new"] in w["path"] for w in world.licence_writes())
    assert groups["LIC-Drift"]["outcome"] == "applied"  # the others go on


def test_change_budget_refuses_the_run_before_its_first_write(world_factory: Any):
    t, _ = small_tenant()
    world = world_factory(t.build(), POLICY + "changeBudget: {maxGroupsChanged: 1}\n")
    summary = run(world)
    assert summary["status"] == "refused"
    assert "2 groups would change, the budget allows 1" in summary["refusedReason"]
    assert world.licence_writes() == []
    assert read_run(world.store, summary["runId"])["status"] == "refused"


def test_only_the_requested_groups_are_considered(world_factory: Any):
    t, ids = small_tenant()
    world = world_factory(t.build(), POLICY)
    summary = run(world, group_ids=[ids["drift"]])
    assert [g["displayName"] for g in summary["groups"]] == ["LIC-Drift"]
    assert {w["path"] for w in world.licence_writes()} == {
        f"/v1.0/groups/{ids['drift']}/assignLicense"
    }


def test_a_run_is_one_trace_with_a_span_per_phase(world_factory: Any):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    t, _ = small_tenant()
    world = world_factory(t.build(), POLICY)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    report = asyncio.run(execute_run(world.settings, "apply", "test", tracer_provider=provider))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {
        "licensing.run",
        "licensing.collect",
        "licensing.plan",
        "licensing.apply",
        "licensing.record",
    } <= set(spans)
    root = spans["licensing.run"]
    assert root.attributes["licensing.run_id"] == report.run_id
    assert root.attributes["licensing.status"] == "succeeded"
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}


def test_group_tagged_with_an_undefined_profile_is_reported_not_ignored(world_factory: Any):
    t, _ = small_tenant()
    t.group("LIC-Typo", "e5-ful", t.users_named("typo", 2))
    world = world_factory(t.build(), POLICY)
    groups = by_name(run(world))
    assert groups["LIC-Typo"]["decision"] == "blocked-policy"
    assert "'e5-ful'" in groups["LIC-Typo"]["reason"]
    assert not any("LIC-Typo" in w["path"] for w in world.licence_writes())


def test_requesting_a_group_the_policy_does_not_tag_says_so(world_factory: Any):
    t, ids = small_tenant()
    world = world_factory(t.build(), POLICY)
    summary = run(world, "plan", group_ids=[ids["untagged"]])
    assert summary["groups"] == []
    assert summary["warnings"] == [
        f"requested group(s) not tagged by the policy: {ids['untagged']}"
    ]


def test_a_second_run_while_one_holds_the_lease_is_refused_and_touches_nothing(world_factory: Any):
    from datetime import UTC, datetime, timedelta

    t, _ = small_tenant()
    world = world_factory(t.build(), POLICY)
    world.store.ensure_tables()
    now = datetime.now(UTC)
    assert world.store.acquire_lease("20261127T000000Z-aaaaaa", timedelta(minutes=45), now).acquired
    summary = run(world)
    assert summary["status"] == "refused"
    assert "another run (20261127T000000Z-aaaaaa) is in progress" in summary["refusedReason"]
    assert world.requests() == []
    assert read_run(world.store, summary["runId"])["status"] == "refused"

    world.store.release_lease("20261127T000000Z-aaaaaa")
    assert run(world, "plan")["status"] == "succeeded"


def test_a_crashed_runs_lease_expires_and_the_next_run_goes_ahead(world_factory: Any):
    from datetime import UTC, datetime, timedelta

    t, _ = small_tenant()
    world = world_factory(t.build(), POLICY)
    world.store.ensure_tables()
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    crashed = "20261127T000000Z-dead00"
    world.store.put_run(
        {
            "RunId": crashed,
            "Mode": "apply",
            "Trigger": "timer",
            "Status": "running",
            "StartedAt": long_ago.isoformat(),
        }
    )
    assert world.store.acquire_lease(crashed, timedelta(minutes=45), long_ago).acquired
    assert run(world, "plan")["status"] == "succeeded"
    abandoned = read_run(world.store, crashed)
    assert abandoned is not None and abandoned["status"] == "failed"
    assert "lease expired" in abandoned["error"]


def test_two_runs_started_together_never_overlap(world_factory: Any):
    t, _ = small_tenant()
    world = world_factory(t.build(), POLICY)

    async def both() -> list[str]:
        reports = await asyncio.gather(
            execute_run(world.settings, "apply", "test"),
            execute_run(world.settings, "apply", "test"),
        )
        return sorted(r.status for r in reports)

    assert asyncio.run(both()) == ["refused", "succeeded"]
    posted = [w["path"] for w in world.licence_writes()]
    assert len(posted) == len(set(posted)), "each group was written once"


def test_the_demo_tenant_shows_every_decision_in_graph_and_in_table_storage(world: World):
    summary = run(world)
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None
    decisions = {g["displayName"]: g["decision"] for g in recorded["groups"]}
    assert set(decisions.values()) == {
        "compliant",
        "assign",
        "repair",
        "reprocess",
        "blocked-guests",
        "blocked-seats",
        "blocked-policy",
    }
    ids = {g["displayName"]: g["groupId"] for g in recorded["groups"]}
    written = {w["path"] for w in world.licence_writes()}
    for name, decision in decisions.items():
        group_written = f"/v1.0/groups/{ids[name]}/assignLicense" in written
        assert group_written == (decision in ("assign", "repair")), (name, decision)
    reprocessed = [p for p in written if p.endswith("/reprocessLicenseAssignment")]
    assert len(reprocessed) == sum(g["reprocessUsers"] for g in recorded["groups"]) > 0


def test_a_repaired_group_whose_reprocess_failed_is_still_waited_for_before_seats_are_measured(
    world_factory: Any,
):
    # LIC-Team lacks EMS (a repair) and two of its members are stuck without an E5 seat; seats
    # are bought, and one of the two reprocesses fails. Its assignLicense was accepted all the
    # same: the seats after the run must count what Entra assigns for it, not the figure before.
    t = TenantBuilder(e5=2, ems=20)
    users = t.users_named("team", 4)
    t.group("LIC-Team", "e5-full", users, [{"skuId": E5, "disabledPlans": []}])
    world = world_factory(t.build(), POLICY)
    world.sim.admin("PATCH", f"/_sim/skus/{E5}", {"enabled": 4})
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": f"/users/{users[-1]}/reprocessLicenseAssignment", "status": 400, "count": 100},
    )
    summary = run(world)
    team = by_name(summary)["LIC-Team"]
    assert team["decision"] == "repair" and team["reprocessUsers"] == 2
    assert team["outcome"] == "failed"
    assert team["outcomeDetail"].startswith("assignLicense accepted; ")
    ems = next(s for s in summary["skus"] if s["skuPartNumber"] == "EMSPREMIUM")
    assert ems["freeAfterSource"] == "measured"
    # What Graph counts once it has processed the group, not the 20 free before it did.
    consumed = {s["skuId"]: s["consumedUnits"] for s in world.wait_for_processing()["skus"]}
    assert ems["freeAfter"] == 20 - consumed[EMS] < 20
