"""A refused nightly apply enforced nothing: operators hear of it as a run problem."""

from __future__ import annotations

from shared.alerts import open_conditions


def summary(trigger: str) -> dict[str, object]:
    reason = "another run (20261127T000000Z-0b0b0b) is in progress on this tenant"
    return {"trigger": trigger, "refusedReason": reason, "groups": [], "skus": []}


def test_a_refused_timer_run_is_a_run_problem_naming_the_reason():
    found = open_conditions(summary("timer"), "refused")
    problem = found["run-problem"]
    assert problem.subject == "Licensing run refused"
    assert ("Error", summary("timer")["refusedReason"]) in problem.facts


def test_a_refused_http_run_is_answered_to_its_caller_not_mailed():
    assert "run-problem" not in open_conditions(summary("http"), "refused")
