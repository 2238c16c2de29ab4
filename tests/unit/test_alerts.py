"""Which alerts fire and how they read: pure, tested on plain data."""

from __future__ import annotations

from typing import Any

from shared.alerts import open_conditions, render, transitions


def summary(shortfall: int = 3, guests: list[str] | None = None) -> dict[str, Any]:
    groups: list[dict[str, Any]] = [
        {
            "groupId": "g1",
            "displayName": "LIC-BI <Team>",
            "profile": "powerbi",
            "decision": "blocked-seats",
            "guestCount": 0,
            "guests": [],
            "shortfall": {"POWER_BI_PRO": shortfall} if shortfall else {},
        }
    ]
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
                "skuId": "s1",
                "skuPartNumber": "POWER_BI_PRO",
                "enabled": 5,
                "consumed": 5,
                "freeBefore": 0,
                "reserve": 0,
                "demand": shortfall,
                "shortfall": shortfall,
            }
        ],
        "groups": groups,
    }


def state(conditions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        k: {"Status": "open", "Notified": True, "Severity": c.severity, "Subject": c.subject}
        for k, c in conditions.items()
    }


def test_exhausted_sku_opens_one_alert_with_numbers_and_what_to_do():
    now = open_conditions(summary(shortfall=3))
    [action] = transitions(now, {})
    assert action.transition == "opened"
    subject, body = render(action, "run-1")
    assert subject == "[Licensing] POWER_BI_PRO has run out: 3 more seat(s) needed"
    assert "Buy 3 seat(s) of POWER_BI_PRO" in body and "run-1" in body


def test_a_continuing_condition_sends_nothing_and_a_worse_one_sends_again():
    first = open_conditions(summary(shortfall=3))
    assert transitions(open_conditions(summary(shortfall=3)), state(first)) == []
    [worse] = transitions(open_conditions(summary(shortfall=5)), state(first))
    assert worse.transition == "worsened"
    assert render(worse, "r")[0].startswith("[Licensing] Worse: ")


def test_cleared_condition_sends_one_resolved_mail():
    first = open_conditions(summary(shortfall=3))
    [resolved] = transitions(open_conditions(summary(shortfall=0)), state(first))
    assert resolved.transition == "resolved"
    assert render(resolved, "r")[0].startswith("[Licensing] Resolved: POWER_BI_PRO has run out")
    closed = {k: {**v, "Status": "resolved"} for k, v in state(first).items()}
    assert transitions(open_conditions(summary(shortfall=0)), closed) == []


def test_unsent_alert_is_retried_next_run():
    first = open_conditions(summary(shortfall=3))
    unsent = {k: {**v, "Notified": False} for k, v in state(first).items()}
    [again] = transitions(first, unsent)
    assert again.transition == "opened"


def test_guest_alert_lists_the_guests_and_every_directory_value_is_escaped():
    now = open_conditions(summary(shortfall=2, guests=['eve"<script>alert(1)</script>#EXT#@x.com']))
    actions = {a.condition_key: a for a in transitions(now, {})}
    _, body = render(actions["group-guests-g2"], "r")
    assert "<script>" not in body and "&lt;script&gt;" in body
    _, sku_body = render(actions["sku-exhausted-s1"], "r")
    assert "LIC-BI &lt;Team&gt;" in sku_body  # the blocked group's name, escaped
