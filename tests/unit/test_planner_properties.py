"""Properties of the planner over generated tenants (hypothesis):
- a plan never grants more seats than are free after the reserve;
- applying a plan, as Entra would process it, and planning again changes nothing.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.model import AssignedLicense, Group, LicenseState, Membership, Snapshot, User
from shared.planner import Decision, Plan, make_plan
from shared.policy import ResolvedPolicy
from tests.factories import E5, EMS, PBI, default_skus, resolved

PROFILES = {"e5-full": (E5, EMS), "powerbi": (PBI,)}
POLICY_TEXT = (
    "version: 1\nprofiles:\n"
    "  e5-full: {skus: [{sku: ENTERPRISEPREMIUM}, {sku: EMSPREMIUM}]}\n"
    "  powerbi: {skus: [{sku: POWER_BI_PRO}]}\n"
    "selectors: [{displayNamePrefix: LIC-, profile: e5-full}]\n"
    "skus: {POWER_BI_PRO: {reserve: 1}}\n"
)


@st.composite
def tenants(draw: st.DrawFn) -> tuple[Snapshot, ResolvedPolicy]:
    n_users = draw(st.integers(1, 25))
    seats = draw(st.lists(st.integers(0, 30), min_size=3, max_size=3))
    holds = [draw(st.sets(st.sampled_from([E5, EMS, PBI]))) for _ in range(n_users)]
    users = [
        User(f"u{i}", f"u{i}@contoso.example", f"u{i}", "Member", None, None, True, frozenset(h))
        for i, h in enumerate(holds)
    ]
    consumed = {s: sum(1 for h in holds if s in h) for s in (E5, EMS, PBI)}
    skus = tuple(
        replace(s, enabled=max(seats[i], 0), consumed=consumed[s.sku_id])
        for i, s in enumerate(default_skus())
    )
    groups, members = [], {}
    for gi in range(draw(st.integers(1, 6))):
        profile = draw(st.sampled_from(sorted(PROFILES)))
        carried = draw(st.booleans())
        licences = tuple(AssignedLicense(s) for s in PROFILES[profile]) if carried else ()
        group = Group(
            f"g{gi}",
            f"LIC-{gi}",
            True,
            licences,
            "ProcessingComplete",
            profile,
            draw(st.integers(0, 2)),
        )
        chosen = draw(st.sets(st.integers(0, n_users - 1), max_size=n_users))
        member_users = []
        for ui in sorted(chosen):
            u = users[ui]
            # Members of a licensed group lacking its SKUs sit in CountViolation.
            states = tuple(
                LicenseState(s, group.id, "Error", "CountViolation")
                for s in PROFILES[profile]
                if carried and s not in u.held_skus
            )
            member_users.append(replace(u, license_states=u.license_states + states))
        groups.append(group)
        members[group.id] = Membership(users=tuple(member_users))
    return Snapshot(skus, tuple(groups), members), resolved(POLICY_TEXT, skus)


def apply_like_entra(snapshot: Snapshot, plan: Plan) -> Snapshot:
    """Process the plan's writes the way Entra does: members of a (re)assigned group and reprocessed
    users get each missing SKU if a seat is free; a seat is never created."""
    free = {s.sku_id: s.enabled - s.consumed for s in snapshot.skus}
    held = {u.id: set(u.held_skus) for m in snapshot.members.values() for u in m.users}
    groups = {g.id: g for g in snapshot.groups}
    for gp in plan.changes:
        g = groups[gp.group_id]
        if gp.add_licenses:
            groups[g.id] = replace(
                g,
                assigned_licenses=tuple(
                    AssignedLicense(c.sku_id, frozenset(c.disabled_plan_ids))
                    for c in gp.add_licenses
                ),
            )
        for user in snapshot.members[g.id].users:
            for change in gp.add_licenses or tuple(AssignedLicense(s) for s in PROFILES[g.profile]):
                sku_id = change.sku_id
                if sku_id not in held[user.id]:
                    assert free[sku_id] > 0, f"the plan over-assigned {sku_id}"
                    free[sku_id] -= 1
                    held[user.id].add(sku_id)
    skus = tuple(replace(s, consumed=s.enabled - free[s.sku_id]) for s in snapshot.skus)
    members = {
        gid: Membership(
            users=tuple(
                replace(
                    u,
                    held_skus=frozenset(held[u.id]),
                    license_states=tuple(
                        st_ for st_ in u.license_states if st_.sku_id not in held[u.id]
                    ),
                )
                for u in m.users
            )
        )
        for gid, m in snapshot.members.items()
    }
    return Snapshot(skus, tuple(groups[g.id] for g in snapshot.groups), members)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenants())
def test_a_plan_never_grants_more_than_the_free_seats_after_reserve(world):
    snapshot, policy = world
    plan = make_plan(snapshot, policy)
    for sku in plan.skus:
        assert sku.granted <= max(0, sku.free_before - sku.reserve), sku
        assert sku.free_after >= min(sku.free_before, sku.reserve)
    granted_users: dict[str, set[str]] = {}
    for gp in plan.groups:
        if gp.decision in (Decision.ASSIGN, Decision.REPAIR, Decision.REPROCESS):
            for user in snapshot.members[gp.group_id].users:
                for sku_id in PROFILES[gp.profile]:
                    if sku_id not in user.held_skus:
                        granted_users.setdefault(sku_id, set()).add(user.id)
    for sku in plan.skus:
        assert sku.granted == len(granted_users.get(sku.sku_id, ())), sku


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenants())
def test_applying_a_plan_then_planning_again_changes_nothing(world):
    snapshot, policy = world
    first = make_plan(snapshot, policy)
    after = apply_like_entra(snapshot, first)
    second = make_plan(after, resolved(POLICY_TEXT, after.skus))
    assert second.changes == [], [(g.display_name, g.decision, g.reason) for g in second.changes]
    before = {g.group_id: g.decision for g in first.groups}
    for g in second.groups:  # what was blocked stays blocked for the same reason kind
        if before[g.group_id] in (Decision.BLOCKED_SEATS, Decision.BLOCKED_GUESTS):
            assert g.decision == before[g.group_id]
