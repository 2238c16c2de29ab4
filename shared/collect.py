"""Read what a run needs from Graph: SKUs, the tagged groups, and each group's direct members.

A failed SKU or group query fails the run (an unknown tenant is never an empty one); a failed member
read makes only that group unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from shared.errors import GraphReadError
from shared.graph import (
    PAGE_SIZE,
    AdaptiveGate,
    GraphClient,
    parse_group_licenses,
    parse_processing_state,
)
from shared.model import Group, Membership, Sku, Snapshot
from shared.policy import Policy, Selector

IN_CLAUSE_LIMIT = 15  # ids per `id in (...)` clause


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def selector_queries(selector: Selector, profiles: Iterable[str]) -> list[tuple[str, str | None]]:
    """($filter, profile) pairs for one selector; profile None: the extension's value names it."""
    if selector.extension_property:
        # `eq` is the documented way to filter on a directory extension, and `in` works wherever
        # `eq` does (docs/graph-facts.md): one query per 15 profiles rather than one per profile.
        return [(q, None) for q in _in_clauses(selector.extension_property, sorted(profiles))]
    if selector.display_name_prefix is not None:
        return [
            (f"startswith(displayName,{_quote(selector.display_name_prefix)})", selector.profile)
        ]
    return [(q, selector.profile) for q in _in_clauses("id", list(selector.group_ids))]


def _in_clauses(prop: str, values: list[str]) -> list[str]:
    return [
        f"{prop} in (" + ",".join(_quote(v) for v in values[n : n + IN_CLAUSE_LIMIT]) + ")"
        for n in range(0, len(values), IN_CLAUSE_LIMIT)
    ]


async def find_tagged_groups(
    graph: GraphClient, policy: Policy, warnings: list[str] | None = None
) -> list[Group]:
    found: dict[str, Group] = {}
    tags: dict[str, list[tuple[Selector, str]]] = {}

    def tag(raw: dict[str, Any], selector: Selector, profile: str) -> None:
        group = _group(raw, profile)
        found.setdefault(group.id, group)
        tags.setdefault(group.id, []).append((selector, profile))

    for selector in policy.selectors:
        extra = (selector.extension_property,) if selector.extension_property else ()
        for odata_filter, profile in selector_queries(selector, policy.profiles):
            for raw in await graph.find_groups(odata_filter, extra):
                value = raw.get(extra[0]) if profile is None and extra else profile
                tag(raw, selector, value if isinstance(value, str) else "")
        if selector.extension_property:
            await _scan_unknown_profiles(graph, policy, selector, tag, warnings)
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


async def _scan_unknown_profiles(
    graph: GraphClient,
    policy: Policy,
    selector: Selector,
    tag: Callable[[dict[str, Any], Selector, str], None],
    warnings: list[str] | None,
) -> None:
    """Find groups tagged with a value that names no profile (a typo), so they get reported.

    `ne null` on a group's directory extension needs an advanced query and is not confirmed by
    Microsoft's docs (decisions.md 3): if Graph refuses it, the run goes on and says what it could
    not check. The `eq` queries stay the authoritative source of tagged groups.
    """
    ext = selector.extension_property
    assert ext is not None
    try:
        raws = await graph.find_groups(f"{ext} ne null", (ext,), advanced=True)
    except GraphReadError as exc:
        if warnings is not None:
            warnings.append(
                f"groups tagged in {ext} with a value that names no profile could not be "
                f"listed ({exc}); only the defined profiles were queried"
            )
        return
    for raw in raws:
        value = raw.get(ext)
        if isinstance(value, str) and value not in policy.profiles:
            tag(raw, selector, value)


def _group(raw: dict[str, Any], profile: str) -> Group:
    try:
        licenses = parse_group_licenses(raw.get("assignedLicenses"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise GraphReadError(
            f"group {raw.get('id')}", None, None, f"malformed assignedLicenses: {exc!r}"
        ) from exc
    try:
        state = parse_processing_state(raw.get("licenseProcessingState"))
    except ValueError as exc:
        raise GraphReadError(f"group {raw.get('id')}", None, None, str(exc)) from exc
    return Group(
        id=str(raw["id"]).lower(),
        display_name=str(raw.get("displayName") or raw["id"]),
        security_enabled=bool(raw.get("securityEnabled")),
        assigned_licenses=licenses,
        processing_state=state,
        profile=profile,
    )


def read_order(groups: list[Group], sizes: Mapping[str, int]) -> list[Group]:
    """Longest chains first: a group's pages follow each other (nextLink), so the largest group
    started last sets the wall time. Sizes are the member counts the last runs recorded: the known
    multi-page groups go first, largest first, then the groups without a count (new, or unread
    last time: any of them may be large), then the known single-page ones. Ties keep the given
    order."""
    known = sorted((g for g in groups if g.id in sizes), key=lambda g: -sizes[g.id])
    unknown = [g for g in groups if g.id not in sizes]
    large = [g for g in known if sizes[g.id] > PAGE_SIZE]
    small = [g for g in known if sizes[g.id] <= PAGE_SIZE]
    return [*large, *unknown, *small]


async def read_members(
    graph: GraphClient,
    groups: list[Group],
    max_concurrency: int,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, Membership]:
    # Adaptive under Graph's signals, up to max_concurrency (AdaptiveGate).
    gate = AdaptiveGate(graph.pacer, max_concurrency)

    async def one(group: Group) -> tuple[str, Membership]:
        async with gate:
            try:
                return group.id, await graph.list_members(group.id)
            except GraphReadError as exc:
                return group.id, Membership(error=str(exc))

    # gather starts the coroutines in order, so the semaphore admits them in this order.
    ordered = read_order(groups, sizes or {})
    read = dict(await asyncio.gather(*(one(g) for g in ordered)))
    return {g.id: read[g.id] for g in groups}


async def collect(
    graph: GraphClient,
    policy: Policy,
    skus: list[Sku],
    max_concurrency: int,
    only_group_ids: set[str] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> Snapshot:
    """`sizes`: member counts the last runs recorded (ordering only: largest read first)."""
    warnings: list[str] = []
    groups = await find_tagged_groups(graph, policy, warnings)
    missing: list[str] = []
    if only_group_ids is not None:
        missing = sorted(only_group_ids - {g.id for g in groups})
        if missing:
            warnings.append(f"requested group(s) not tagged by the policy: {', '.join(missing)}")
        groups = [g for g in groups if g.id in only_group_ids]
    members = await read_members(graph, groups, max_concurrency, sizes)
    graph.forget_members()
    return Snapshot(
        skus=tuple(skus),
        groups=tuple(groups),
        members=members,
        warnings=tuple(warnings),
        requested_not_tagged=tuple(missing),
    )
