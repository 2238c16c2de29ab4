"""Which alerts fire, when, and how they read: pure functions on plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.alerts import (
    AlertAction,
    Condition,
    RunScope,
    _next_state,
    open_conditions,
    render,
    transitions,
)
from shared.forecast import forecast
from shared.policy import AlertSettings
from tests.factories import PBI, resolved

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# A complete, successful, unrestricted run that read both groups of `summary()` and the SKU.
FULL = RunScope(
    complete=True,
    sku_ids_known=frozenset({PBI}),
    groups_listed=frozenset({"g1", "g2"}),
    guests_checked=frozenset({"g1", "g2"}),
    errors_checked=frozenset({"g1", "g2"}),
)


def summary(
    shortfall: int = 3,
    guests: list[str] | None = None,
    free_after: int = 0,
    errors: dict[str, list[str]] | None = None,
    processing: str | None = None,
) -> dict[str, Any]:
    group: dict[str, Any] = {
        "groupId": "g1",
        "displayName": "LIC-BI <Team>",
        "profile": "powerbi",
        "decision": "blocked-seats" if shortfall else "compliant",
        "guestCount": 0,
        "guests": [],
        "shortfall": {"POWER_BI_PRO": shortfall} if shortfall else {},
        "licenseErrors": errors or {},
        "processingState": processing,
    }
    groups = [group]
    if guests:
        groups.append(
            {
                "groupId": "g2",
                "displayName": "LIC-Partners",
                "profile": "e5-full",
                "decision": "blocked-guests",
                "guestCount": len(guests),
                "guests": guests,
                "shortfall": {},
            }
        )
    return {
        "skus": [
            {
                "skuId": PBI,
                "skuPartNumber": "POWER_BI_PRO",
                "enabled": 50,
                "consumed": 50,
                "freeBefore": 0,
                "freeAfter": free_after,
                "reserve": 0,
                "demand": shortfall,
                "shortfall": shortfall,
            }
        ],
        "groups": groups,
    }


def conditions(**kwargs: Any) -> dict[str, Condition]:
    status = kwargs.pop("status", "succeeded")
    return open_conditions(summary(**kwargs), status, now=NOW)


def run_once(
    conds: dict[str, Condition],
    states: dict[str, dict[str, Any]],
    now: datetime = NOW,
    sent: bool = True,
    scope: RunScope = FULL,
) -> list[AlertAction]:
    """One run: decide, then update the states as process_alerts does."""
    actions = transitions(conds, states, now, scope=scope)
    for a in actions:
        states[a.key] = _next_state(a, sent and a.mails, "" if sent else "boom", "run", now)
    return actions


def mailed(actions: list[AlertAction]) -> list[str]:
    return [a.transition for a in actions if a.mails]


def test_exhausted_sku_opens_one_alert_with_numbers_and_what_to_do():
    [action] = transitions(conditions(shortfall=3), {}, NOW, scope=FULL)
    assert action.transition == "opened"
    subject, body = render(action, "run-1")
    assert subject == "[Licensing] Power BI Pro (POWER_BI_PRO) has run out: 3 more seat(s) needed"
    assert "Buy 3 seat(s) of Power BI Pro (POWER_BI_PRO)" in body and "run-1" in body
    assert ">Demand<" in body and ">50<" in body


def test_lifecycle_open_continue_worsen_resolve_reopen():
    states: dict[str, dict[str, Any]] = {}
    assert mailed(run_once(conditions(shortfall=3), states)) == ["opened"]
    assert mailed(run_once(conditions(shortfall=3), states, NOW + HOUR)) == []
    assert mailed(run_once(conditions(shortfall=2), states, NOW + 2 * HOUR)) == []  # better: quiet
    assert mailed(run_once(conditions(shortfall=5), states, NOW + 3 * HOUR)) == ["worsened"]
    assert mailed(run_once(conditions(shortfall=0), states, NOW + 4 * HOUR)) == ["resolved"]
    assert mailed(run_once(conditions(shortfall=0), states, NOW + 5 * HOUR)) == []
    assert mailed(run_once(conditions(shortfall=1), states, NOW + 6 * HOUR)) == ["reopened"]
    assert render(transitions(conditions(shortfall=1), {}, NOW, scope=FULL)[0], "r")[0].startswith(
        "[Licensing] Power BI Pro (POWER_BI_PRO)"
    )


def test_a_continuing_condition_is_mailed_again_after_the_cooldown_only():
    states: dict[str, dict[str, Any]] = {}
    run_once(conditions(shortfall=3), states)
    assert mailed(run_once(conditions(shortfall=3), states, NOW + 71 * HOUR)) == []
    [reminder] = run_once(conditions(shortfall=3), states, NOW + 72 * HOUR)
    assert reminder.transition == "reminder"
    assert render(reminder, "r")[0].startswith("[Licensing] Still: ")
    assert mailed(run_once(conditions(shortfall=3), states, NOW + 73 * HOUR)) == []


def test_snoozed_condition_sends_nothing_until_the_snooze_ends_but_still_resolves():
    states: dict[str, dict[str, Any]] = {}
    run_once(conditions(shortfall=3), states)
    key = "sku-exhausted-" + PBI
    states[key]["SnoozedUntil"] = NOW + 200 * HOUR
    assert mailed(run_once(conditions(shortfall=9), states, NOW + 100 * HOUR)) == []
    assert mailed(run_once(conditions(shortfall=9), states, NOW + 201 * HOUR)) == ["worsened"]
    states[key]["SnoozedUntil"] = NOW + 500 * HOUR
    assert mailed(run_once(conditions(shortfall=0), states, NOW + 202 * HOUR)) == ["resolved"]


def test_an_unsent_mail_is_retried_next_run_and_a_condition_nobody_heard_of_ends_quietly():
    states: dict[str, dict[str, Any]] = {}
    run_once(conditions(shortfall=3), states, sent=False)
    assert mailed(run_once(conditions(shortfall=3), states, NOW + HOUR)) == ["opened"]
    states2: dict[str, dict[str, Any]] = {}
    run_once(conditions(shortfall=3), states2, sent=False)
    assert mailed(run_once(conditions(shortfall=0), states2, NOW + HOUR)) == []
    assert states2["sku-exhausted-" + PBI]["Status"] == "resolved"


def test_an_unsent_resolved_mail_is_retried():
    states: dict[str, dict[str, Any]] = {}
    run_once(conditions(shortfall=3), states)
    run_once(conditions(shortfall=0), states, NOW + HOUR, sent=False)
    assert mailed(run_once(conditions(shortfall=0), states, NOW + 2 * HOUR)) == ["resolved"]


def test_stuck_processing_is_told_only_after_the_configured_time():
    states: dict[str, dict[str, Any]] = {}
    stuck = conditions(shortfall=0, processing="ProcessingInProgress")
    assert [a.transition for a in run_once(stuck, states)] == ["pending"]
    assert mailed(run_once(stuck, states, NOW + 23 * HOUR)) == []
    [opened] = run_once(stuck, states, NOW + 24 * HOUR)
    assert opened.transition == "opened" and "over 24 h" in opened.subject
    # processing that finishes before anyone was told ends without a mail
    states2: dict[str, dict[str, Any]] = {}
    run_once(stuck, states2)
    assert mailed(run_once(conditions(shortfall=0), states2, NOW + HOUR)) == []


def test_warning_threshold_and_growth_forecast_open_a_low_seats_alert():
    policy = resolved(
        "version: 1\nprofiles: {powerbi: {skus: [{sku: POWER_BI_PRO}]}}\n"
        "selectors: [{displayNamePrefix: LIC-, profile: powerbi}]\n"
        "skus: {POWER_BI_PRO: {warnBelowFree: 5}}\n"
    )
    low = open_conditions(summary(shortfall=0, free_after=3), "succeeded", policy, now=NOW)
    assert low["sku-low-" + PBI].subject == (
        "Power BI Pro (POWER_BI_PRO) is running low: 3 free seat(s), under the warning level of 5"
    )
    assert open_conditions(summary(shortfall=0, free_after=8), "succeeded", policy, now=NOW) == {}
    # 2 seats a day for 10 days, 20 free: runs out in about 10 days, inside the 30-day window
    history = {PBI: [(NOW - timedelta(days=10 - d), 30 + 2 * d) for d in range(11)]}
    grown = open_conditions(
        summary(shortfall=0, free_after=20),
        "succeeded",
        None,
        AlertSettings(forecast_days=30),
        history,
        NOW,
    )
    assert "runs out in about 10 day(s) (around 2026-12-07)" in grown["sku-low-" + PBI].subject


def test_forecast_needs_growth_and_enough_history():
    flat = [(NOW - timedelta(days=d), 40) for d in range(5)]
    assert forecast(flat, 10, NOW).runs_out_on is None
    assert forecast([(NOW, 1), (NOW + HOUR, 5), (NOW + 2 * HOUR, 9)], 10, NOW).runs_out_on is None
    shrinking = [(NOW - timedelta(days=d), 40 + d) for d in range(5)]
    assert forecast(shrinking, 10, NOW).slope_per_day < 0
    growing = [(NOW - timedelta(days=d), 40 - 5 * d) for d in range(5)]
    assert forecast(growing, 10, NOW).runs_out_on == NOW + timedelta(days=2)


def test_failed_and_partial_runs_alert_and_a_failure_after_partial_is_worse():
    states: dict[str, dict[str, Any]] = {}
    partial = conditions(shortfall=0, status="partial")
    assert mailed(run_once(partial, states)) == ["opened"]
    assert "Licensing run partial" in partial["run-problem"].subject
    assert mailed(run_once(conditions(shortfall=0, status="failed"), states, NOW + HOUR)) == [
        "worsened"
    ]
    assert mailed(run_once(conditions(shortfall=0), states, NOW + 2 * HOUR)) == ["resolved"]


def sku_mail(**row: Any) -> tuple[str, str]:
    data = summary(shortfall=2)
    data["skus"][0].update(row)
    [action] = [
        a
        for a in transitions(open_conditions(data, "succeeded", now=NOW), {}, NOW, scope=FULL)
        if a.kind == "sku-exhausted"
    ]
    return render(action, "r")


def test_mail_names_the_sku_as_microsoft_does_and_an_unlisted_one_by_its_part_number():
    e5 = "c7df2760-2c81-4ef7-b578-5b5392b571df"
    subject, body = sku_mail(skuId=e5, skuPartNumber="ENTERPRISEPREMIUM")
    assert subject.startswith("[Licensing] Office 365 E5 (ENTERPRISEPREMIUM) has run out")
    assert ">Office 365 E5 (ENTERPRISEPREMIUM)</td>" in body
    unlisted = "00000000-0000-0000-0000-0000000000aa"
    subject, body = sku_mail(skuId=unlisted, skuPartNumber="CONTOSO_SPECIAL")
    assert subject.startswith("[Licensing] CONTOSO_SPECIAL has run out")
    assert ">CONTOSO_SPECIAL</td>" in body


def test_a_hostile_product_name_is_escaped_in_the_mail():
    subject, body = sku_mail(productName="<script>alert(1)</script>")
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; (POWER_BI_PRO)" in body
    assert "\n" not in subject


def test_licence_errors_that_seats_will_not_fix_name_the_error_and_the_fix():
    conds = conditions(shortfall=0, errors={"MutuallyExclusiveViolation": ["ann@contoso.example"]})
    cond = conds["group-errors-g1"]
    _, body = render(transitions(conds, {}, NOW, scope=FULL)[0], "r")
    assert "ann@contoso.example" in body and "conflicting licence" in cond.advice


def test_guest_alert_lists_the_guests_and_every_directory_value_is_escaped():
    conds = conditions(shortfall=2, guests=['eve"<script>alert(1)</script>#EXT#@x.com'])
    actions = {a.key: a for a in transitions(conds, {}, NOW, scope=FULL)}
    subject, body = render(actions["group-guests-g2"], "r")
    assert "<script>" not in body and "&lt;script&gt;" in body
    _, sku_body = render(actions["sku-exhausted-" + PBI], "r")
    assert "LIC-BI &lt;Team&gt;" in sku_body  # the blocked group's name, escaped
    assert "\n" not in subject


# ---------------------------------------------------------------------------------------------
# A run resolves only what it read completely. Each test starts with open, mailed alerts.


def open_everything() -> dict[str, dict[str, Any]]:
    """Alert states after a partial run: PBI short, LIC-Partners has a guest, LIC-BI has errors,
    the run itself had a problem. All mailed."""
    states: dict[str, dict[str, Any]] = {}
    conds = conditions(
        shortfall=3,
        guests=["eve#EXT#@x.com"],
        errors={"MutuallyExclusiveViolation": ["ann@contoso.example"]},
        status="partial",
    )
    assert sorted(mailed(run_once(conds, states))) == ["opened"] * 4
    assert {k: v["Status"] for k, v in states.items()} == {
        "sku-exhausted-" + PBI: "open",
        "group-guests-g2": "open",
        "group-errors-g1": "open",
        "run-problem": "open",
    }
    return states


def status(states: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: v["Status"] for k, v in states.items()}


def test_a_failed_run_that_read_nothing_resolves_nothing():
    states = open_everything()
    # A failed run's summary has no SKUs or groups; its one condition is its own failure.
    failed = open_conditions({"error": "could not read subscribed SKUs"}, "failed", now=NOW)
    actions = run_once(failed, states, NOW + HOUR, scope=RunScope())
    assert [(a.key, a.transition) for a in actions] == [("run-problem", "worsened")]
    assert set(status(states).values()) == {"open"}


def test_a_run_limited_to_groupids_resolves_only_the_groups_it_read():
    states = open_everything()
    # Limited to LIC-BI (g1): it read g1 completely and found its errors gone, but knows nothing
    # of g2 or of the other groups' demand for any SKU.
    limited = RunScope(
        complete=True,
        limited=True,
        groups_listed=frozenset({"g1"}),
        guests_checked=frozenset({"g1"}),
        errors_checked=frozenset({"g1"}),
    )
    actions = run_once(conditions(shortfall=0), states, NOW + HOUR, scope=limited)
    assert [(a.key, a.transition) for a in actions] == [("group-errors-g1", "resolved")]
    assert status(states) == {
        "sku-exhausted-" + PBI: "open",
        "group-guests-g2": "open",
        "group-errors-g1": "resolved",
        "run-problem": "open",  # a limited run is not a complete one
    }


def test_a_group_whose_members_were_not_read_keeps_its_alert():
    states = open_everything()
    g2_unread = RunScope(
        sku_ids_known=frozenset({PBI}),
        groups_listed=frozenset({"g1", "g2"}),
        guests_checked=frozenset({"g1"}),
        errors_checked=frozenset({"g1"}),
    )
    actions = run_once(
        conditions(shortfall=0, status="partial"), states, NOW + HOUR, scope=g2_unread
    )
    assert sorted((a.key, a.transition) for a in actions if a.mails) == [
        ("group-errors-g1", "resolved"),
        ("sku-exhausted-" + PBI, "resolved"),
    ]
    assert status(states)["group-guests-g2"] == "open"
    assert status(states)["run-problem"] == "open"


def test_a_sku_not_known_completely_keeps_its_alert_and_a_known_one_resolves():
    states = open_everything()
    unknown_pbi = FULL.without_skus([PBI.upper()])
    assert not unknown_pbi.covers("sku-exhausted", PBI)
    actions = run_once(conditions(shortfall=0), states, NOW + HOUR, scope=unknown_pbi)
    assert "sku-exhausted-" + PBI not in {a.key for a in actions}
    assert status(states)["sku-exhausted-" + PBI] == "open"
    assert status(states)["run-problem"] == "resolved"  # complete, unrestricted, succeeded
    # The next run that knows PBI's seats resolves it, once.
    assert mailed(run_once(conditions(shortfall=0), states, NOW + 2 * HOUR)) == ["resolved"]
    assert mailed(run_once(conditions(shortfall=0), states, NOW + 3 * HOUR)) == []


def test_run_problem_resolves_only_on_a_complete_successful_unrestricted_run():
    states = open_everything()
    for scope in (
        RunScope(),  # failed
        RunScope(complete=False, sku_ids_known=frozenset({PBI})),  # partial or refused
        RunScope(complete=True, limited=True),  # succeeded, limited to groupIds
    ):
        run_once(
            conditions(shortfall=3, guests=["eve#EXT#@x.com"]), states, NOW + HOUR, scope=scope
        )
        assert status(states)["run-problem"] == "open"
    run_once(conditions(shortfall=3, guests=["eve#EXT#@x.com"]), states, NOW + 2 * HOUR)
    assert status(states)["run-problem"] == "resolved"


def test_a_group_no_longer_tagged_resolves_only_once_every_tagged_group_was_found():
    states = open_everything()
    # LIC-Partners (g2) was untagged: the complete listing no longer has it.
    untagged = RunScope(groups_listed=frozenset({"g1"}), errors_checked=frozenset({"g1"}))
    actions = run_once(conditions(shortfall=3), states, NOW + HOUR, scope=untagged)
    assert [(a.key, a.transition) for a in actions] == [
        ("group-errors-g1", "resolved"),
        ("group-guests-g2", "resolved"),
    ]
    assert not RunScope(groups_listed=None).covers("group-guests", "g2")  # listing failed
    assert not RunScope(groups_listed=frozenset({"g1"}), limited=True).covers("group-guests", "g2")
    assert not FULL.covers("some-future-kind", "g2")


def test_a_pending_condition_outside_the_scope_stays_pending():
    states: dict[str, dict[str, Any]] = {}
    run_once(conditions(shortfall=0, processing="ProcessingInProgress"), states)
    assert status(states) == {"group-stuck-g1": "pending"}
    run_once({}, states, NOW + HOUR, scope=RunScope())
    assert status(states) == {"group-stuck-g1": "pending"}
    run_once({}, states, NOW + 2 * HOUR, scope=FULL)  # read, finished: ends without a mail
    assert status(states) == {"group-stuck-g1": "resolved"}
