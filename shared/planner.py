"""Pure planning: snapshot + resolved policy -> plan (a decision with a reason for every group).

No I/O. Seat arithmetic (docs/architecture.md): free = enabled - consumed - reserve; demand
counts each direct user member who does not hold the SKU once across the run; a group is assigned
only if every SKU of its profile fits after the groups decided before it (policy priority,
then smaller demand first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shared.model import Group, Membership, Snapshot
from shared.policy import ResolvedPolicy, ResolvedProfile

MAX_LISTED_GUESTS = 20
MAX_LISTED_ERRORS = 20

ERROR_ADVICE = {
    "CountViolation": "not enough seats: buy or free seats; the next run reprocesses these users",
    "MutuallyExclusiveViolation": "the user holds a conflicting licence: remove one of the two",
    "DependencyViolation": "a plan this licence depends on is disabled or missing: enable it",
    "ProhibitedInUsageLocationViolation": (
        "a service is not offered in the user's usage location: fix usageLocation or disable it"
    ),
    "UniquenessViolation": "a duplicate proxy address or UPN: fix the conflicting attribute",
    "Other": "open the user's licences in the Entra admin centre to see the error",
}


class Decision(StrEnum):
    COMPLIANT = "compliant"
    ASSIGN = "assign"
    REPAIR = "repair"
    REPROCESS = "reprocess"
    BLOCKED_GUESTS = "blocked-guests"
    BLOCKED_SEATS = "blocked-seats"
    BLOCKED_POLICY = "blocked-policy"
    UNKNOWN = "unknown"

    @property
    def writes(self) -> bool:
        return self in (Decision.ASSIGN, Decision.REPAIR, Decision.REPROCESS)


@dataclass(frozen=True)
class LicenseChange:
    sku_id: str
    part_number: str
    disabled_plan_ids: tuple[str, ...]


@dataclass
class GroupPlan:
    group_id: str
    display_name: str
    profile: str
    decision: Decision
    reason: str
    priority: int = 100
    add_licenses: tuple[LicenseChange, ...] = ()
    remove_licenses: tuple[str, ...] = ()
    reprocess_user_ids: tuple[str, ...] = ()
    member_count: int = 0
    guest_count: int = 0
    guests: tuple[str, ...] = ()  # UPNs, at most MAX_LISTED_GUESTS
    nested_group_count: int = 0
    demand: dict[str, int] = field(
        default_factory=dict
    )  # part number -> new seats this group takes
    shortfall: dict[str, int] = field(default_factory=dict)  # part number -> seats missing
    notes: list[str] = field(default_factory=list)
    processing_state: str | None = None
    # error code -> UPNs (capped) of members whose assignment failed for a reason seats won't fix
    license_errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def users_affected(self) -> int:
        # A group write touches every direct member's licence states (conservative for the budget).
        if self.add_licenses or self.remove_licenses:
            return max(self.member_count, len(self.reprocess_user_ids))
        return len(self.reprocess_user_ids)


@dataclass
class SkuPlan:
    sku_id: str
    part_number: str
    capability_status: str
    enabled: int
    consumed: int
    reserve: int
    demand: int = 0  # seats wanted by all tagged groups (distinct users), granted or not
    granted: int = 0  # seats the plan will consume

    @property
    def free_before(self) -> int:
        return self.enabled - self.consumed

    @property
    def free_after(self) -> int:
        return self.free_before - self.granted

    @property
    def shortfall(self) -> int:
        return max(0, self.demand - max(0, self.free_before - self.reserve))


@dataclass
class Plan:
    groups: list[GroupPlan]
    skus: list[SkuPlan]
    warnings: list[str] = field(default_factory=list)
    requested_not_tagged: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[GroupPlan]:
        return [g for g in self.groups if g.decision.writes]

    @property
    def groups_changed(self) -> int:
        return len(self.changes)

    @property
    def users_affected(self) -> int:
        return sum(g.users_affected for g in self.changes)

    def counts(self) -> dict[str, int]:
        out = {d.value: 0 for d in Decision}
        for g in self.groups:
            out[g.decision.value] += 1
        return out


@dataclass
class _Candidate:
    plan: GroupPlan
    profile: ResolvedProfile
    lacking: dict[str, set[str]]  # sku_id -> users who need a seat
    needs_write: bool  # the group's licences differ from the profile
    carries_any: bool  # the group already carries at least one licence
    count_violations: set[str]  # members this group's assignment left in CountViolation
    processing: bool


def make_plan(snapshot: Snapshot, policy: ResolvedPolicy) -> Plan:
    sku_plans = {
        s.sku_id: SkuPlan(
            s.sku_id,
            s.part_number,
            s.capability_status,
            s.enabled,
            s.consumed,
            policy.reserves.get(s.sku_id, 0),
        )
        for s in snapshot.skus
    }
    finished: list[GroupPlan] = []
    candidates: list[_Candidate] = []
    for group in snapshot.groups:
        membership = snapshot.members.get(group.id) or Membership(error="members were not read")
        result = _precheck(group, membership, snapshot, policy)
        if isinstance(result, GroupPlan):
            finished.append(result)
        else:
            candidates.append(result)

    # Demand for the SKU table counts every tagged group's users once, granted or not.
    wanted: dict[str, set[str]] = {}
    for cand in candidates:
        for sku_id, users in cand.lacking.items():
            wanted.setdefault(sku_id, set()).update(users)
    for sku_id, users in wanted.items():
        if sku_id in sku_plans:
            sku_plans[sku_id].demand = len(users)

    available = {sid: sp.free_before - sp.reserve for sid, sp in sku_plans.items()}
    counted: dict[str, set[str]] = {sid: set() for sid in sku_plans}
    # Groups Entra is already processing take their seats first: that is happening regardless.
    candidates.sort(
        key=lambda c: (
            not c.processing,
            c.plan.priority,
            sum(len(u) for u in c.lacking.values()),
            c.plan.display_name.lower(),
            c.plan.group_id,
        )
    )
    for cand in candidates:
        _decide(cand, available, counted, sku_plans)
        finished.append(cand.plan)

    order = {g.id: i for i, g in enumerate(snapshot.groups)}
    finished.sort(key=lambda g: order.get(g.group_id, len(order)))
    return Plan(
        finished,
        list(sku_plans.values()),
        list(snapshot.warnings),
        list(snapshot.requested_not_tagged),
    )


def _base(group: Group, membership: Membership) -> GroupPlan:
    guests = [u for u in membership.users if u.is_b2b]
    plan = GroupPlan(
        group_id=group.id,
        display_name=group.display_name,
        profile=group.profile,
        decision=Decision.UNKNOWN,
        reason="",
        priority=group.priority,
        member_count=len(membership.users),
        guest_count=len(guests),
        guests=tuple(sorted(u.upn for u in guests)[:MAX_LISTED_GUESTS]),
        nested_group_count=len(membership.nested_group_ids),
        processing_state=group.processing_state,
    )
    if membership.nested_group_ids:
        plan.notes.append(
            f"{len(membership.nested_group_ids)} nested group(s): group-based licensing does not "
            "reach members of nested groups; add those users directly if they need the licences"
        )
    if membership.other_member_count:
        plan.notes.append(f"{membership.other_member_count} member(s) that are not users (ignored)")
    return plan


def _precheck(
    group: Group, membership: Membership, snapshot: Snapshot, policy: ResolvedPolicy
) -> GroupPlan | _Candidate:
    plan = _base(group, membership)
    if not membership.known:
        plan.reason = (
            f"members could not be read completely ({membership.error}); nothing was changed"
        )
        return plan
    if group.tag_problem:
        return _blocked_policy(plan, group.tag_problem)
    profile = policy.profiles.get(group.profile)
    if profile is None:
        return _blocked_policy(
            plan,
            f"tagged with profile {group.profile!r}, which the policy does "
            f"not define (defined: {', '.join(sorted(policy.profiles))})",
        )
    if not group.security_enabled:
        return _blocked_policy(
            plan,
            "not security-enabled: Entra assigns licences only to security "
            "groups; enable security or untag the group",
        )
    for rs in profile.skus:
        sku = snapshot.sku(rs.sku_id)
        if sku is None or not sku.assignable:
            status = sku.capability_status if sku else "missing"
            return _blocked_policy(
                plan,
                f"{rs.part_number} is {status}, not assignable; renew the "
                "subscription or change the profile",
            )
    if plan.guest_count:
        listed = ", ".join(plan.guests)
        more = (
            ""
            if plan.guest_count <= len(plan.guests)
            else f" and {plan.guest_count - len(plan.guests)} more"
        )
        plan.decision = Decision.BLOCKED_GUESTS
        plan.reason = (
            f"{plan.guest_count} B2B guest member(s) ({listed}{more}): group-based "
            "licensing must not be used on groups with guests; remove them from the group"
        )
        return plan

    profile_ids = {rs.sku_id for rs in profile.skus}
    needs_write = False
    lacking: dict[str, set[str]] = {}
    for rs in profile.skus:
        current = group.license_for(rs.sku_id)
        if current is None:
            needs_write = True
            if group.assigned_licenses:  # a repair: say what is missing
                plan.notes.append(f"{rs.part_number} is missing from the group")
        elif current.disabled_plans != rs.disabled_plan_ids:
            needs_write = True
            plan.notes.append(f"{rs.part_number} disabled plans drifted from the profile")
        if rs.implicitly_disabled:
            plan.notes.append(
                f"{rs.part_number}: plans outside the allow-list stay disabled: "
                f"{', '.join(rs.implicitly_disabled)}"
            )
        lacking[rs.sku_id] = set()

    other_errors: dict[str, list[str]] = {}
    count_violations: set[str] = set()
    for user in membership.users:
        errors = user.errors_from_group(group.id)
        if "CountViolation" in errors.values():
            count_violations.add(user.id)
        for rs in profile.skus:
            if rs.sku_id in user.held_skus:
                continue
            error = errors.get(rs.sku_id)
            if error and error != "CountViolation":
                other_errors.setdefault(error, []).append(user.upn)
            else:
                lacking[rs.sku_id].add(user.id)
    for error, upns in sorted(other_errors.items()):
        plan.license_errors[error] = sorted(set(upns))[:MAX_LISTED_ERRORS]
        listed = ", ".join(sorted(set(upns))[:MAX_LISTED_ERRORS])
        plan.notes.append(
            f"{len(set(upns))} user(s) in {error} ({listed}): "
            f"{ERROR_ADVICE.get(error, ERROR_ADVICE['Other'])}"
        )

    unlisted = [lic.sku_id for lic in group.assigned_licenses if lic.sku_id not in profile_ids]
    if unlisted:
        names = ", ".join(_part(snapshot, s) for s in unlisted)
        if policy.policy.remove_unlisted_licenses:
            needs_write = True
            plan.remove_licenses = tuple(unlisted)
            plan.notes.append(f"carries {names}, not in the profile: will be removed")
        else:
            plan.notes.append(
                f"carries {names}, not in the profile: left in place "
                "(set removeUnlistedLicenses: true to remove)"
            )
    if needs_write:
        plan.add_licenses = tuple(
            LicenseChange(rs.sku_id, rs.part_number, tuple(sorted(rs.disabled_plan_ids)))
            for rs in profile.skus
        )
    processing = group.processing_state not in (None, "ProcessingComplete")
    return _Candidate(
        plan,
        profile,
        lacking,
        needs_write,
        bool(group.assigned_licenses),
        count_violations,
        processing,
    )


def _blocked_policy(plan: GroupPlan, reason: str) -> GroupPlan:
    plan.decision = Decision.BLOCKED_POLICY
    plan.reason = reason
    return plan


def _part(snapshot: Snapshot, sku_id: str) -> str:
    sku = snapshot.sku(sku_id)
    return sku.part_number if sku else sku_id


def _decide(
    cand: _Candidate,
    available: dict[str, int],
    counted: dict[str, set[str]],
    sku_plans: dict[str, SkuPlan],
) -> None:
    plan = cand.plan
    need = {sid: users - counted[sid] for sid, users in cand.lacking.items()}
    shortfall = {
        sid: len(users) - available[sid]
        for sid, users in need.items()
        if len(users) > available[sid]
    }
    plan.demand = {sku_plans[sid].part_number: len(u) for sid, u in need.items() if u}
    lacking_any = any(cand.lacking.values())

    if not cand.needs_write and not lacking_any:
        plan.decision = Decision.COMPLIANT
        plan.reason = "carries its profile's licences and every member holds them"
        if plan.notes:
            plan.reason += f" ({len(plan.notes)} note(s))"
        return

    if shortfall:
        plan.shortfall = {sku_plans[sid].part_number: n for sid, n in shortfall.items()}
        parts = []
        for sid, n in sorted(shortfall.items(), key=lambda kv: sku_plans[kv[0]].part_number):
            sp = sku_plans[sid]
            parts.append(
                f"{sp.part_number} needs {len(need[sid])}, {max(0, available[sid])} "
                f"available{f' after a reserve of {sp.reserve}' if sp.reserve else ''}: "
                f"buy {n} or remove members"
            )
        plan.decision = Decision.BLOCKED_SEATS
        plan.reason = "not enough seats: " + "; ".join(parts)
        return

    # Every SKU fits: take the seats so later groups see what is left.
    for sid, users in need.items():
        available[sid] -= len(users)
        counted[sid].update(users)
        sku_plans[sid].granted += len(users)

    if cand.processing and not cand.needs_write:
        plan.decision = Decision.COMPLIANT
        plan.reason = (
            "licence processing is in progress; its members' seats are counted as taken "
            "and are checked again next run"
        )
        return

    stuck = sorted(set().union(*cand.lacking.values())) if lacking_any else []
    if cand.needs_write:
        plan.decision = Decision.REPAIR if cand.carries_any else Decision.ASSIGN
        # Users already in CountViolation stay there after a re-assignment: reprocess them too.
        plan.reprocess_user_ids = tuple(sorted(cand.count_violations))
        seats = ", ".join(f"{n} {p}" for p, n in sorted(plan.demand.items())) or "no new seats"
        verb = "assign" if plan.decision is Decision.ASSIGN else "repair"
        plan.reason = f"{verb} the profile's licences ({seats})"
        return

    plan.decision = Decision.REPROCESS
    plan.reprocess_user_ids = tuple(stuck)
    plan.reason = (
        f"{len(stuck)} member(s) lack the group's licences (licence errors such as "
        "CountViolation) and seats now exist: reprocess them"
    )


__all__ = ["Decision", "GroupPlan", "LicenseChange", "Plan", "SkuPlan", "make_plan"]
