"""Pure planning: snapshot + resolved policy -> plan (a decision with a reason for every group).

No I/O. Seats are weighed in a ledger (docs/architecture.md "Seats"): per SKU, free after the
reserve; then committed demand, charged before anything new is weighed: every group that already
carries the SKU, whatever we decide about it, for its members who lack it (a user counted once);
then new assignments against what is left. A group whose members could not be read but that
carries a SKU makes that SKU's headroom unknown for the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from shared.model import Group, Membership, Sku, Snapshot
from shared.names import plan_label, sku_label
from shared.policy import ResolvedPolicy, ResolvedProfile, ResolvedSku

if TYPE_CHECKING:
    from shared.removals import RemovalPlan

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
    "Disabled": "the assignment is disabled: open the user's licences in the Entra admin centre",
    "Other": "open the user's licences in the Entra admin centre to see the error",
}
SEAT_ERRORS = frozenset({"CountViolation"})  # errors more seats fix: such users still want one


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
    # Users this group's writes touch: a group write touches every direct member's licence states
    # (conservative for the budget), a reprocess the reprocessed users. Ids, for Plan's union.
    affected_user_ids: frozenset[str] = frozenset()

    @property
    def users_affected(self) -> int:
        return len(self.affected_user_ids)


@dataclass
class SkuPlan:
    sku_id: str
    part_number: str
    capability_status: str
    enabled: int
    consumed: int
    reserve: int
    demand: int = 0  # users wanting a seat (committed or new, distinct), granted or not
    # users lacking it in groups that already carry it, whatever their decision: Entra gives them
    # seats as it processes those groups, so nothing new is weighed against these seats
    committed: int = 0
    granted: int = 0  # seats the plan's writes will consume
    headroom_unknown: str | None = None  # why free seats cannot be known this run, if so

    @property
    def free_before(self) -> int:
        return self.enabled - self.consumed

    @property
    def free_after(self) -> int:
        return self.free_before - self.granted

    @property
    def shortfall(self) -> int:
        """Seats to buy so every user waiting gets one and the reserve stays (free can be < 0)."""
        return max(0, self.demand - (self.free_before - self.reserve))


@dataclass
class Plan:
    groups: list[GroupPlan]
    skus: list[SkuPlan]
    warnings: list[str] = field(default_factory=list)
    requested_not_tagged: list[str] = field(default_factory=list)
    # Removal reports and typed removals (shared.removals.plan_removals fills it)
    removals: RemovalPlan | None = None
    # Group ids in the order the ledger served them (processing, priority, demand): the waiting
    # list's places (shared/waiting.py). Groups decided before the ledger (unknown, blocked by
    # policy or guests) are not in it: they are not served until their problem is fixed.
    service_order: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[GroupPlan]:
        return [g for g in self.groups if g.decision.writes]

    @property
    def groups_changed(self) -> int:
        return len(self.changes)

    @property
    def users_affected(self) -> int:
        # Each user once, however many changed groups they are in.
        return len(frozenset().union(*(g.affected_user_ids for g in self.changes)))

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
    # The members as read (not a set of their ids: every group's candidate is alive until the
    # plan is made, and on a million-user tenant those sets were ~90 MB)
    membership: Membership
    # user -> SKUs a reprocess would retry: their seat errors from any group, read or not
    retries: dict[str, set[str]] = field(default_factory=dict)

    @property
    def member_ids(self) -> frozenset[str]:
        return frozenset(u.id for u in self.membership.users)


class _Ledger:
    """Per SKU: free after reserve, committed demand charged first, then what the plan grants.

    `committed` users already want a seat through a group that carries the SKU; `served` are the
    committed users whose seat is being taken (Entra processing a group now, or this plan's
    writes); `new` are users outside `committed` the plan gives a seat. New seats come only from
    what committed demand leaves; committed users draw on the free seats themselves.
    """

    def __init__(self, sku_plans: dict[str, SkuPlan]) -> None:
        self.skus = sku_plans
        self.committed: dict[str, set[str]] = {sid: set() for sid in sku_plans}
        self.served: dict[str, set[str]] = {sid: set() for sid in sku_plans}
        self.new: dict[str, set[str]] = {sid: set() for sid in sku_plans}
        self.unread: dict[str, list[str]] = {}  # sku_id -> unread groups carrying it
        self.user_commits: dict[str, set[str]] = {}  # user -> SKUs they are committed for
        self.reprocessed: dict[str, GroupPlan] = {}  # user -> the group that reprocesses them

    def charge(self, group: Group, membership: Membership, processing: bool) -> dict[str, int]:
        """Charge a group's carried SKUs for its members who lack them; part number -> count."""
        charged: dict[str, int] = {}
        carried = [lic.sku_id for lic in group.assigned_licenses if lic.sku_id in self.skus]
        if not carried:
            return charged
        if not membership.known:
            for sid in carried:
                self.unread.setdefault(sid, []).append(group.display_name)
            return charged
        for user in membership.users:
            errors = user.errors_from_group(group.id) if user.license_states else {}
            for sid in carried:
                if sid in user.held_skus or errors.get(sid, "CountViolation") not in SEAT_ERRORS:
                    continue
                self.committed[sid].add(user.id)
                self.user_commits.setdefault(user.id, set()).add(sid)
                if processing:  # Entra is taking these seats now, whatever we decide
                    self.served[sid].add(user.id)
                part = self.skus[sid].part_number
                charged[part] = charged.get(part, 0) + 1
        return charged

    def grant(self, new: dict[str, set[str]], drawn: dict[str, set[str]]) -> None:
        for sid, users in new.items():
            self.new[sid].update(users)
            self.skus[sid].granted += len(users)
        for sid, users in drawn.items():
            self.served[sid].update(users)
            self.skus[sid].granted += len(users)

    def free(self, sid: str) -> int:
        sp = self.skus[sid]
        return sp.free_before - sp.reserve

    def left_for_committed(self, sid: str) -> int:
        return self.free(sid) - len(self.served[sid]) - len(self.new[sid])

    def left_for_new(self, sid: str) -> int:
        return self.free(sid) - len(self.committed[sid]) - len(self.new[sid])

    def unknown_reason(self, *sids: str) -> str | None:
        """Why the free seats of these SKUs cannot be known this run, or None."""
        unknown = sorted((sid for sid in sids if self.unread.get(sid)), key=self._part)
        if not unknown:
            return None
        groups = sorted({g for sid in unknown for g in self.unread[sid]})
        return (
            f"free seats of {', '.join(self._part(sid) for sid in unknown)} are unknown this run: "
            f"the members of {', '.join(groups)}, which carr{'ies' if len(groups) == 1 else 'y'} "
            f"{'it' if len(unknown) == 1 else 'them'}, could not be read"
        )

    def _part(self, sid: str) -> str:
        return self.skus[sid].part_number


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
    ledger = _Ledger(sku_plans)
    finished: list[GroupPlan] = []
    candidates: list[_Candidate] = []
    for group in snapshot.groups:
        membership = snapshot.members.get(group.id) or Membership(error="members were not read")
        processing = group.processing_state not in (None, "ProcessingComplete")
        # Committed demand first: every group that carries a SKU, whatever its decision.
        charged = ledger.charge(group, membership, processing)
        result = _precheck(group, membership, snapshot, policy)
        if isinstance(result, GroupPlan):
            if charged:
                seats = ", ".join(f"{n} {p}" for p, n in sorted(charged.items()))
                result.notes.append(
                    f"{seats} seat(s) counted as committed: members lacking the licences it "
                    "carries get them as Entra processes the group"
                )
            elif group.assigned_licenses and not membership.known:
                result.notes.append(
                    "carries licences but its members are unknown: no new seats of them are "
                    "given to any group this run"
                )
            finished.append(result)
        else:
            candidates.append(result)

    for sid, sp in sku_plans.items():
        sp.committed = len(ledger.committed[sid])
        sp.headroom_unknown = ledger.unknown_reason(sid)
    # Demand for the SKU table: committed users and every candidate's users once, granted or not.
    wanted = {sid: set(users) for sid, users in ledger.committed.items()}
    for cand in candidates:
        for sku_id, users in cand.lacking.items():
            if sku_id in wanted:
                wanted[sku_id].update(users)
    for sku_id, users in wanted.items():
        sku_plans[sku_id].demand = len(users)

    candidates.sort(key=_service_key)
    for cand in candidates:
        _decide(cand, ledger)
        finished.append(cand.plan)

    order = {g.id: i for i, g in enumerate(snapshot.groups)}
    finished.sort(key=lambda g: order.get(g.group_id, len(order)))
    return Plan(
        finished,
        list(sku_plans.values()),
        list(snapshot.warnings),
        list(snapshot.requested_not_tagged),
        service_order=[c.plan.group_id for c in candidates],
    )


def _service_key(c: _Candidate) -> tuple[bool, int, int, str, str]:
    """The order groups are served in: groups Entra is already processing first (that is
    happening regardless), then policy priority (lower first), then smaller demand."""
    return (
        not c.processing,
        c.plan.priority,
        sum(len(u) for u in c.lacking.values()),
        c.plan.display_name.lower(),
        c.plan.group_id,
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
        why = sku.unassignable_reason if sku else "is missing from the tenant"
        if why:
            return _blocked_policy(
                plan, f"{rs.part_number} {why}; renew the subscription or change the profile"
            )
    if plan.guest_count:
        return _blocked_guests(plan, membership)

    profile_ids = {rs.sku_id for rs in profile.skus}
    needs_write = False
    lacking: dict[str, set[str]] = {}
    for rs in profile.skus:
        current = group.license_for(rs.sku_id)
        if current is None:
            needs_write = True
            if group.assigned_licenses:  # a repair: say what is missing
                plan.notes.append(
                    f"{sku_label(rs.sku_id, rs.part_number)} is missing from the group"
                )
        elif current.disabled_plans != rs.disabled_plan_ids:
            needs_write = True
            plan.notes.append(_drift_note(rs, current.disabled_plans, snapshot.sku(rs.sku_id)))
        if rs.implicitly_disabled:
            plan.notes.append(
                f"{sku_label(rs.sku_id, rs.part_number)}: plans outside the allow-list stay "
                f"disabled: {', '.join(plan_label(None, p) for p in rs.implicitly_disabled)}"
            )
        lacking[rs.sku_id] = set()

    other_errors: dict[str, list[str]] = {}
    count_violations: set[str] = set()
    retries: dict[str, set[str]] = {}
    for user in membership.users:
        errors = user.errors_from_group(group.id) if user.license_states else {}
        for st in user.license_states:
            if st.assigned_by_group and st.error in SEAT_ERRORS and st.sku_id not in user.held_skus:
                retries.setdefault(user.id, set()).add(st.sku_id)
        if "CountViolation" in errors.values():
            count_violations.add(user.id)
        for rs in profile.skus:
            if rs.sku_id in user.held_skus:
                continue
            error = errors.get(rs.sku_id)
            if error and error not in SEAT_ERRORS:
                other_errors.setdefault(error, []).append(user.upn)
            else:
                lacking[rs.sku_id].add(user.id)
        # This group's assignments of SKUs outside its profile that are in error: e.g. a licence
        # the group dropped that Entra kept for a member (DependencyViolation). Seats won't fix it.
        for sku_id, error in errors.items():
            if sku_id not in profile_ids and error not in SEAT_ERRORS:
                other_errors.setdefault(error, []).append(user.upn)
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
        membership,
        retries,
    )


def _blocked_guests(plan: GroupPlan, membership: Membership) -> GroupPlan:
    external = sorted(
        (u for u in membership.users if u.is_b2b and not u.is_internal_guest), key=lambda u: u.upn
    )
    internal = sorted(u.upn for u in membership.users if u.is_internal_guest)
    parts = []
    if external:
        names = [
            f"{u.upn} (signs in through {u.external_issuer})" if u.external_issuer else u.upn
            for u in external
        ]
        parts.append(f"{len(external)} B2B guest member(s) ({_listed(names)})")
    if internal:
        parts.append(
            f"{len(internal)} internal guest(s) (accounts of this tenant with userType Guest: "
            f"{_listed(internal)}; set userType to Member if they are staff)"
        )
    plan.decision = Decision.BLOCKED_GUESTS
    plan.reason = (
        "; ".join(parts) + ": group-based licensing must not be used on groups with guests; "
        "remove them from the group"
    )
    return plan


def _listed(names: list[str]) -> str:
    shown = names[:MAX_LISTED_GUESTS]
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return ", ".join(shown) + more


def _blocked_policy(plan: GroupPlan, reason: str) -> GroupPlan:
    plan.decision = Decision.BLOCKED_POLICY
    plan.reason = reason
    return plan


def _part(snapshot: Snapshot, sku_id: str) -> str:
    sku = snapshot.sku(sku_id)
    return sku.part_number if sku else sku_id


def _decide(cand: _Candidate, ledger: _Ledger) -> None:
    plan = cand.plan
    skus = ledger.skus
    lacking_any = any(cand.lacking.values())
    if not cand.needs_write and not lacking_any:
        plan.decision = Decision.COMPLIANT
        plan.reason = "carries its profile's licences and every member holds them"
        if plan.notes:
            plan.reason += f" ({len(plan.notes)} note(s))"
        return

    if cand.processing and not cand.needs_write:
        # Entra is processing it: its seats were charged first; no write of ours.
        over = {
            sid: -ledger.left_for_committed(sid)
            for sid, users in cand.lacking.items()
            if users and ledger.left_for_committed(sid) < 0
        }
        plan.demand = {skus[sid].part_number: len(u) for sid, u in cand.lacking.items() if u}
        plan.decision = Decision.COMPLIANT
        plan.reason = (
            "licence processing is in progress; its members' seats are counted as taken "
            "and are checked again next run"
        )
        if over:
            plan.decision = Decision.BLOCKED_SEATS
            plan.shortfall = {skus[sid].part_number: n for sid, n in over.items()}
            plan.reason = "licence processing is in progress but not every member can get a " + (
                "seat: "
                + "; ".join(
                    f"{skus[sid].part_number} is {n} seat(s) short: buy {n} or remove members"
                    for sid, n in sorted(over.items(), key=lambda kv: skus[kv[0]].part_number)
                )
            )
        return

    wanted_reprocess = (
        cand.count_violations if cand.needs_write else set().union(*cand.lacking.values())
    )
    asked: dict[str, set[str]] = {}  # sku -> users this group's writes would give a seat
    # The group's own write: all or nothing (Entra assigns a group's licences per user that way).
    if cand.needs_write:
        new = {}
        drawn = {}
        for sid, users in cand.lacking.items():
            new[sid] = users - ledger.committed[sid] - ledger.new[sid]
            drawn[sid] = (users & ledger.committed[sid]) - ledger.served[sid]
            asked[sid] = new[sid] | drawn[sid]
        plan.demand = {skus[sid].part_number: len(u) for sid, u in asked.items() if u}
        if _blocked(plan, ledger, new, drawn):
            return
        ledger.grant(new, drawn)

    # Reprocessing, user by user: it retries every group licence the user lacks, so a user is
    # reprocessed (once per run, by the first group that asks) only if all those seats fit.
    reprocess: list[str] = []
    waiting_new: dict[str, set[str]] = {}
    waiting_drawn: dict[str, set[str]] = {}
    for uid in sorted(wanted_reprocess):
        if uid in ledger.reprocessed:
            continue
        retried = ledger.user_commits.get(uid, set()) | cand.retries.get(uid, set())
        retried |= {sid for sid, users in cand.lacking.items() if uid in users}
        u_new: dict[str, set[str]] = {}
        u_drawn: dict[str, set[str]] = {}
        for sid in retried:
            if sid not in skus or uid in ledger.served[sid] or uid in ledger.new[sid]:
                continue
            (u_drawn if uid in ledger.committed[sid] else u_new)[sid] = {uid}
            asked.setdefault(sid, set()).add(uid)
        if ledger.unknown_reason(*u_new, *u_drawn) or _short(ledger, u_new, u_drawn):
            for sid, us in u_new.items():
                waiting_new.setdefault(sid, set()).update(us)
            for sid, us in u_drawn.items():
                waiting_drawn.setdefault(sid, set()).update(us)
            continue
        ledger.grant(u_new, u_drawn)
        ledger.reprocessed[uid] = plan
        reprocess.append(uid)
    plan.demand = {skus[sid].part_number: len(u) for sid, u in asked.items() if u}
    plan.reprocess_user_ids = tuple(reprocess)

    if not cand.needs_write and not reprocess and (waiting_new or waiting_drawn):
        _blocked(plan, ledger, waiting_new, waiting_drawn)
        return
    waiting = set().union(*waiting_new.values(), *waiting_drawn.values())
    if waiting:
        short = _short(ledger, waiting_new, waiting_drawn)
        plan.shortfall = {skus[sid].part_number: buy for sid, (_, buy) in short.items()}
        unknown = ledger.unknown_reason(*waiting_new, *waiting_drawn)
        plan.notes.append(
            f"{len(waiting)} member(s) lacking its licences are not reprocessed this run: "
            + (unknown or _short_text(ledger, short, waiting_new, waiting_drawn))
        )
    by_others = [
        ledger.reprocessed[u]
        for u in wanted_reprocess
        if ledger.reprocessed.get(u, plan) is not plan
    ]
    elsewhere = sorted({g.display_name for g in by_others})
    if by_others:
        plan.notes.append(
            f"{len(by_others)} member(s) are reprocessed with {', '.join(elsewhere)} "
            "(once per user per run)"
        )

    if cand.needs_write:
        plan.decision = Decision.REPAIR if cand.carries_any else Decision.ASSIGN
        plan.affected_user_ids = cand.member_ids | frozenset(reprocess)
        seats = ", ".join(f"{n} {p}" for p, n in sorted(plan.demand.items())) or "no new seats"
        verb = "assign" if plan.decision is Decision.ASSIGN else "repair"
        plan.reason = f"{verb} the profile's licences ({seats})"
        return

    if not reprocess and not waiting:  # every member it would retry is reprocessed elsewhere
        plan.decision = Decision.COMPLIANT
        plan.reason = (
            f"{len(wanted_reprocess)} member(s) lack the group's licences; they are reprocessed "
            f"with {', '.join(elsewhere)} this run (once per user)"
        )
        return
    plan.decision = Decision.REPROCESS
    plan.affected_user_ids = frozenset(reprocess)
    plan.reason = (
        f"{len(wanted_reprocess)} member(s) lack the group's licences (licence errors such as "
        f"CountViolation) and seats now exist: reprocess {len(reprocess)}"
    )
    if elsewhere:
        plan.reason += f" (the others with {', '.join(elsewhere)})"
    if waiting:
        plan.reason += f"; {len(waiting)} wait for seats (see notes)"


def _short(
    ledger: _Ledger, new: dict[str, set[str]], drawn: dict[str, set[str]]
) -> dict[str, tuple[int, int]]:
    """sku -> (seats available, seats to buy) for each SKU these grants would not fit."""
    out = {}
    for sid in set(new) | set(drawn):
        n_new, n_drawn = len(new.get(sid, ())), len(drawn.get(sid, ()))
        # New users fit only in what committed demand leaves; committed ones in the free seats.
        available = ledger.left_for_committed(sid)
        if n_new:
            available = min(ledger.left_for_new(sid) + n_drawn, available)
        if n_new + n_drawn > available:
            out[sid] = (available, n_new + n_drawn - available)
    return out


def _short_text(
    ledger: _Ledger,
    short: dict[str, tuple[int, int]],
    new: dict[str, set[str]],
    drawn: dict[str, set[str]],
) -> str:
    parts = []
    for sid, (available, buy) in sorted(
        short.items(), key=lambda kv: ledger.skus[kv[0]].part_number
    ):
        sp = ledger.skus[sid]
        mine = new.get(sid, set()) | drawn.get(sid, set())
        held_back = []
        if sp.reserve:
            held_back.append(f"a reserve of {sp.reserve}")
        others = ledger.committed[sid] - mine
        if others:
            held_back.append(f"{len(others)} seat(s) committed to groups that already carry it")
        after = f" after {' and '.join(held_back)}" if held_back else ""
        parts.append(
            f"{sp.part_number} needs {len(mine)}, {max(0, available)} available{after}: "
            f"buy {buy} or remove members"
        )
    return "not enough seats: " + "; ".join(parts)


def _blocked(
    plan: GroupPlan, ledger: _Ledger, new: dict[str, set[str]], drawn: dict[str, set[str]]
) -> bool:
    """Mark the group blocked-seats if these grants need unknown or missing seats."""
    needed = [sid for sid in set(new) | set(drawn) if new.get(sid) or drawn.get(sid)]
    unknown = ledger.unknown_reason(*needed)
    if unknown:
        plan.decision = Decision.BLOCKED_SEATS
        plan.reason = (
            f"{unknown}; nothing that needs those seats is assigned or reprocessed until "
            "they are read"
        )
        return True
    short = _short(ledger, new, drawn)
    if not short:
        return False
    plan.shortfall = {ledger.skus[sid].part_number: buy for sid, (_, buy) in short.items()}
    plan.decision = Decision.BLOCKED_SEATS
    plan.reason = _short_text(ledger, short, new, drawn)
    return True


__all__ = ["Decision", "GroupPlan", "LicenseChange", "Plan", "SkuPlan", "make_plan"]


def _drift_note(rs: ResolvedSku, disabled_now: frozenset[str], sku: Sku | None) -> str:
    """Which plans differ from the profile, by the names people read."""
    names = {p.id: p.name for p in sku.service_plans} if sku else {}

    def plans(ids: set[str]) -> str:
        return ", ".join(sorted(plan_label(i, names.get(i)) for i in ids))

    parts = []
    if on := set(rs.disabled_plan_ids - disabled_now):
        parts.append(f"enabled in the group, disabled by the profile: {plans(on)}")
    if off := set(disabled_now - rs.disabled_plan_ids):
        parts.append(f"disabled in the group, enabled by the profile: {plans(off)}")
    label = sku_label(rs.sku_id, rs.part_number)
    return f"{label} disabled plans drifted from the profile ({'; '.join(parts)})"
