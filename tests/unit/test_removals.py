"""shared/removals.py: which direct assignments are redundant, who is reclaimed, sudden losses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.executor import budget_problem
from shared.model import LicenseState, Membership
from shared.planner import make_plan
from shared.removals import Baseline, RemovalKind, plan_removals
from tests.factories import (
    E5,
    EMS,
    POLICY,
    YAMMER,
    default_skus,
    e5_full,
    group,
    resolved,
    snapshot,
    user,
)

NOW = datetime(2026, 12, 2, tzinfo=UTC)
OPT_IN = POLICY + "migration: {removeRedundantDirect: true}\n"
RECLAIM = POLICY + "reclaim: {removeDisabledMembersAfterDays: 30}\n"


def holder(gid: str, direct_off=frozenset(), group_off=frozenset(), state="Active", error=None):
    return user(
        holds=(E5, EMS),
        states=(
            LicenseState(E5, None, "Active", None, frozenset(direct_off)),
            LicenseState(E5, gid, state, error, frozenset(group_off)),
            LicenseState(EMS, gid, "Active", None),
        ),
    )


def removals_for(policy_text, snap, **kw):
    pol = resolved(policy_text)
    plan = make_plan(snap, pol)
    return plan, plan_removals(snap, pol, plan, now=NOW, **kw)


def test_redundant_only_when_inherited_is_active_and_enables_every_plan_the_direct_one_does():
    g = group("LIC-A", "e5-full", e5_full())
    same = holder(g.id)
    fewer_direct = holder(g.id, direct_off={YAMMER})
    group_disables = holder(g.id, group_off={YAMMER})
    in_error = holder(g.id, state="Error", error="MutuallyExclusiveViolation")
    snap = snapshot(default_skus(), (g, [same, fewer_direct, group_disables, in_error]))
    _, out = removals_for(OPT_IN, snap)
    redundant = {h.user_id for h in out.direct if h.redundant}
    assert redundant == {same.id, fewer_direct.id}
    why = {h.user_id: h.why_not for h in out.direct}
    assert "YAMMER_ENTERPRISE" in why[group_disables.id]
    assert "Error" in why[in_error.id]
    assert {(r.kind, r.user_id) for r in out.removals} == {
        (RemovalKind.DIRECT_LICENSE, same.id),
        (RemovalKind.DIRECT_LICENSE, fewer_direct.id),
    }


def test_a_profile_that_will_disable_a_plan_makes_the_direct_one_not_redundant():
    # The group enables Yammer today, but its profile disables it: the repair would take it away.
    g = group("LIC-A", "e5-no-yammer", e5_full())
    snap = snapshot(default_skus(), (g, [holder(g.id)]))
    _, out = removals_for(OPT_IN, snap)
    assert [h.missing_plans for h in out.direct] == [("YAMMER_ENTERPRISE",)]
    assert out.removals == []


def test_nothing_is_reported_or_removed_for_a_group_not_read_completely():
    g = group("LIC-A", "e5-full", e5_full())
    snap = snapshot(default_skus(), (g, Membership(error="HTTP 503")))
    _, out = removals_for(OPT_IN, snap)
    assert out.direct == [] and out.removals == []


def test_off_by_default_reported_not_removed():
    g = group("LIC-A", "e5-full", e5_full())
    snap = snapshot(default_skus(), (g, [holder(g.id)]))
    _, out = removals_for(POLICY, snap)
    assert [h.redundant for h in out.direct] == [True]
    assert out.removals == []


def test_disabled_members_are_removed_after_the_configured_days_with_the_seats_they_free():
    g = group("LIC-A", "e5-full", e5_full())
    states = (LicenseState(E5, g.id, "Active", None), LicenseState(EMS, g.id, "Active", None))
    old = replace(user("old", holds=(E5, EMS), states=states), account_enabled=False)
    new = replace(user("new", holds=(E5, EMS), states=states), account_enabled=False)
    also_direct = replace(
        user(
            "direct",
            holds=(E5, EMS),
            states=(*states, LicenseState(E5, None, "Active", None)),
        ),
        account_enabled=False,
    )
    seen = {old.id: NOW - timedelta(days=31), also_direct.id: NOW - timedelta(days=40)}
    snap = snapshot(default_skus(), (g, [old, new, also_direct]))
    _, out = removals_for(RECLAIM, snap, first_seen_disabled=seen)
    assert {d.upn: d.days for d in out.disabled} == {
        "old@contoso.example": 31,
        "new@contoso.example": 0,
        "direct@contoso.example": 40,
    }
    removed = {r.upn: r.frees for r in out.removals}
    # A direct E5 keeps its seat: leaving the group frees only EMS.
    assert removed == {
        "old@contoso.example": ("EMSPREMIUM", "ENTERPRISEPREMIUM"),
        "direct@contoso.example": ("EMSPREMIUM",),
    }


def test_a_sudden_loss_blocks_every_removal_and_unlisted_licence_removal():
    g = group("LIC-A", "e5-full", e5_full())
    bi = group("LIC-BI", "powerbi", e5_full())  # carries E5/EMS, not in its profile
    members = [holder(g.id) for _ in range(7)]
    snap = snapshot(default_skus(), (g, members), (bi, [user()]))
    base = Baseline("20261201T020000Z-abcdef", {g.id: 10}, {})
    text = OPT_IN + "removeUnlistedLicenses: true\nsuddenLoss: {percent: 20, minUsers: 3}\n"
    plan, out = removals_for(text, snap, baseline=base)
    assert [(x.kind, x.lost, x.percent) for x in out.losses] == [("group-shrank", 3, 30)]
    assert out.blocked and "LIC-A" in out.blocked
    assert out.removals  # still listed, so plan mode shows what is held back
    bi_plan = next(p for p in plan.groups if p.display_name == "LIC-BI")
    assert bi_plan.remove_licenses == ()
    assert budget_problem(plan, resolved(text).policy.change_budget) is None


def test_a_drop_under_either_limit_is_not_a_sudden_loss():
    g = group("LIC-A", "e5-full", e5_full())
    snap = snapshot(default_skus(), (g, [holder(g.id) for _ in range(7)]))
    base = Baseline("r", {g.id: 10}, {})
    for limits in ("{percent: 30, minUsers: 1}", "{percent: 10, minUsers: 4}"):
        _, out = removals_for(POLICY + f"suddenLoss: {limits}\n", snap, baseline=base)
        assert out.losses == [] and out.blocked is None, limits
