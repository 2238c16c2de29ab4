"""Largest groups first: member reads are ordered by the member counts the last run recorded in
Table Storage (a group's pages follow each other through nextLink, so the largest group started
last sets the wall time). Against the simulator over HTTP and Azurite."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

from shared.run import execute_run
from tests.integration.conftest import World
from tests.integration.tenants import POLICY, TenantBuilder

MEMBERS = re.compile(r"^/v1\.0/groups/([^/]+)/members$")


def _first_page_order(world: World, since: int) -> list[str]:
    seen: list[str] = []
    for r in world.requests()[since:]:
        m = MEMBERS.match(r["path"])
        if m and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def test_the_second_run_reads_the_largest_groups_first(
    world_factory: Any,
) -> None:
    t = TenantBuilder(e5=5000, ems=5000)
    mid = t.group("A-mid", "e5-full", t.users_named("a", 1200))  # 2 pages
    small = t.group("B-small", "e5-full", t.users_named("b", 3))  # 1 page
    big = t.group("C-big", "e5-full", t.users_named("c", 2100))  # 3 pages
    world = world_factory(
        t.build(), POLICY, LICENSING_ALERT_MAILBOX="", LICENSING_ALERT_RECIPIENTS=""
    )
    # One read at a time: the log shows the order the engine chose.
    settings = dataclasses.replace(world.settings, max_concurrency=1)
    first = asyncio.run(execute_run(settings, "plan", "test"))
    assert first.status == "succeeded"
    assert _first_page_order(world, 0) == [mid, small, big]  # nothing recorded: by name

    seen = len(world.requests())
    second = asyncio.run(execute_run(settings, "plan", "test"))
    assert second.status == "succeeded"
    assert _first_page_order(world, seen) == [big, mid, small]
    # The order changes no decision.
    assert second.summary()["groups"] == first.summary()["groups"]
