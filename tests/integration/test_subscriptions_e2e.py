"""Supply side end to end (simulator over HTTP, Azurite): subscriptions read each run and kept,
the alert for a subscription that ends (once, then resolved when it renews), a failed read that
keeps it open, and the dashboard's runs-out date moving earlier when a subscription ends first."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.api import build_status
from shared.report import render_run
from shared.run import execute_run, read_run
from shared.settings import Mode
from shared.store import new_run_id
from tests.integration.conftest import World
from tests.integration.tenants import PBI, POLICY, TenantBuilder

SUB = "30000000-0000-4000-8000-0000000000a1"
SUB2 = "30000000-0000-4000-8000-0000000000a2"


def run(world: World, mode: Mode = "apply") -> dict[str, Any]:
    return asyncio.run(execute_run(world.settings, mode, "test")).summary()


def subjects(world: World) -> list[str]:
    return [m["message"]["subject"] for m in world.sim.admin("GET", "/_sim/outbox")["value"]]


def _tenant(subscriptions: list[dict[str, Any]], pbi: int = 10, users: int = 6) -> dict[str, Any]:
    t = TenantBuilder(pbi=pbi)
    # Licensed already: the runs are compliant and the seats consumed from the start.
    t.group("LIC-BI", "powerbi", t.users_named("bi", users), licenses=[{"skuId": PBI}])
    return {**t.build(), "subscriptions": subscriptions}


def _ending(days: float, total: int = 10, sub_id: str = SUB) -> dict[str, Any]:
    return {
        "id": sub_id,
        "skuId": PBI,
        "status": "Enabled",
        "totalLicenses": total,
        "isTrial": False,
        "nextLifecycleInDays": days,
    }


def _alert(world: World, key: str) -> dict[str, Any]:
    return world.store.alert_states().get(key) or {}


def test_an_ending_subscription_is_mailed_once_and_resolved_when_it_renews(world_factory: Any):
    world = world_factory(_tenant([_ending(10)]), POLICY)
    summary = run(world)
    assert summary["status"] == "succeeded"
    [sub] = summary["subscriptions"]
    assert sub["subscriptionId"] == SUB and sub["totalLicenses"] == 10
    # Kept per run in Table Storage, read back with the run.
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None and recorded["subscriptions"] == summary["subscriptions"]
    shown = render_run(recorded)  # `python -m shared show RUN_ID`
    assert "Subscriptions\nsku " in shown and "Power BI Pro (POWER_BI_PRO)  Enabled" in shown

    end = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%d")
    mails = world.sim.admin("GET", "/_sim/outbox")["value"]
    by_subject = {m["message"]["subject"]: m["message"]["body"]["content"] for m in mails}
    ending = f"[Licensing] Power BI Pro (POWER_BI_PRO): 10 seat(s) end on {end} unless renewed"
    assert ending in by_subject, list(by_subject)
    body = by_subject[ending]
    assert "Seats that would be lost</td><td" in body and ">10</td>" in body
    assert "Users holding the licence now</td>" in body and ">6</td>" in body
    # The forecast alert counts the end as well: 4 free now, none once it ends.
    assert any(
        s.startswith(
            "[Licensing] Power BI Pro (POWER_BI_PRO) is running low: "
            "a subscription of 10 seat(s) ends"
        )
        for s in by_subject
    ), list(by_subject)
    first = len(mails)

    run(world)  # unchanged: no second mail
    assert len(subjects(world)) == first

    world.sim.admin("PATCH", f"/_sim/subscriptions/{SUB}", {"nextLifecycleInDays": 365})
    run(world)
    resolved = subjects(world)[first:]
    assert f"[Licensing] Resolved: {ending.removeprefix('[Licensing] ')}" in resolved
    assert _alert(world, f"subscription-ending-{SUB}")["Status"] == "resolved"
    run(world)
    assert len(subjects(world)) == first + len(resolved)


def test_a_failed_subscriptions_read_is_unknown_and_keeps_the_alert_open(world_factory: Any):
    world = world_factory(_tenant([_ending(10)]), POLICY)
    run(world)
    key = f"subscription-ending-{SUB}"
    assert _alert(world, key)["Status"] == "open"
    mailed = len(subjects(world))

    # Renewed, but this run cannot read the subscriptions (a deployment not granted
    # Organization.Read.All): reading nothing must not look like "no subscription ends".
    world.sim.admin("PATCH", f"/_sim/subscriptions/{SUB}", {"nextLifecycleInDays": 365})
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": "/directory/subscriptions", "status": 403, "count": 100},
    )
    summary = run(world)
    assert summary["status"] == "succeeded"  # enforcement does not depend on it
    assert summary["subscriptions"] is None
    assert "Organization.Read.All" in summary["subscriptionsError"]
    assert any("subscription alerts keep their state" in w for w in summary["warnings"])
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None and recorded["subscriptions"] is None
    assert "Subscriptions: not read" in render_run(recorded)
    assert _alert(world, key)["Status"] == "open"
    assert len(subjects(world)) == mailed  # nothing resolved, nothing reopened

    world.sim.admin("DELETE", "/_sim/faults")
    run(world)
    assert _alert(world, key)["Status"] == "resolved"


def _seed_growth(world: World, per_day: float, consumed_now: int, enabled: int) -> None:
    """Snapshots of the four weeks before, as nightly runs would have left them."""
    now = datetime.now(UTC)
    for days in range(28, 0, -4):
        at = now - timedelta(days=days, hours=1)
        row = {
            "PartitionKey": PBI,
            "At": at.isoformat(),
            "Mode": "plan",
            "SkuPartNumber": "POWER_BI_PRO",
            "Enabled": enabled,
            "Consumed": max(0, round(consumed_now - per_day * days)),
        }
        world.store.put_sku_snapshots(new_run_id(at, f"0ld{days:03d}"), [row])


def _pbi_forecast(world: World) -> dict[str, Any]:
    status = asyncio.run(build_status(world.settings, world.store))
    return next(s for s in status["skus"] if s["skuId"] == PBI)["forecast"]


def test_the_runs_out_date_moves_earlier_when_a_subscription_ends_before_growth(
    world_factory: Any,
):
    # 50 seats in two subscriptions, 30 users, growing one a day: 20 free last 20 days.
    world = world_factory(
        _tenant([_ending(300, 40, SUB), _ending(300, 10, SUB2)], pbi=50, users=30), POLICY
    )
    world.store.ensure_tables()
    _seed_growth(world, 1.0, 30, 50)
    run(world, "plan")
    before = _pbi_forecast(world)
    assert before["state"] == "growing"
    growth_day = datetime.fromisoformat(before["runsOutOn"]).date()
    today = datetime.now(UTC).date()
    assert 18 <= (growth_day - today).days <= 22

    # The 10-seat subscription now ends in 8 days: 20 - 8 - 10 = 2 free then, gone 2 days later.
    world.sim.admin("PATCH", f"/_sim/subscriptions/{SUB2}", {"nextLifecycleInDays": 8})
    # Run ids order to the second: two runs in the same second have no "latest" between them.
    time.sleep(1.1)
    run(world, "plan")
    after = _pbi_forecast(world)
    assert after["state"] == "ending"
    ending_day = datetime.fromisoformat(after["runsOutOn"]).date()
    assert ending_day < growth_day
    assert 8 <= (ending_day - today).days <= 11
    assert "a subscription of 10 seat(s) ends on" in after["text"]


def test_a_renewal_with_fewer_licences_names_the_seats_lost(world_factory: Any):
    world = world_factory(_tenant([_ending(10)]), POLICY)
    run(world)
    first = len(subjects(world))
    # Renewed for a year, but with 7 licences instead of 10.
    world.sim.admin(
        "PATCH", f"/_sim/subscriptions/{SUB}", {"nextLifecycleInDays": 365, "totalLicenses": 7}
    )
    run(world)
    new = subjects(world)[first:]
    assert (
        "[Licensing] Power BI Pro (POWER_BI_PRO): a subscription holds 3 licence(s) fewer than "
        "before (7 of 10)"
    ) in new
    assert any(
        s.startswith("[Licensing] Resolved: Power BI Pro (POWER_BI_PRO): 10 seat(s) end")
        for s in new
    )
    run(world)  # still cut: no second mail
    assert len(subjects(world)) == first + len(new)


def test_a_run_limited_to_some_groups_leaves_the_supply_alerts_to_full_runs(world_factory: Any):
    world = world_factory(_tenant([_ending(10)]), POLICY)
    first = run(world)
    key = f"subscription-ending-{SUB}"
    assert _alert(world, key)["Status"] == "open"
    mailed = len(subjects(world))
    world.sim.admin("PATCH", f"/_sim/subscriptions/{SUB}", {"nextLifecycleInDays": 365})
    group = first["groups"][0]["groupId"]
    limited = asyncio.run(execute_run(world.settings, "apply", "test", group_ids=[group])).summary()
    assert limited["subscriptions"] is not None  # read and kept all the same
    assert _alert(world, key)["Status"] == "open" and len(subjects(world)) == mailed
    run(world)
    assert _alert(world, key)["Status"] == "resolved"
