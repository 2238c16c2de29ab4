"""The waiting list on plain data: who waits, for what, since when, and in which place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.model import AssignedLicense, LicenseState, Membership
from shared.planner import make_plan
from shared.waiting import (
    SEAT_GIVEN,
    SEAT_NONE,
    SEAT_PLANNED,
    entry_json,
    order_key,
    sku_counts,
    stored_list,
    summary_json,
    to_row,
    waiting_list,
    waiting_sentence,
    with_since,
)
from tests.factories import E5, EMS, PBI, default_skus, group, resolved, snapshot, user

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _policy():  # the shared factory policy: e5-full, e5-no-yammer, powerbi
    return resolved()


def cv(sku_id: str, group_id: str, stamp: str | None = "2026-11-26T08:00:00Z") -> LicenseState:
    return LicenseState(sku_id, group_id, "Error", "CountViolation", last_updated=stamp)


def test_count_violation_members_wait_with_graph_since_and_seated_members_do_not():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    stuck = user("stuck", states=(cv(PBI, g.id),))
    fine = user("fine", holds=(PBI,))
    snap = snapshot(default_skus(pbi=1, consumed_pbi=1), (g, [stuck, fine]))
    plan = make_plan(snap, _policy())
    wl = waiting_list(snap, plan, _policy())
    assert wl.complete
    [w] = wl.entries
    assert (w.upn, w.group_name, w.reason, w.seat) == (
        "stuck@contoso.example",
        "LIC-BI",
        "CountViolation",
        SEAT_NONE,
    )
    assert [s.label for s in w.skus] == ["Power BI Pro (POWER_BI_PRO)"]
    assert w.graph_since == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    dated, keep = with_since(wl, {}, NOW)
    assert dated.entries[0].since == w.graph_since
    assert dated.entries[0].since_source == "graph"
    assert keep == {w.key: w.graph_since}


def test_a_person_holding_the_sku_from_elsewhere_is_not_waiting():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    direct = user("direct", holds=(PBI,), states=(cv(PBI, g.id),))
    snap = snapshot(default_skus(pbi=1, consumed_pbi=1), (g, [direct]))
    assert waiting_list(snap, make_plan(snap, _policy()), _policy()).entries == ()


def test_blocked_seats_members_wait_for_every_profile_sku_they_lack_since_first_seen():
    g = group("LIC-Sales", "e5-full")  # not yet assigned: 3 members, 1 E5 seat
    members = [user(f"m{i}") for i in range(3)]
    snap = snapshot(default_skus(e5=1), (g, members))
    plan = make_plan(snap, _policy())
    assert plan.groups[0].decision.value == "blocked-seats"
    wl = waiting_list(snap, plan, _policy())
    assert [w.upn for w in wl.entries] == [f"m{i}@contoso.example" for i in range(3)]
    assert all(w.reason == "blocked-seats" and w.graph_since is None for w in wl.entries)
    assert [s.part_number for s in wl.entries[0].skus] == ["EMSPREMIUM", "ENTERPRISEPREMIUM"]
    first, keep = with_since(wl, {}, NOW)
    assert {w.since for w in first.entries} == {NOW}
    assert {w.since_source for w in first.entries} == {"first-seen"}
    # The next run keeps the first-seen date.
    later, keep2 = with_since(wl, keep, NOW + timedelta(days=6))
    assert {w.since for w in later.entries} == {NOW}
    assert keep2 == keep


def test_place_is_the_planners_service_order_priority_then_demand():
    # Both groups short of Power BI: priority 10 before 100, then the smaller demand first.
    low = group("LIC-Low", "powerbi", priority=100)
    small = group("LIC-Small", "powerbi", priority=100)
    urgent = group("LIC-Urgent", "powerbi", priority=10)
    snap = snapshot(
        default_skus(pbi=0),
        (low, [user() for _ in range(3)]),
        (small, [user()]),
        (urgent, [user() for _ in range(5)]),
    )
    plan = make_plan(snap, _policy())
    assert plan.service_order == [urgent.id, small.id, low.id]
    wl = waiting_list(snap, plan, _policy())
    places = {w.group_name: w.place for w in wl.entries}
    assert places == {"LIC-Urgent": 1, "LIC-Small": 2, "LIC-Low": 3}
    assert [w.group_name for w in wl.entries][:5] == ["LIC-Urgent"] * 5
    assert wl.entries[-1].group_name == "LIC-Low"


def test_a_group_blocked_by_guests_keeps_its_count_violation_members_waiting_without_a_place():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    guest = user("g", guest=True, upn="g_fabrikam.com#EXT#@contoso.example")
    stuck = user("stuck", states=(cv(PBI, g.id),))
    snap = snapshot(default_skus(pbi=5), (g, [stuck, guest]))
    plan = make_plan(snap, _policy())
    [w] = waiting_list(snap, plan, _policy()).entries
    assert (w.decision, w.place, w.seat) == ("blocked-guests", None, SEAT_NONE)


def test_a_reprocessed_member_is_planned_then_given_only_when_the_write_was_applied():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    stuck = [user(states=(cv(PBI, g.id),)) for _ in range(2)]
    snap = snapshot(default_skus(pbi=5, consumed_pbi=4), (g, stuck))
    plan = make_plan(snap, _policy())  # one seat: one reprocessed, one waits
    seats = {w.user_id: w.seat for w in waiting_list(snap, plan, _policy()).entries}
    first = min(u.id for u in stuck)
    assert seats == {first: SEAT_PLANNED, max(u.id for u in stuck): SEAT_NONE}
    applied = waiting_list(snap, plan, _policy(), applied_group_ids=frozenset({g.id}))
    assert {w.user_id: w.seat for w in applied.entries}[first] == SEAT_GIVEN
    failed = waiting_list(snap, plan, _policy(), applied_group_ids=frozenset())
    assert {w.seat for w in failed.entries} == {SEAT_NONE}


def test_an_unread_group_is_carried_as_unknown_and_its_first_seen_rows_are_kept():
    read = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    unread = group("LIC-Hidden", "powerbi", (AssignedLicense(PBI),))
    gone = user("gone")  # was waiting in LIC-BI, now holds it
    snap = snapshot(
        default_skus(pbi=5),
        (read, [user("gone", holds=(PBI,), uid=gone.id)]),
        (unread, Membership(error="403 on /members")),
    )
    plan = make_plan(snap, _policy())
    wl = waiting_list(snap, plan, _policy())
    assert wl.entries == () and not wl.complete
    assert wl.unread_groups == ((unread.id, "LIC-Hidden"),)
    hidden_key = f"someone_{unread.id}"
    seen = {f"{gone.id}_{read.id}": NOW, hidden_key: NOW - timedelta(days=3)}
    _, keep = with_since(wl, seen, NOW)
    assert keep == {hidden_key: NOW - timedelta(days=3)}  # left LIC-BI's list; LIC-Hidden kept


def test_a_limited_run_is_not_complete():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    snap = snapshot(default_skus(), (g, [user(holds=(PBI,))]))
    wl = waiting_list(snap, make_plan(snap, _policy()), _policy(), limited_to=(g.id,))
    assert not wl.complete and wl.entries == ()


def test_an_error_seats_will_not_fix_is_not_waiting_for_a_seat():
    g = group("LIC-Sales", "e5-full")
    other = user(states=(LicenseState(E5, g.id, "Error", "MutuallyExclusiveViolation"),))
    snap = snapshot(default_skus(e5=0), (g, [other, user("plain")]))
    plan = make_plan(snap, _policy())
    assert plan.groups[0].decision.value == "blocked-seats"
    w = {w.user_id: w for w in waiting_list(snap, plan, _policy()).entries}[other.id]
    assert [s.sku_id for s in w.skus] == [EMS]  # E5 is in another error: advice, not a seat


def test_counts_sentence_and_longest_wait():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    stuck = [user(states=(cv(PBI, g.id, f"2026-11-{26 + i:02d}T08:00:00Z"),)) for i in range(3)] + [
        user(states=(cv(PBI, g.id, None),))
    ]
    snap = snapshot(default_skus(pbi=0), (g, stuck))
    wl, _ = with_since(waiting_list(snap, make_plan(snap, _policy()), _policy()), {}, NOW)
    [count] = sku_counts([entry_json(w) for w in wl.entries], NOW)
    assert count["waiting"] == 4
    assert count["longestSince"] == "2026-11-26T08:00:00+00:00" and count["longestDays"] == 6
    assert (
        waiting_sentence(count)
        == "4 people wait for Power BI Pro (POWER_BI_PRO), the longest for 6 days"
    )
    assert waiting_sentence(count, complete=False).startswith("at least 4 people wait")
    one = {**count, "waiting": 1, "longestDays": 0}
    assert waiting_sentence(one) == (
        "1 person waits for Power BI Pro (POWER_BI_PRO), the only one for less than a day"
    )


def test_seats_given_this_run_are_not_counted_as_waiting():
    item = {
        "userId": "u",
        "seat": SEAT_GIVEN,
        "since": NOW.isoformat(),
        "skus": [{"skuId": E5, "skuPartNumber": "ENTERPRISEPREMIUM"}],
    }
    assert sku_counts([item], NOW) == []


def test_first_seen_rows_of_an_untagged_group_go_in_a_full_run_and_stay_in_a_limited_one():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    snap = snapshot(default_skus(), (g, [user(holds=(PBI,))]))
    plan = make_plan(snap, _policy())
    seen = {"someone_untagged-group": NOW}
    _, keep = with_since(waiting_list(snap, plan, _policy()), seen, NOW)
    assert keep == {}
    limited = waiting_list(snap, plan, _policy(), limited_to=(g.id,))
    _, keep = with_since(limited, seen, NOW)
    assert keep == seen


@pytest.mark.parametrize("with_unread_group", [False, True])
def test_what_a_run_stores_is_the_dated_list_as_the_api_shows_it(with_unread_group: bool):
    """stored_list (the run's one pass) says what with_since, entry_json, to_row and summary_json
    say: the same rows in the same order, the same first-seen rows, the same counts."""
    bi = group("LIC-BI", "powerbi", (AssignedLicense(PBI),))
    sales = group("LIC-Sales", "e5-full")  # blocked: waits for E5 and EMS
    hidden = group("LIC-Hidden", "powerbi", (AssignedLicense(PBI),))
    stuck = [user(f"s{i}", states=(cv(PBI, bi.id, f"2026-11-2{i}T08:00:00Z"),)) for i in range(4)]
    stuck.append(user("nostamp", states=(cv(PBI, bi.id, None),)))
    both = user("both", states=(cv(PBI, bi.id),))
    members = [user(f"m{i}") for i in range(5)]
    snap = snapshot(
        default_skus(e5=1, pbi=5, consumed_pbi=4),
        (bi, [*stuck, both]),
        (sales, members),
        *([(hidden, Membership(error="403 on /members"))] if with_unread_group else []),
    )
    plan = make_plan(snap, _policy())
    wl = waiting_list(snap, plan, _policy())
    assert list(wl.entries) == sorted(wl.entries, key=order_key)
    if not with_unread_group:  # an unread group holds the plan's writes back
        assert {w.seat for w in wl.entries} == {SEAT_PLANNED, SEAT_NONE}
    plus_two = timezone(timedelta(hours=2))
    seen = {
        wl.entries[0].key: NOW - timedelta(days=40),  # earlier than Graph's date
        wl.entries[-1].key: (NOW - timedelta(days=2)).astimezone(plus_two),  # another offset
        wl.entries[-2].key: NOW - timedelta(days=2),  # the same time in UTC
        f"someone_{hidden.id}": NOW - timedelta(days=3),  # unread: kept
        "someone_untagged-group": NOW,  # gone
    }
    dated, keep = with_since(wl, seen, NOW)
    items = [entry_json(w) for w in dated.entries]
    stored = stored_list(wl, seen, NOW)
    assert stored.rows == [to_row(i) for i in items]
    assert [list(r) for r in stored.rows] == [list(to_row(i)) for i in items]  # property order
    assert stored.keep == keep and list(stored.keep) == list(keep)
    assert stored.summary == summary_json(dated, NOW, items)
    assert stored.summary["skus"] and stored.summary["complete"] is not with_unread_group
    assert (f"someone_{hidden.id}" in keep) is with_unread_group
    assert {r["Since"] for r in stored.rows} >= {
        (NOW - timedelta(days=2)).astimezone(plus_two).isoformat(),
        (NOW - timedelta(days=2)).isoformat(),
    }
