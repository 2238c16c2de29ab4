"""Supply side, pure: seats free over time against subscription ends, and the subscription
alerts (ending, status, cut at renewal, trial carrying users) with their scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.alerts import RunScope, open_conditions, transitions
from shared.forecast import SupplyChange, runs_out, seats_free_over_time
from shared.policy import AlertSettings
from shared.subscriptions import parse, supply_changes
from tests.factories import PBI

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SUB = "30000000-0000-4000-8000-000000000001"
OTHER = "30000000-0000-4000-8000-000000000002"


def test_growth_alone_runs_out_when_the_free_seats_are_used():
    out = runs_out(20, 2.0, [], NOW)
    assert out.runs_out_on == NOW + 10 * DAY and out.cause == "growth" and out.change is None
    assert runs_out(20, 0.0, [], NOW).runs_out_on is None
    assert runs_out(20, -3.0, [], NOW).runs_out_on is None  # shrinking demand promises nothing
    assert runs_out(0, 2.0, [], NOW).cause == "exhausted"


def test_a_subscription_ending_before_growth_would_brings_the_date_forward():
    # 20 free, +1 a day: growth alone runs out on 21 December. A 15-seat subscription ending on
    # 6 December leaves 20 - 5 - 15 = 0 free that day.
    ends = SupplyChange(datetime(2026, 12, 6, 2, 0, tzinfo=UTC), -15, "a subscription ends")
    out = runs_out(20, 1.0, [ends], NOW)
    assert out.runs_out_on == datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
    assert out.cause == "supply" and out.change is ends
    # A smaller end leaves seats; growth uses them up earlier than it would have alone.
    small = SupplyChange(datetime(2026, 12, 6, 2, 0, tzinfo=UTC), -5, "a small one ends")
    later = runs_out(20, 1.0, [small], NOW)
    assert later.runs_out_on == datetime(2026, 12, 16, 2, 0, tzinfo=UTC)
    assert later.cause == "supply" and later.change is small
    # Growth first: an end after the seats are gone does not change the date.
    late = SupplyChange(datetime(2027, 3, 1, tzinfo=UTC), -15, "ends in March")
    assert runs_out(20, 1.0, [late], NOW).runs_out_on == NOW + 20 * DAY
    assert runs_out(20, 1.0, [late], NOW).cause == "growth"
    # No growth at all: the end is the date, or nothing if seats remain.
    assert runs_out(10, 0.0, [ends], NOW).runs_out_on == ends.at
    assert runs_out(30, 0.0, [ends], NOW).runs_out_on is None


def test_seats_free_over_time_steps_at_each_change_and_counts_past_dates_now():
    past = SupplyChange(NOW - 3 * DAY, -4, "already passed")
    ends = SupplyChange(NOW + 10 * DAY, -15, "ends")
    points = seats_free_over_time(30, 1.0, [ends, past], NOW)
    assert points == [(NOW, 30.0), (NOW, 26.0), (NOW + 10 * DAY, 1.0)]


def _sub(**kw: Any) -> dict[str, Any]:
    return {
        "id": SUB,
        "commerceSubscriptionId": "c-1",
        "skuId": PBI,
        "skuPartNumber": "POWER_BI_PRO",
        "status": "Enabled",
        "totalLicenses": 10,
        "isTrial": False,
        "nextLifecycleDateTime": (NOW + 12 * DAY).isoformat(),
        **kw,
    }


def test_only_enabled_subscriptions_with_a_date_take_seats_on_that_date():
    subs = [
        parse(_sub()),
        parse(_sub(id=OTHER, status="Warning")),  # its seats are already outside `enabled`
        parse(_sub(id="30000000-0000-4000-8000-000000000003", nextLifecycleDateTime=None)),
        parse(_sub(id="30000000-0000-4000-8000-000000000004", skuId="another")),
    ]
    [change] = supply_changes(subs, PBI)
    assert change.at == NOW + 12 * DAY and change.seats == -10
    assert "ends on 2026-12-13 unless renewed" in change.why


@pytest.mark.parametrize(
    "bad",
    [
        {"totalLicenses": None},
        {"totalLicenses": "10"},
        {"status": None},
        {"skuId": None},
        {"isTrial": "no"},
        {"nextLifecycleDateTime": "soon"},
    ],
)
def test_a_subscription_graph_answered_oddly_is_refused_not_guessed(bad: dict[str, Any]):
    with pytest.raises((TypeError, ValueError)):
        parse(_sub(**bad))


def summary(subs: list[dict[str, Any]] | None, consumed: int = 45, enabled: int = 50) -> dict:
    rows = None
    if subs is not None:
        rows = [parse(s).row() for s in subs]
    return {
        "skus": [
            {
                "skuId": PBI,
                "skuPartNumber": "POWER_BI_PRO",
                "enabled": enabled,
                "consumed": consumed,
                "freeBefore": enabled - consumed,
                "freeAfter": enabled - consumed,
                "reserve": 0,
                "demand": 0,
                "shortfall": 0,
            }
        ],
        "groups": [],
        "subscriptions": rows,
    }


def conds(subs: list[dict[str, Any]] | None, peaks: dict[str, int] | None = None, **kw: Any):
    cfg = AlertSettings(forecast_days=30, subscription_days=30)
    return open_conditions(summary(subs, **kw), "succeeded", None, cfg, {}, NOW, peaks)


def test_an_ending_subscription_names_the_sku_the_date_the_seats_lost_and_who_holds_them():
    found = conds([_sub()])
    c = found[f"subscription-ending-{SUB}"]
    assert c.subject == "Power BI Pro (POWER_BI_PRO): 10 seat(s) end on 2026-12-13 unless renewed"
    facts = dict(c.facts)
    assert facts["Seats that would be lost"] == "10"
    assert facts["Users holding the licence now"] == "45"
    assert facts["Seats enabled after"] == "40"
    assert facts["Users left without a seat"] == "5"
    assert facts["Ends on"] == "2026-12-13"
    # The forecast alert counts the end too: 5 free now, none from 13 December.
    low = found[f"sku-low-{PBI}"]
    assert "ends on 2026-12-13 unless renewed: it runs out in about 12 day(s)" in low.subject
    # Outside the window: nothing about it.
    assert conds([_sub(nextLifecycleDateTime=(NOW + 40 * DAY).isoformat())]) == {}


def test_warning_suspended_cut_and_trial_each_open_their_own_kind():
    warn = conds([_sub(status="Warning")])[f"subscription-status-{SUB}"]
    assert warn.subject == "Power BI Pro (POWER_BI_PRO): a subscription of 10 seat(s) is Warning"
    assert dict(warn.facts)["Next"] == "Suspended on 2026-12-13"
    suspended = conds([_sub(status="Suspended")])[f"subscription-status-{SUB}"]
    assert suspended.severity > warn.severity  # Warning -> Suspended mails "Worse"
    cut = conds([_sub(totalLicenses=8, nextLifecycleDateTime=None)], peaks={SUB: 10})
    assert cut[f"subscription-reduced-{SUB}"].subject == (
        "Power BI Pro (POWER_BI_PRO): a subscription holds 2 licence(s) fewer than before (8 of 10)"
    )
    # A trial of 10 beside 40 paid seats with 45 users: 5 rely on the trial.
    trial = conds([_sub(isTrial=True)])
    # (not also "ending": the trial alert names its date)
    assert set(trial) == {f"subscription-trial-{SUB}", f"sku-low-{PBI}"}
    assert trial[f"subscription-trial-{SUB}"].subject == (
        "Power BI Pro (POWER_BI_PRO): 5 user(s) rely on a trial that ends on 2026-12-13"
    )
    # A trial nobody needs (paid seats cover every user) says nothing.
    assert f"subscription-trial-{SUB}" not in conds([_sub(isTrial=True)], consumed=30)


def test_an_unread_subscription_list_opens_nothing_and_resolves_nothing():
    states = {
        f"subscription-ending-{SUB}": {
            "Status": "open",
            "Kind": "subscription-ending",
            "Notified": True,
            "Subject": "ends",
        }
    }
    assert conds(None) == {}
    unread = RunScope(complete=True, sku_ids_known=frozenset({PBI}), subscriptions_read=False)
    assert transitions(conds(None), states, NOW, scope=unread) == []
    read = RunScope(complete=True, sku_ids_known=frozenset({PBI}), subscriptions_read=True)
    renewed = conds([_sub(nextLifecycleDateTime=(NOW + 365 * DAY).isoformat())])
    [action] = transitions(renewed, states, NOW, scope=read)
    assert action.transition == "resolved"


def test_a_low_seat_forecast_is_not_resolved_by_a_run_that_did_not_read_the_subscriptions():
    states = {
        f"sku-low-{PBI}": {"Status": "open", "Kind": "sku-low", "Notified": True, "Subject": "low"}
    }
    unread = RunScope(complete=True, sku_ids_known=frozenset({PBI}), subscriptions_read=False)
    assert transitions({}, states, NOW, scope=unread) == []
    read = RunScope(complete=True, sku_ids_known=frozenset({PBI}), subscriptions_read=True)
    assert [a.transition for a in transitions({}, states, NOW, scope=read)] == ["resolved"]


def test_seats_this_run_grants_count_as_held_so_the_next_run_is_not_worse():
    # 45 held before, the run grants 3 more (freeAfter 2): 48 hold it once Entra has processed.
    s = summary([_sub()])
    s["skus"][0]["freeAfter"] = 2
    cfg = AlertSettings(subscription_days=30)
    c = open_conditions(s, "succeeded", None, cfg, {}, NOW)[f"subscription-ending-{SUB}"]
    assert dict(c.facts)["Users holding the licence now"] == "48"
    assert dict(c.facts)["Users left without a seat"] == "8"
    assert c.severity == 8
