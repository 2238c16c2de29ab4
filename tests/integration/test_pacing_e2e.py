"""The engine listens to Graph's pacing signals, end to end against the simulator over HTTP.

Microsoft Graph service-specific throttling limits (identity and access,
https://learn.microsoft.com/en-us/graph/throttling-limits): `x-ms-resource-unit` on every answer,
`x-ms-throttle-limit-percentage` once the app has used more than 0.8 of a limit; the budget is per
app per tenant, shared by every client of the app.

The simulator runs its throttling windows TIME_SCALE times faster; the engine's pacer for that
simulator is given the same windows (`use_pacer`), as it would know Graph's real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.request
from typing import Any

import pytest

from shared.api import build_status
from shared.credentials import credential_for
from shared.graph import GraphClient, GraphPacer, pacer_for, required_roles, use_pacer
from shared.run import execute_run
from tests.integration.conftest import World
from tests.integration.tenants import POLICY, TenantBuilder

TIME_SCALE = 2  # the 10 s resource-unit window lasts 5 s, the 150 s write window 75 s
RU_LIMIT = 100  # far below the 3,400 the engine budgets: a loaded service, or a busy app


def scaled_world(
    world_factory: Any, groups: int, *sim_args: str, scale: float = TIME_SCALE
) -> tuple[World, GraphPacer]:
    t = TenantBuilder(e5=groups * 2, ems=groups * 2)
    for i in range(groups):
        t.group(f"LIC-{i:03d}", "e5-full", t.users_named(f"u{i}-", 1))
    world = world_factory(
        t.build(),
        POLICY + "changeBudget: {maxGroupsChanged: 500, maxUsersAffected: 500}\n",
        sim_args=("--ru-limit", str(RU_LIMIT), "--time-scale", str(scale), *sim_args),
        LICENSING_ALERT_MAILBOX="",
        LICENSING_ALERT_RECIPIENTS="",
    )
    pacer = GraphPacer(read_window_s=10.0 / scale, write_window_s=150.0 / scale)
    use_pacer(world.settings.graph_base_url, pacer)
    return world, pacer


@pytest.mark.parametrize("debit", [False, True], ids=["rejected-count-in-usage", "rejected-debit"])
def test_the_engine_slows_down_when_graph_reports_usage_over_0_8_and_is_not_throttled_again(
    world_factory: Any, debit: bool
):
    # Under both readings of "all requests accrue" (docs/simulator.md, Throttling). At the
    # default ceiling of 32 groups at once: the adaptive gate (shared/graph.py AdaptiveGate)
    # starts at 4, grows while Graph is calm and halves at its first usage signal.
    world, pacer = scaled_world(
        world_factory, 50, *(["--rejected-requests-debit"] if debit else [])
    )
    settings = dataclasses.replace(world.settings, max_concurrency=32)
    summary = asyncio.run(execute_run(settings, "apply", "test")).summary()
    log = world.requests()
    assert summary["status"] == "succeeded"
    assert {g["outcome"] for g in summary["groups"]} == {"applied"}
    spent = sum(r["ru"] for r in log)
    assert spent > 1.5 * RU_LIMIT  # the run needed more than the bucket holds: the limit bit
    assert pacer.pressure > 0  # Graph said so, and the engine heard it ...
    # ... and slowed down: no storm. The reads already in flight when Graph first reports 0.8
    # still land, and at a budget this small (20 RU above 0.8: ten reads) one of them may be
    # refused; after that the engine waits out Retry-After and is not refused again.
    assert len([r for r in log if r["status"] == 429]) <= 1
    assert pacer.resource_units.charged == spent  # it charged what Graph charged, writes too


def test_a_status_read_during_a_run_spends_the_runs_budget_and_nobody_is_throttled(
    world_factory: Any,
):
    world, pacer = scaled_world(world_factory, groups=40)
    status: list[dict[str, Any]] = []

    async def dashboard_refreshes() -> None:
        for _ in range(15):
            status.append(await build_status(world.settings, world.store))
            await asyncio.sleep(0.05)

    async def both() -> Any:
        run, _ = await asyncio.gather(
            execute_run(world.settings, "plan", "test"), dashboard_refreshes()
        )
        return run

    report = asyncio.run(both())
    log = world.requests()
    assert report.status == "succeeded"
    assert [s["seatsSource"] for s in status] == ["graph"] * 15, status[-1].get("warnings")
    sku_reads = [r for r in log if r["path"].endswith("/subscribedSkus")]
    assert len(sku_reads) >= 16  # the run's and every refresh's, all against one bucket
    # One pacer for the process: it booked every request of both, as Graph counted them.
    assert pacer.resource_units.charged == sum(r["ru"] for r in log)
    assert [r for r in log if r["status"] == 429] == []
    client = GraphClient(
        credential_for(world.settings, required_roles()), world.settings.graph_base_url
    )
    try:
        assert client.pacer is pacer is pacer_for(world.settings.graph_base_url)
    finally:
        asyncio.run(client.close())


def test_another_app_using_up_the_tenants_writes_is_waited_out_not_hammered(world_factory: Any):
    # 18,000 writes per 5 min per tenant, all apps together (scaled: 12 per 5 s here).
    scale = 60.0
    world, pacer = scaled_world(world_factory, 6, "--tenant-write-limit", "12", scale=scale)
    token_request = urllib.request.Request(
        world.sim.token_url,
        data=json.dumps({"roles": ["User.ReadWrite.All"], "appId": "another-app"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(token_request, timeout=10) as reply:
        other = json.loads(reply.read())["access_token"]
    users = [u["id"] for u in world.state()["users"]]
    for i in range(10):  # the other app leaves the tenant two of its twelve writes
        user = users[i % len(users)]
        write = urllib.request.Request(
            f"{world.sim.graph_base_url}/users/{user}/reprocessLicenseAssignment",
            method="POST",
            headers={"Authorization": f"Bearer {other}"},
        )
        with urllib.request.urlopen(write, timeout=10) as reply:
            assert reply.status == 200
    world.clear_requests()
    summary = asyncio.run(execute_run(world.settings, "apply", "test")).summary()
    writes = world.licence_writes()
    assert summary["status"] == "succeeded"
    assert {g["outcome"] for g in summary["groups"]} == {"applied"}
    throttled = [w for w in writes if w["status"] == 429]
    # How many writes the limit catches depends on how long the run took to reach them.
    assert throttled and pacer.throttled == len(throttled)  # the limit bit ...
    attempts: dict[str, int] = {}
    for w in throttled:
        attempts[w["path"]] = attempts.get(w["path"], 0) + 1
    assert max(attempts.values()) == 1  # ... and each write waited it out once, then went through
    assert len([w for w in writes if w["status"] < 300]) == 6
