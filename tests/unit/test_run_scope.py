"""The run's scope is built from what it read: unread groups and SKUs stay outside it."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.model import AssignedLicense, Group, Membership, User
from shared.planner import make_plan
from shared.run import RunReport, run_scope
from tests.factories import E5, EMS, PBI, default_skus, group, resolved, snapshot, user

POLICY = """
version: 1
profiles:
  e5-full: {skus: [{sku: ENTERPRISEPREMIUM}, {sku: EMSPREMIUM}]}
  powerbi: {skus: [{sku: POWER_BI_PRO}]}
selectors: [{displayNamePrefix: LIC-, profile: e5-full}]
"""


def report(
    *groups_and_members: tuple[Group, list[User] | Membership], limited_to: tuple[str, ...] = ()
) -> RunReport:
    r = RunReport("run", "apply", "test", datetime(2026, 12, 1, tzinfo=UTC), limited_to=limited_to)
    r.plan = make_plan(snapshot(default_skus(), *groups_and_members), resolved(POLICY))
    return r


def test_a_complete_run_covers_every_sku_and_group_it_read():
    bi, team = group("LIC-BI", "powerbi"), group("LIC-Team", "e5-full")
    scope = run_scope(report((bi, [user()]), (team, [user(guest=True)])), resolved(POLICY))
    assert scope.complete and not scope.limited
    assert scope.sku_ids_known == {E5, EMS, PBI}
    assert scope.covers("group-guests", team.id) and scope.covers("group-errors", bi.id)
    assert not scope.covers("group-errors", team.id)  # blocked by guests: errors not examined
    assert scope.covers("run-problem", "")


def test_an_unread_group_leaves_its_alerts_and_its_profiles_skus_outside_the_scope():
    bi, team = group("LIC-BI", "powerbi"), group("LIC-Team", "e5-full")
    r = report((bi, [user()]), (team, Membership(error="HTTP 403")))
    scope = run_scope(r, resolved(POLICY))
    assert not scope.complete  # partial
    assert not scope.covers("group-guests", team.id) and not scope.covers("group-errors", team.id)
    assert scope.covers("group-stuck", team.id)  # its processing state came with the group
    assert scope.sku_ids_known == {PBI}  # E5 and EMS demand includes the unread group's
    assert not scope.covers("run-problem", "")


def test_a_run_limited_to_groupids_knows_no_sku_and_only_its_groups():
    bi = group("LIC-BI", "powerbi")
    scope = run_scope(report((bi, [user()]), limited_to=(bi.id,)), resolved(POLICY))
    assert scope.sku_ids_known == frozenset()
    assert scope.covers("group-guests", bi.id)
    assert not scope.covers("group-guests", "another-group")
    assert not scope.covers("run-problem", "")


def test_a_run_that_stopped_before_planning_covers_nothing():
    r = RunReport("run", "apply", "test", datetime(2026, 12, 1, tzinfo=UTC))
    scope = run_scope(r, None)
    assert scope.groups_listed is None and scope.sku_ids_known == frozenset()
    assert not any(scope.covers(k, "g") for k in ("sku-low", "group-guests", "run-problem"))


def test_a_group_blocked_by_policy_was_not_checked_for_guests():
    odd = group("LIC-Odd", "no-such-profile")
    scope = run_scope(report((odd, [user(guest=True)])), resolved(POLICY))
    assert not scope.covers("group-guests", odd.id)
    assert scope.covers("group-stuck", odd.id)  # its processing state was read with the group


def test_an_unread_group_carrying_a_sku_outside_its_profile_keeps_that_skus_alerts_open():
    # LIC-Team's profile is E5 + EMS, but it also carries Power BI: the seat ledger cannot know
    # Power BI's headroom while the group's members are unread, so its seat alerts stay open.
    bi = group("LIC-BI", "powerbi")
    team = group("LIC-Team", "e5-full", (AssignedLicense(PBI),))
    r = report((bi, [user()]), (team, Membership(error="HTTP 403")))
    assert {s.sku_id for s in r.plan.skus if s.headroom_unknown} == {PBI}
    scope = run_scope(r, resolved(POLICY))
    assert not scope.covers("sku-exhausted", PBI) and not scope.covers("sku-low", PBI)
