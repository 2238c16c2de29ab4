"""Pure: what a run would remove, and the reports behind it (docs/architecture.md "Removals").

Three reports, one kind of action:
- migration: members of tagged groups who also hold a profile SKU by direct assignment, and
  whether the group's own assignment makes the direct one redundant (Active, and enabling every
  plan the direct one enables);
- reclaim: licensed members of tagged groups whose account is disabled, with how long they have
  been seen disabled (Graph does not say when an account was disabled: the store keeps the first
  run that saw it);
- sudden losses: a tagged group's direct members, or a SKU's consumed seats, dropping since the
  last successful run by more than the policy's limits. While one holds, nothing is removed.

Removals (a typed `Removal` each) are planned only under their policy opt-in, never for a group
whose members were not read completely, and each kind has its own change-budget dimension.
`plan_removals` attaches the result to the Plan the planner made (`Plan.removals`); it may strip a
group's `remove_licenses` (removeUnlistedLicenses) when a sudden loss blocks removals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.model import HOLDING_STATES, Group, LicenseState, Snapshot, User
from shared.names import sku_label
from shared.policy import ResolvedPolicy

if TYPE_CHECKING:
    from shared.planner import Plan

MAX_LISTED = 20  # UPNs shown per report line


class RemovalKind(StrEnum):
    DIRECT_LICENSE = "direct-license"  # migration.removeRedundantDirect
    GROUP_MEMBER = "group-member"  # reclaim.removeDisabledMembersAfterDays


@dataclass(frozen=True)
class Removal:
    kind: RemovalKind
    user_id: str
    upn: str
    group_id: str  # the licensing group (the one that keeps the licence, or that is left)
    group_name: str
    sku_ids: tuple[str, ...]  # the direct assignments removed / the group's SKUs the user leaves
    part_numbers: tuple[str, ...]
    reason: str
    frees: tuple[str, ...] = ()  # part numbers of the seats it frees (none for a direct removal)

    @property
    def key(self) -> str:
        """One row per removal (a Table RowKey: ids only)."""
        return f"{self.kind.value}-{self.user_id}-{self.group_id}-{'+'.join(self.sku_ids)}"


@dataclass(frozen=True)
class DirectHolding:
    """A tagged group's member who also holds a profile SKU by direct assignment."""

    user_id: str
    upn: str
    group_id: str
    group_name: str
    sku_id: str
    part_number: str
    inherited_state: str | None  # the group's assignment for this user: Active, Error, … or None
    inherited_error: str | None
    missing_plans: tuple[str, ...]  # plans the direct one enables that the group's does not
    redundant: bool  # the group's assignment is Active and enables every plan the direct one does

    @property
    def why_not(self) -> str:
        if self.redundant:
            return ""
        if self.inherited_state is None:
            return "the group's assignment has not reached this user yet"
        if self.inherited_state not in ("Active",) or (self.inherited_error not in (None, "None")):
            return f"the group's assignment is {self.inherited_state} ({self.inherited_error})"
        return f"the group's assignment leaves off {', '.join(self.missing_plans)}"


@dataclass(frozen=True)
class DisabledMember:
    user_id: str
    upn: str
    group_id: str
    group_name: str
    sku_ids: tuple[str, ...]  # SKUs this group gives the user
    part_numbers: tuple[str, ...]
    frees: tuple[str, ...]  # of those, the seats leaving the group would free
    first_seen: datetime
    days: int


@dataclass(frozen=True)
class SuddenLoss:
    kind: str  # group-shrank | sku-dropped
    subject_id: str  # group id or SKU id
    name: str
    before: int
    now: int
    previous_run: str

    @property
    def lost(self) -> int:
        return self.before - self.now

    @property
    def percent(self) -> int:
        return round(100 * self.lost / self.before) if self.before else 0

    def text(self) -> str:
        what = "direct members" if self.kind == "group-shrank" else "consumed seats"
        return (
            f"{self.name}: {what} fell from {self.before} to {self.now} "
            f"(-{self.lost}, -{self.percent} %) since run {self.previous_run}"
        )


@dataclass(frozen=True)
class Baseline:
    """The last successful run's counts, to compare this run with."""

    run_id: str
    group_members: Mapping[str, int]  # group id -> direct members (groups read completely)
    sku_consumed: Mapping[str, int]  # SKU id -> consumed seats


@dataclass
class RemovalPlan:
    direct: list[DirectHolding] = field(default_factory=list)
    disabled: list[DisabledMember] = field(default_factory=list)
    losses: list[SuddenLoss] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    # Why no removal of any kind is made this run (a sudden loss), or None.
    blocked: str | None = None
    notes: list[str] = field(default_factory=list)
    # Users who hold a profile SKU only directly, in no tagged group (opt-in tenant-wide read):
    # part number -> (count, first UPNs); None when not read.
    outside: dict[str, tuple[int, list[str]]] | None = None
    # For the first-seen-disabled rows: those of their accounts read enabled in a tagged group
    # this run (only those: a large tenant's every enabled id would be tens of MB)
    seen_enabled: frozenset[str] = frozenset()

    def count(self, kind: RemovalKind) -> int:
        return sum(1 for r in self.removals if r.kind is kind)

    @property
    def user_ids(self) -> frozenset[str]:
        return frozenset(r.user_id for r in self.removals)


def _enabled_plans(state: LicenseState, all_plans: frozenset[str]) -> frozenset[str]:
    return all_plans - state.disabled_plans


def _direct_holdings(
    snapshot: Snapshot, policy: ResolvedPolicy, group: Group, users: tuple[User, ...]
) -> list[DirectHolding]:
    profile = policy.profiles.get(group.profile)
    if profile is None:
        return []
    out = []
    for rs in profile.skus:
        sku = snapshot.sku(rs.sku_id)
        all_plans = frozenset(p.id for p in sku.service_plans) if sku else frozenset()
        for user in users:
            direct = next(
                (
                    s
                    for s in user.license_states
                    if s.sku_id == rs.sku_id and s.assigned_by_group is None
                ),
                None,
            )
            if direct is None or direct.state not in HOLDING_STATES:
                continue
            inherited = next(
                (
                    s
                    for s in user.license_states
                    if s.sku_id == rs.sku_id and s.assigned_by_group == group.id
                ),
                None,
            )
            missing: tuple[str, ...] = ()
            redundant = False
            if inherited is not None:
                # What the group enables now, and what it will enable once the profile is applied
                # (a drift repair): both must cover the direct assignment's plans.
                wanted = _enabled_plans(direct, all_plans) if all_plans else frozenset()
                now_on = _enabled_plans(inherited, all_plans)
                after = all_plans - rs.disabled_plan_ids
                gaps = (wanted - now_on) | (wanted - after)
                if not all_plans:  # plans unknown: compare the disabled lists themselves
                    gaps = (inherited.disabled_plans | rs.disabled_plan_ids) - direct.disabled_plans
                missing = tuple(sorted(_plan_name(sku, p) for p in gaps))
                redundant = (
                    inherited.state == "Active"
                    and inherited.error in (None, "None")
                    and not missing
                )
            out.append(
                DirectHolding(
                    user.id,
                    user.upn,
                    group.id,
                    group.display_name,
                    rs.sku_id,
                    rs.part_number,
                    inherited.state if inherited else None,
                    inherited.error if inherited else None,
                    missing,
                    redundant,
                )
            )
    return out


def _plan_name(sku: object, plan_id: str) -> str:
    for p in getattr(sku, "service_plans", ()):
        if p.id == plan_id:
            return str(p.name)
    return plan_id


def _disabled_members(
    snapshot: Snapshot,
    group: Group,
    users: tuple[User, ...],
    first_seen: Mapping[str, datetime],
    now: datetime,
) -> list[DisabledMember]:
    out = []
    carried = {lic.sku_id for lic in group.assigned_licenses}
    for user in users:
        if user.account_enabled is not False:
            continue
        mine = [
            s
            for s in user.license_states
            if s.assigned_by_group == group.id and s.sku_id in carried and s.state in HOLDING_STATES
        ]
        if not mine:
            continue  # not licensed by this group: nothing to reclaim here
        frees = []
        for s in mine:
            other = any(
                o is not s and o.sku_id == s.sku_id and o.state in HOLDING_STATES
                for o in user.license_states
            )
            if not other:
                frees.append(_part(snapshot, s.sku_id))
        seen = first_seen.get(user.id, now)
        out.append(
            DisabledMember(
                user.id,
                user.upn,
                group.id,
                group.display_name,
                tuple(sorted(s.sku_id for s in mine)),
                tuple(sorted(_part(snapshot, s.sku_id) for s in mine)),
                tuple(sorted(frees)),
                seen,
                max(0, (now - seen).days),
            )
        )
    return out


def _part(snapshot: Snapshot, sku_id: str) -> str:
    sku = snapshot.sku(sku_id)
    return sku.part_number if sku else sku_id


def sudden_losses(
    snapshot: Snapshot, baseline: Baseline | None, percent: int, min_users: int
) -> list[SuddenLoss]:
    """Drops since the baseline larger than both `percent` % and `min_users`."""
    if baseline is None:
        return []

    def big(before: int, now: int) -> bool:
        lost = before - now
        return lost > 0 and lost >= min_users and lost * 100 > percent * before

    out = []
    for group in snapshot.groups:
        membership = snapshot.members.get(group.id)
        before = baseline.group_members.get(group.id)
        if membership is None or not membership.known or before is None:
            continue  # an unread group is unknown, not empty
        now = len(membership.users)
        if big(before, now):
            out.append(
                SuddenLoss(
                    "group-shrank", group.id, group.display_name, before, now, baseline.run_id
                )
            )
    for sku in snapshot.skus:
        before = baseline.sku_consumed.get(sku.sku_id)
        if before is not None and big(before, sku.consumed):
            out.append(
                SuddenLoss(
                    "sku-dropped",
                    sku.sku_id,
                    sku.part_number,
                    before,
                    sku.consumed,
                    baseline.run_id,
                )
            )
    return out


def plan_removals(
    snapshot: Snapshot,
    policy: ResolvedPolicy,
    plan: Plan,
    *,
    now: datetime,
    first_seen_disabled: Mapping[str, datetime] | None = None,
    baseline: Baseline | None = None,
) -> RemovalPlan:
    """The reports and the removals for this run; attached to `plan.removals`."""
    pol = policy.policy
    first_seen = first_seen_disabled or {}
    out = RemovalPlan()
    unknown = {g.group_id for g in plan.groups if g.decision.value == "unknown"}
    enabled: set[str] = set()
    for group in snapshot.groups:
        membership = snapshot.members.get(group.id)
        if membership is None or not membership.known or group.id in unknown:
            continue  # never reported as fine, never removed from: not read
        out.direct.extend(_direct_holdings(snapshot, policy, group, membership.users))
        out.disabled.extend(_disabled_members(snapshot, group, membership.users, first_seen, now))
        enabled.update(
            u.id for u in membership.users if u.account_enabled is not False and u.id in first_seen
        )
    out.losses = sudden_losses(
        snapshot, baseline, pol.sudden_loss.percent, pol.sudden_loss.min_users
    )

    if pol.migration.remove_redundant_direct:
        # One removal per user and SKU, whichever tagged group makes it redundant first.
        done: set[tuple[str, str]] = set()
        for h in sorted(out.direct, key=lambda h: (h.upn.lower(), h.part_number, h.group_name)):
            if not h.redundant or (h.user_id, h.sku_id) in done:
                continue
            done.add((h.user_id, h.sku_id))
            out.removals.append(
                Removal(
                    RemovalKind.DIRECT_LICENSE,
                    h.user_id,
                    h.upn,
                    h.group_id,
                    h.group_name,
                    (h.sku_id,),
                    (h.part_number,),
                    f"direct {h.part_number} is redundant: {h.group_name}'s assignment is Active "
                    "and enables every plan it does (seats do not change)",
                )
            )
    days = pol.reclaim.remove_disabled_members_after_days
    if days is not None:
        for d in sorted(out.disabled, key=lambda d: (d.group_name, d.upn.lower())):
            if d.days < days:
                continue
            out.removals.append(
                Removal(
                    RemovalKind.GROUP_MEMBER,
                    d.user_id,
                    d.upn,
                    d.group_id,
                    d.group_name,
                    d.sku_ids,
                    d.part_numbers,
                    f"account disabled, seen disabled for {d.days} day(s) (since "
                    f"{d.first_seen.date().isoformat()}; the policy removes after {days})",
                    d.frees,
                )
            )

    unlisted = [g for g in plan.groups if g.remove_licenses]
    if out.losses:
        out.blocked = (
            "no removal this run: "
            + "; ".join(loss.text() for loss in out.losses)
            + " (suddenLoss: more than "
            + f"{pol.sudden_loss.percent} % and at least {pol.sudden_loss.min_users}); check "
            "the change (a dynamic rule, a sync) before the next run"
        )
        for g in unlisted:
            g.notes.append(
                f"not removed this run ({', '.join(_part(snapshot, s) for s in g.remove_licenses)}"
                f"): {out.blocked}"
            )
            g.remove_licenses = ()
    out.seen_enabled = frozenset(enabled)
    out.notes.extend(_report_notes(out))
    plan.removals = out
    return out


def _report_notes(out: RemovalPlan) -> list[str]:
    notes = []
    if out.direct:
        redundant = [h for h in out.direct if h.redundant]
        notes.append(
            f"{len(out.direct)} direct assignment(s) of profile SKUs held by members of tagged "
            f"groups, {len(redundant)} redundant with the group's own; seats do not change when "
            "one is removed (one user holds one seat per SKU whatever the sources)"
        )
    if out.disabled:
        notes.append(f"{len(out.disabled)} disabled account(s) hold licences through tagged groups")
    return notes


SEATS_UNCHANGED = (
    "seats do not change when a redundant direct assignment is removed: one user holds one seat "
    "per SKU whatever the sources"
)


def removal_summary(
    out: RemovalPlan | None, outcomes: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The reports and the removals, per group and SKU, for the run summary and the API."""
    if out is None:
        return {}
    outcomes = outcomes or {}
    migration: dict[tuple[str, str], dict[str, Any]] = {}
    for h in sorted(out.direct, key=lambda h: (h.group_name.lower(), h.part_number, h.upn)):
        row = migration.setdefault(
            (h.group_id, h.sku_id),
            {
                "groupId": h.group_id,
                "displayName": h.group_name,
                "skuId": h.sku_id,
                "skuPartNumber": h.part_number,
                "productName": sku_label(h.sku_id, h.part_number),
                "directHolders": 0,
                "redundant": 0,
                "users": [],
            },
        )
        row["directHolders"] += 1
        row["redundant"] += int(h.redundant)
        if len(row["users"]) < MAX_LISTED:
            row["users"].append(
                {
                    "upn": h.upn,
                    "inheritedState": h.inherited_state,
                    "inheritedError": h.inherited_error,
                    "missingPlans": list(h.missing_plans),
                    "redundant": h.redundant,
                    "whyNot": h.why_not,
                }
            )
    disabled: dict[str, dict[str, Any]] = {}
    for d in sorted(out.disabled, key=lambda d: (d.group_name.lower(), -d.days, d.upn)):
        row = disabled.setdefault(
            d.group_id,
            {
                "groupId": d.group_id,
                "displayName": d.group_name,
                "disabledMembers": 0,
                "seatsHeld": {},
                "users": [],
            },
        )
        row["disabledMembers"] += 1
        for part in d.part_numbers:
            row["seatsHeld"][part] = row["seatsHeld"].get(part, 0) + 1
        if len(row["users"]) < MAX_LISTED:
            row["users"].append(
                {
                    "upn": d.upn,
                    "skus": list(d.part_numbers),
                    "frees": list(d.frees),
                    "firstSeenDisabled": d.first_seen.isoformat(),
                    "daysDisabled": d.days,
                }
            )
    removals = []
    for r in out.removals:
        o = outcomes.get(r.key)
        removals.append(
            {
                "kind": r.kind.value,
                "userId": r.user_id,
                "upn": r.upn,
                "groupId": r.group_id,
                "groupName": r.group_name,
                "skus": list(r.part_numbers),
                "frees": list(r.frees),
                "reason": r.reason,
                "outcome": getattr(o, "status", "not-applied"),
                "outcomeDetail": getattr(o, "detail", ""),
            }
        )
    return {
        "migration": list(migration.values()),
        "seatsNote": SEATS_UNCHANGED,
        "disabledMembers": list(disabled.values()),
        "suddenLosses": [
            {
                "kind": loss.kind,
                "subjectId": loss.subject_id,
                "name": loss.name,
                "before": loss.before,
                "now": loss.now,
                "lost": loss.lost,
                "percent": loss.percent,
                "previousRunId": loss.previous_run,
            }
            for loss in out.losses
        ],
        "removals": removals,
        "removalsBlocked": out.blocked,
        "outsideGroupLicensing": (
            None
            if out.outside is None
            else [
                {
                    "skuPartNumber": part,
                    "productName": sku_label(None, part),
                    "count": n,
                    "users": upns,
                }
                for part, (n, upns) in sorted(out.outside.items())
            ]
        ),
    }


__all__ = [
    "Baseline",
    "DirectHolding",
    "DisabledMember",
    "Removal",
    "RemovalKind",
    "RemovalPlan",
    "SuddenLoss",
    "plan_removals",
    "removal_summary",
    "sudden_losses",
]
