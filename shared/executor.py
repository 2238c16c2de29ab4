"""Apply a plan through the Graph adapter: idempotent; one group's failure does not stop others."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.graph import REQUIRED_PERMISSIONS, AdaptiveGate, GraphClient, describe_graph_error
from shared.planner import Decision, GroupPlan, Plan
from shared.policy import ChangeBudget
from shared.removals import Removal, RemovalKind


@dataclass(frozen=True)
class Outcome:
    # applied | failed | not-applied (plan mode, refused run, or a decision without writes)
    status: str
    detail: str = ""
    # Graph answered 403: the permissions the refused operation declares (`@requires`)
    missing_permissions: tuple[str, ...] = ()
    # Graph accepted the group's assignLicense (so Entra is processing it), whatever came after
    licences_written: bool = False


def budget_problem(plan: Plan, budget: ChangeBudget) -> str | None:
    """Why the plan may not be applied, or None. Checked before the first write."""
    problems = []
    if plan.groups_changed > budget.max_groups_changed:
        problems.append(
            f"{plan.groups_changed} groups would change, the budget allows "
            f"{budget.max_groups_changed}"
        )
    if plan.users_affected > budget.max_users_affected:
        problems.append(
            f"{plan.users_affected} users would be affected, the budget allows "
            f"{budget.max_users_affected}"
        )
    problems.extend(removal_budget_problems(plan, budget))
    if not problems:
        return None
    return (
        "change budget exceeded: "
        + "; ".join(problems)
        + " (raise changeBudget in the policy after checking the plan)"
    )


def removal_budget_problems(plan: Plan, budget: ChangeBudget) -> list[str]:
    """Each removal kind against its own budget dimension (none when removals are blocked)."""
    removals = plan.removals
    if removals is None or removals.blocked:
        return []
    problems = []
    for kind, allowed, what in (
        (RemovalKind.DIRECT_LICENSE, budget.max_direct_removals, "direct assignments removed"),
        (RemovalKind.GROUP_MEMBER, budget.max_members_removed, "members removed from groups"),
    ):
        n = removals.count(kind)
        if n > allowed:
            problems.append(f"{n} {what}, the budget allows {allowed}")
    return problems


class WriteGuard(Protocol):
    """Whether the run may still write (it holds the tenant's run lease); see shared/run.py."""

    lost: str | None

    async def still_holds(self) -> bool: ...


class LeaseLostError(Exception):
    """A write not made because the run lost its lease before its turn."""


LEASE_LOST = (
    "lease lost: the run could not confirm it still holds the tenant's run lease (another run "
    "took it over, or storage did not answer); nothing written for this group"
)


async def apply_plan(
    plan: Plan, graph: GraphClient, max_concurrency: int, guard: WriteGuard | None = None
) -> dict[str, Outcome]:
    """Each group's writes; with `guard`, only while it confirms the run still holds the lease.

    Every write takes its turn at one gate (up to max_concurrency in flight): a group's licence
    change first, then its users' reprocessing side by side, as one user's does not wait on
    another's. A group of hundreds of stuck users is then not a chain of hundreds of round trips.
    """
    gate = AdaptiveGate(graph.pacer, max_concurrency)

    async def reprocess(user_id: str) -> Exception | None:
        async with gate:
            # Queued behind other groups' writes after this group's lease check: a lease lost
            # meanwhile (the renewal loop, another group's check) stops it here.
            if guard is not None and guard.lost:
                return LeaseLostError(guard.lost)
            try:
                await graph.reprocess_user(user_id)
            except Exception as exc:  # isolated: the group's outcome names it
                return exc
            return None

    async def one(group: GroupPlan) -> tuple[str, Outcome]:
        async with gate:
            if guard is not None and not await guard.still_holds():
                return group.group_id, Outcome("not-applied", LEASE_LOST)
            if group.add_licenses or group.remove_licenses:
                try:
                    await graph.assign_group_licenses(
                        group.group_id,
                        [(c.sku_id, list(c.disabled_plan_ids)) for c in group.add_licenses],
                        list(group.remove_licenses),
                    )
                except Exception as exc:  # isolate the group: record what Graph said and go on
                    return group.group_id, _failed(exc, "assignLicense", "assign_group_licenses")
        users = group.reprocess_user_ids
        errors = await asyncio.gather(*(reprocess(u) for u in users))
        written = bool(group.add_licenses or group.remove_licenses)
        return group.group_id, _group_outcome(group, users, errors, written)

    results = await asyncio.gather(*(one(g) for g in plan.changes))
    return dict(results)


def _group_outcome(
    group: GroupPlan, users: Sequence[str], errors: Sequence[Exception | None], written: bool
) -> Outcome:
    """The group's outcome once its writes are done: failed, naming the first user (in the plan's
    order) whose reprocessing failed and how many of them succeeded; else applied."""
    done = sum(1 for e in errors if e is None)
    skipped = sum(1 for e in errors if isinstance(e, LeaseLostError))
    failed = [
        (u, e)
        for u, e in zip(users, errors, strict=True)
        if e is not None and not isinstance(e, LeaseLostError)
    ]
    accepted = "assignLicense accepted; " if written else ""
    if skipped:
        return Outcome(
            "failed",
            f"{accepted}{LEASE_LOST.split(';')[0]} while its users waited to be reprocessed; "
            f"reprocessed {done} of {len(users)} user(s)"
            + (f", {len(failed)} failed" if failed else "")
            + ", the others not written",
            licences_written=written,
        )
    if failed:
        user_id, exc = failed[0]
        outcome = _failed(exc, f"reprocessLicenseAssignment for user {user_id}", "reprocess_user")
        of = f"; reprocessed {done} of {len(users)} user(s)" if len(users) > 1 else ""
        return Outcome(
            outcome.status,
            f"{accepted}{outcome.detail}{of}",
            outcome.missing_permissions,
            licences_written=written,
        )
    if group.decision is Decision.REPROCESS:
        return Outcome("applied", f"reprocessed {done} user(s)", licences_written=written)
    extra = f"; reprocessed {done} user(s)" if done else ""
    return Outcome("applied", f"assignLicense accepted{extra}", licences_written=written)


async def apply_removals(
    plan: Plan, graph: GraphClient, max_concurrency: int, guard: WriteGuard | None = None
) -> dict[str, Outcome]:
    """Each planned removal (Removal.key -> Outcome); none at all when a sudden loss blocks them."""
    removals = plan.removals
    if removals is None or not removals.removals:
        return {}
    if removals.blocked:
        return {r.key: Outcome("not-applied", removals.blocked) for r in removals.removals}
    gate = asyncio.Semaphore(max_concurrency)

    async def one(removal: Removal) -> tuple[str, Outcome]:
        async with gate:
            if guard is not None and not await guard.still_holds():
                return removal.key, Outcome("not-applied", LEASE_LOST)
            return removal.key, await _apply_removal(removal, graph)

    return dict(await asyncio.gather(*(one(r) for r in removals.removals)))


async def _apply_removal(removal: Removal, graph: GraphClient) -> Outcome:
    if removal.kind is RemovalKind.DIRECT_LICENSE:
        operation, step = "remove_direct_licenses", "assignLicense (removeLicenses) on the user"
    else:
        operation, step = "remove_group_member", "DELETE members/{id}/$ref"
    try:
        if removal.kind is RemovalKind.DIRECT_LICENSE:
            await graph.remove_direct_licenses(removal.user_id, list(removal.sku_ids))
        else:
            await graph.remove_group_member(removal.group_id, removal.user_id)
    except Exception as exc:  # isolate the removal: record what Graph said and go on
        return _failed(exc, step, operation)
    if removal.kind is RemovalKind.DIRECT_LICENSE:
        return Outcome("applied", f"direct {', '.join(removal.part_numbers)} removed")
    freed = ", ".join(removal.frees) or "no seat (another assignment keeps it)"
    return Outcome("applied", f"removed from {removal.group_name}; frees {freed}")


def _failed(exc: Exception, step: str, operation: str) -> Outcome:
    """A failed write as its outcome. A 403 means the app lacks a permission: name what the
    operation declares (@requires), so the admin knows what to grant (docs/deploy.md)."""
    detail = f"{step} failed: {describe_graph_error(exc)}"
    if getattr(exc, "response_status_code", None) == 403:
        perms = REQUIRED_PERMISSIONS.get(operation, ())
        if perms:
            detail += f"; grant {' and '.join(perms)} (application permission)"
            return Outcome("failed", detail, perms)
    return Outcome("failed", detail)
