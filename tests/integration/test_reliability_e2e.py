"""Faults and hostile data end to end: nothing unknown is acted on, nothing recorded is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.graph import GraphPacer, use_pacer
from shared.run import execute_run, read_run
from shared.settings import Mode
from tests.integration.conftest import World
from tests.integration.tenants import POLICY, TenantBuilder


def run(world: World, mode: Mode = "apply") -> dict[str, Any]:
    return asyncio.run(execute_run(world.settings, mode, "test")).summary()


def groups(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["displayName"]: g for g in summary["groups"]}


def test_a_member_page_cut_off_halfway_makes_the_group_unknown_and_the_next_run_finishes(
    world_factory: Any,
):
    t = TenantBuilder(e5=2000, ems=2000)
    big = t.group("LIC-Big", "e5-full", t.users_named("big", 1200))  # two pages at 999
    t.group("LIC-Small", "e5-full", t.users_named("small", 3))
    world = world_factory(t.build(), POLICY)
    # The second page of the big group's members breaks off mid-body, on every retry.
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": f"/groups/{big}/members.*skiptoken", "mode": "truncate", "count": 50},
    )
    first = run(world)
    assert first["status"] == "partial"
    assert groups(first)["LIC-Big"]["decision"] == "unknown"
    assert groups(first)["LIC-Small"]["outcome"] == "applied"
    assert not any(big in w["path"] for w in world.licence_writes())
    assert read_run(world.store, first["runId"])["status"] == "partial"

    world.sim.admin("DELETE", "/_sim/faults")
    second = run(world)
    assert second["status"] == "succeeded"
    assert groups(second)["LIC-Big"]["decision"] == "assign"
    assert groups(second)["LIC-Big"]["outcome"] == "applied"


def test_hostile_names_and_upns_round_trip_through_graph_tables_and_mail(world_factory: Any):
    hostile = "LIC-<script>alert('x')</script> #/?\\ \"quoted\" \x07bell"
    t = TenantBuilder()
    t.group(hostile, "e5-full", [t.user("ann"), t.user("o'brien#x/y?z", guest=True)])
    world = world_factory(t.build(), POLICY)
    summary = run(world)
    [g] = summary["groups"]
    assert g["displayName"] == hostile and g["decision"] == "blocked-guests"
    recorded = read_run(world.store, summary["runId"])
    assert recorded is not None and recorded["groups"][0]["displayName"] == hostile
    assert recorded["groups"][0]["guests"] == g["guests"]
    [mail] = world.sim.admin("GET", "/_sim/outbox")["value"]
    body = mail["message"]["body"]["content"]
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "\x07" not in body and "\x07" not in mail["message"]["subject"]


def test_oversize_lists_are_capped_with_a_count_not_lost(world_factory: Any):
    t = TenantBuilder()
    guests = [t.user(f"guest{i}", guest=True) for i in range(60)]
    t.group("LIC-Crowd", "e5-full", guests)
    world = world_factory(t.build(), POLICY)
    summary = run(world, "plan")
    [g] = read_run(world.store, summary["runId"])["groups"]
    assert g["guestCount"] == 60
    assert len(g["guests"]) == 20  # listed, capped
    assert "60 B2B guest member(s)" in g["reason"] and "and 40 more" in g["reason"]


def test_a_failed_write_is_isolated_to_its_group_and_retried_next_run(world_factory: Any):
    t = TenantBuilder()
    a = t.group("LIC-A", "e5-full", t.users_named("a", 2))
    t.group("LIC-B", "e5-full", t.users_named("b", 2))
    world = world_factory(t.build(), POLICY)
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {
            "path": f"/groups/{a}/assignLicense",
            "status": 400,
            "code": "Request_BadRequest",
            "count": 1,
        },
    )
    first = run(world)
    assert first["status"] == "partial"
    assert groups(first)["LIC-A"]["outcome"] == "failed"
    assert "Request_BadRequest" in groups(first)["LIC-A"]["outcomeDetail"]
    assert groups(first)["LIC-B"]["outcome"] == "applied"
    second = run(world)
    assert groups(second)["LIC-A"]["outcome"] == "applied"
    assert groups(second)["LIC-B"]["decision"] == "compliant"


def test_an_unreadable_tenant_fails_the_run_without_a_plan_or_a_write(world_factory: Any):
    t = TenantBuilder()
    t.group("LIC-A", "e5-full", t.users_named("a", 2))
    world = world_factory(t.build(), POLICY)
    world.sim.admin("POST", "/_sim/faults", {"path": "/groups\\?", "status": 500, "count": 50})
    summary = run(world)
    assert summary["status"] == "failed"
    assert summary["groups"] == [] and "HTTP 500" in summary["error"]
    assert world.licence_writes() == []
    [mail] = world.sim.admin("GET", "/_sim/outbox")["value"]
    assert mail["message"]["subject"] == "[Licensing] Licensing run failed"


def test_azurite_restarted_mid_run_loses_no_record(world_factory: Any, tmp_path: Any):
    import threading
    import time as clock

    from localdev.services import Azurite, app_settings
    from shared.settings import Settings
    from shared.store import TableStore

    storage = Azurite(location=tmp_path / "azurite").start()  # on disk: survives the restart
    try:
        t = TenantBuilder()
        for i in range(6):
            t.group(f"LIC-{i}", "e5-full", t.users_named(f"g{i}-", 3))
        world = world_factory(t.build(), POLICY, sim_args=("--latency-ms", "400"))
        env = app_settings(
            storage,
            world.sim,
            LICENSING_POLICY_PATH=world.env["LICENSING_POLICY_PATH"],
            LICENSING_TABLE_PREFIX="restart",
        )
        settings = Settings.from_env(env)
        store = TableStore.from_settings(settings)
        reports: list[Any] = []
        runner = threading.Thread(
            target=lambda: reports.append(asyncio.run(execute_run(settings, "apply", "test")))
        )
        runner.start()
        deadline = clock.monotonic() + 20
        while clock.monotonic() < deadline and not world.requests():
            clock.sleep(0.05)  # the run has recorded its start and is reading Graph
        assert world.requests(), "the run never reached Graph"
        storage.stop()
        clock.sleep(1.0)
        storage.start(same_ports=True)
        runner.join(timeout=120)
        assert not runner.is_alive() and reports
        summary = reports[0].summary()
        assert summary["status"] == "succeeded"
        recorded = read_run(store, summary["runId"])
        assert recorded is not None and recorded["status"] == "succeeded"
        assert {g["displayName"] for g in recorded["groups"]} == {f"LIC-{i}" for i in range(6)}
        assert all(g["outcome"] == "applied" for g in recorded["groups"])
    finally:
        storage.stop()


def test_a_throttling_storm_is_waited_out_within_bounds_and_never_acted_on_blindly(
    world_factory: Any,
):
    t = TenantBuilder(e5=500, ems=500)
    for i in range(12):
        t.group(f"LIC-{i:02d}", "e5-full", t.users_named(f"s{i}-", 2))
    # 12 resource units per (scaled) 10-second window: far less than one run needs.
    world = world_factory(t.build(), POLICY, sim_args=("--ru-limit", "12", "--time-scale", "10"))
    # The engine's pacer knows the windows, as it knows Graph's (shared/graph.py GraphPacer).
    use_pacer(world.settings.graph_base_url, GraphPacer(read_window_s=1.0, write_window_s=15.0))
    first = run(world)
    log = world.requests()
    assert any(r["status"] == 429 for r in log), "the storm happened"
    assert first["status"] in ("succeeded", "partial")
    unknown = {g["groupId"] for g in first["groups"] if g["decision"] == "unknown"}
    assert not any(gid in w["path"] for gid in unknown for w in world.licence_writes())
    # Bounded: the SDK retries each request at most 3 times.
    per_request = {}
    for r in log:
        per_request.setdefault((r["method"], r["path"], r["query"]), []).append(r["status"])
    assert max(len(v) for v in per_request.values()) <= 4  # one try and at most three retries
    world.sim.admin("PATCH", "/_sim/config", {"ruLimit": 0})
    second = run(world)
    assert second["status"] == "succeeded"
    assert {g["decision"] for g in second["groups"]} <= {"compliant", "assign"}


def test_a_5xx_burst_is_retried_within_the_bound_and_the_run_succeeds(world_factory: Any):
    t = TenantBuilder()
    a = t.group("LIC-A", "e5-full", t.users_named("a", 2))
    t.group("LIC-B", "e5-full", t.users_named("b", 2))
    world = world_factory(t.build(), POLICY)
    # Two failures in a row, each with Retry-After: the SDK's third try gets through.
    world.sim.admin(
        "POST",
        "/_sim/faults",
        {"path": f"/groups/{a}/members", "status": 503, "retryAfter": 1, "count": 2},
    )
    summary = run(world)
    assert summary["status"] == "succeeded"
    assert groups(summary)["LIC-A"]["outcome"] == "applied"
    attempts = [r["status"] for r in world.requests() if r["path"] == f"/v1.0/groups/{a}/members"]
    assert attempts == [503, 503, 200]
