"""Read what a run needs from Graph: SKUs, the tagged groups, and each group's direct members.

A failed SKU or group query fails the run (an unknown tenant is never an empty one); a failed member
read makes only that group unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from shared.errors import GraphReadError
from shared.graph import GraphClient, parse_group_licenses
from shared.model import Group, Membership, Sku, Snapshot
from shared.policy import Policy, Selector

IN_CLAUSE_LIMIT = 15  # ids per `id in (...)` clause


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def selector_queries(selector: Selector, profiles: Iterable[str]) -> list[tuple[str, str | None]]:
    """($filter, profile) pairs for one selector; profile None: the extension's value names it."""
    if selector.extension_property:
        # `eq` is the documented way to filter on a directory extension; one query per profile.
        return [(f"{selector.extension_property} eq {_quote(p)}", p) for p in sorted(profiles)]
    if selector.display_name_prefix is not None:
        return [
            (f"startswith(displayName,{_quote(selector.display_name_prefix)})", selector.profile)
        ]
    ids = list(selector.group_ids)
    return [
        (
            "id in (" + ",".join(_quote(i) for i in ids[n : n + IN_CLAUSE_LIMIT]) + ")",
            selector.profile,
        )
        for n in range(0, len(ids), IN_CLAUSE_LIMIT)
    ]


async def find_tagged_groups(graph: GraphClient, policy: Policy) -> list[Group]:
    found: dict[str, Group] = {}
    tags: dict[str, list[tuple[Selector, str]]] = {}
    for selector in policy.selectors:
        extra = (selector.extension_property,) if selector.extension_property else ()
        for odata_filter, profile in selector_queries(selector, policy.profiles):
            for raw in await graph.find_groups(odata_filter, extra):
                group = _group(raw, profile or "")
                found.setdefault(group.id, group)
                tags.setdefault(group.id, []).append((selector, group.profile))
    groups: list[Group] = []
    for gid, group in found.items():
        matches = tags[gid]
        profiles = sorted({p for _, p in matches})
        priority = min(s.priority for s, _ in matches)
        problem = None
        if len(profiles) > 1:
            problem = (
                "tagged for more than one profile ("
                + ", ".join(f"{p!r} by selectors[{s.index}]" for s, p in matches)
                + "): tag it for one"
            )
        groups.append(replace(group, priority=priority, tag_problem=problem))
    groups.sort(key=lambda g: (g.display_name.lower(), g.id))
    return groups


def _group(raw: dict[str, Any], profile: str) -> Group:
    state = raw.get("licenseProcessingState")
    try:
        licenses = parse_group_licenses(raw.get("assignedLicenses"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise GraphReadError(
            f"group {raw.get('id')}", None, None, f"malformed assignedLicenses: {exc!r}"
        ) from exc
    return Group(
        id=str(raw["id"]).lower(),
        display_name=str(raw.get("displayName") or raw["id"]),
        security_enabled=bool(raw.get("securityEnabled")),
        assigned_licenses=licenses,
        processing_state=state.get("state") if isinstance(state, dict) else None,
        profile=profile,
    )


async def read_members(
    graph: GraphClient, groups: list[Group], max_concurrency: int
) -> dict[str, Membership]:
    gate = asyncio.Semaphore(max_concurrency)

    async def one(group: Group) -> tuple[str, Membership]:
        async with gate:
            try:
                return group.id, await graph.list_members(group.id)
            except GraphReadError as exc:
                return group.id, Membership(error=str(exc))

    return dict(await asyncio.gather(*(one(g) for g in groups)))


async def collect(
    graph: GraphClient,
    policy: Policy,
    skus: list[Sku],
    max_concurrency: int,
    only_group_ids: set[str] | None = None,
) -> Snapshot:
    groups = await find_tagged_groups(graph, policy)
    if only_group_ids is not None:
        groups = [g for g in groups if g.id in only_group_ids]
    members = await read_members(graph, groups, max_concurrency)
    return Snapshot(skus=tuple(skus), groups=tuple(groups), members=members)
