"""Runs do not trip over each other: the lease is renewed while a run works, a run that lost it
stops writing, a plan run never blocks the apply, and nothing stays `running` forever.

Real parts: the runs race in threads against Azurite and a slowed-down simulator; the lease TTLs
are seconds so that expiry and renewal happen within a test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.credentials import credential_for
from shared.executor import Outcome, apply_plan
from shared.graph import GraphClient, required_roles
from shared.run import RunReport, execute_run, read_run
from shared.settings import Mode
from tests.integration.conftest import World
from tests.integration.tenants import PBI, POLICY, TenantBuilder


def slow_world(world_factory: Any, groups: int = 4, latency_ms: int = 150) -> World:
    t = TenantBuilder()
    for i in range(groups):
        t.group(f"LIC-{i}", "e5-full", t.users_named(f"u{i}-", 2))
    world = world_factory(t.build(), POLICY, sim_args=("--latency-ms", str(latency_ms)))
    world.store.ensure_tables()
    return world


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    runner = threading.Thread(target=lambda: out.append(fn()))
    runner.start()
    return runner, out


def start_run(world: World, mode: Mode, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    return in_thread(lambda: asyncio.run(execute_run(world.settings, mode, "test", **kwargs)))


def wait_for(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def finish(runner: threading.Thread, out: list[RunReport]) -> RunReport:
    runner.join(timeout=120)
    assert not runner.is_alive() and out
    return out[0]


def test_a_plan_run_in_progress_does_not_refuse_the_apply(world_factory: Any):
    world = slow_world(world_factory)
    runner, out = start_run(world, "plan")
    wait_for(lambda: bool(world.requests()))  # the plan run is reading the tenant
    apply = asyncio.run(execute_run(world.settings, "apply", "timer"))
    assert apply.status == "succeeded", apply.refused_reason
    assert world.licence_writes(), "the apply assigned the groups"
    plan = finish(runner, out)
    assert plan.status == "succeeded"


def test_a_run_renews_its_lease_while_it_works_so_a_second_apply_is_refused(world_factory: Any):
    world = slow_world(world_factory, groups=6, latency_ms=1000)
    ttl = timedelta(seconds=1.5)
    runner, out = start_run(world, "apply", lease_ttl=ttl)
    wait_for(lambda: bool(world.requests()))
    time.sleep(2.0)  # past the first TTL: only renewal keeps the lease
    assert out == [] and world.licence_writes() == [], "the first run is still reading"
    second = asyncio.run(execute_run(world.settings, "apply", "test", lease_ttl=ttl))
    first = finish(runner, out)
    assert second.status == "refused"
    assert f"another run ({first.run_id}) is in progress" in (second.refused_reason or "")
    assert first.status == "succeeded"
    posted = [w["path"] for w in world.licence_writes()]
    assert len(posted) == len(set(posted)) == 6, "each group written once, by the first run"


def test_a_run_that_lost_its_lease_writes_nothing_and_cannot_overwrite_the_run_that_took_over(
    world_factory: Any,
):
    world = slow_world(world_factory, groups=6, latency_ms=1000)
    # The old run's renewals stall (a frozen worker): its 1 s lease expires while it still reads.
    runner, out = start_run(
        world, "apply", lease_ttl=timedelta(seconds=1), lease_renew_every=timedelta(minutes=5)
    )
    wait_for(lambda: bool(world.requests()))
    time.sleep(1.5)
    assert out == [] and world.licence_writes() == [], "the old run is still reading"
    newer = asyncio.run(execute_run(world.settings, "apply", "test"))
    old = finish(runner, out)
    assert newer.status == "succeeded"
    assert old.status == "failed" and "lease" in (old.error or "")
    old_groups = {g["groupId"]: g for g in old.summary()["groups"]}
    assert old_groups and all(g["outcome"] == "not-applied" for g in old_groups.values())
    assert all("lease lost" in g["outcomeDetail"] for g in old_groups.values())
    posted = [w["path"] for w in world.licence_writes()]
    assert len(posted) == len(set(posted)) == 6, "only the run holding the lease wrote"
    # The newer run closed the old one's row; the old run's late record did not overwrite that.
    recorded = read_run(world.store, old.run_id)
    assert recorded is not None and recorded["status"] == "failed"
    assert "a later run took over" in recorded["error"]
    assert read_run(world.store, newer.run_id)["status"] == "succeeded"  # type: ignore[index]


def dead_row(world: World, run_id: str, status: str, started: datetime) -> None:
    world.store.put_run(
        {
            "RunId": run_id,
            "Mode": "plan",
            "Trigger": "http",
            "Status": status,
            "StartedAt": started.isoformat(),
        }
    )


def test_rows_left_running_or_queued_by_a_dead_worker_are_closed_by_the_next_run(
    world_factory: Any,
):
    world = slow_world(world_factory, groups=1, latency_ms=0)
    long_ago = datetime.now(UTC) - timedelta(hours=7)
    dead_plan = "20261127T000000Z-dead01"  # a plan run: it never held the apply lease
    never_started = "20261127T000000Z-dead02"  # queued; its message was lost
    dead_row(world, dead_plan, "running", long_ago)
    dead_row(world, never_started, "queued", long_ago)
    fresh = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-0a0a0a"
    dead_row(world, fresh, "queued", datetime.now(UTC))  # just queued: the worker comes soon
    assert asyncio.run(execute_run(world.settings, "plan", "test")).status == "succeeded"
    closed = read_run(world.store, dead_plan)
    assert closed is not None and closed["status"] == "failed"
    assert "stopped before it finished" in closed["error"]
    queued = read_run(world.store, never_started)
    assert queued is not None and queued["status"] == "failed"
    assert "never started" in queued["error"]
    assert read_run(world.store, fresh)["status"] == "queued"  # type: ignore[index]


class _LostRightAfterTheCheck:
    """The group's lease check passes; the renewal loop then finds the lease gone."""

    lost: str | None = None

    async def still_holds(self) -> bool:
        self.lost = "the run lost the tenant's run lease to another run"
        return True


def test_users_queued_for_reprocessing_are_not_written_once_the_lease_is_lost(
    world_factory: Any,
):
    t = TenantBuilder(pbi=2)
    t.group("LIC-BI", "powerbi", t.users_named("bi", 5), [{"skuId": PBI, "disabledPlans": []}])
    world = world_factory(t.build(), POLICY)
    world.sim.admin("PATCH", f"/_sim/skus/{PBI}", {"enabled": 5})  # seats for the 3 stuck users
    plan = asyncio.run(execute_run(world.settings, "plan", "test")).plan
    assert plan is not None and [len(g.reprocess_user_ids) for g in plan.changes] == [3]
    world.clear_requests()

    async def apply() -> dict[str, Outcome]:
        graph = GraphClient(
            credential_for(world.settings, required_roles()), world.settings.graph_base_url
        )
        try:
            return await apply_plan(plan, graph, 1, _LostRightAfterTheCheck())
        finally:
            await graph.close()

    [outcome] = asyncio.run(apply()).values()
    assert world.licence_writes() == [], "a write went out after the lease was lost"
    assert outcome.status == "failed"
    assert "lease lost" in outcome.detail and "0 of 3" in outcome.detail
