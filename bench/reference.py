"""The reference strategy, written the way common admin scripts read a tenant: groups one after
another, Graph's default page size, an msgraph-sdk model object for every member.

Timed over a deterministic sample of the tagged groups and scaled by member count when the tenant is
large (reading 100k members this way takes minutes of CPU: docs/toolchain.md).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient

from shared.credentials import LocalSimulatorCredential
from shared.graph import GRAPH_SCOPE, required_roles


async def read_groups(base_url: str, token_url: str, group_ids: list[str]) -> tuple[float, int]:
    """Seconds to read every member of these groups the reference way, and members read."""
    cred = LocalSimulatorCredential(token_url, base_url, required_roles())
    auth = AzureIdentityAuthenticationProvider(
        cred, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"]
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = base_url
    client = GraphServiceClient(request_adapter=adapter)
    members = 0
    started = time.perf_counter()
    await client.subscribed_skus.get()
    for gid in group_ids:
        page: Any = await client.groups.by_group_id(gid).members.get()
        while page is not None:
            members += len(page.value or [])
            link = page.odata_next_link
            page = (
                await client.groups.by_group_id(gid).members.with_url(link).get() if link else None
            )
    return time.perf_counter() - started, members


def sample(groups: list[dict[str, Any]], target_members: float) -> list[dict[str, Any]]:
    """Every k-th group (by id), so the sample spans small and large groups alike."""
    total = sum(g["memberCount"] + g["nestedGroupCount"] for g in groups)
    if total <= target_members:
        return groups
    ordered = sorted(groups, key=lambda g: g["groupId"])
    step = max(1, round(total / target_members))
    return ordered[::step]


def estimate(
    base_url: str, token_url: str, groups: list[dict[str, Any]], target_members: float
) -> dict[str, Any]:
    chosen = sample(groups, target_members)
    seconds, read = asyncio.run(read_groups(base_url, token_url, [g["groupId"] for g in chosen]))
    total = sum(g["memberCount"] + g["nestedGroupCount"] for g in groups)
    scale = total / read if read else 1.0
    return {
        "measured_s": seconds,
        "groups_read": len(chosen),
        "members_read": read,
        "members_total": total,
        "estimated_s": seconds * scale,
        "scaled": read < total,
    }
