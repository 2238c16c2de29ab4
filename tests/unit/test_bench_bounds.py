"""The benchmark's physical bounds, computed from a simulator request log."""

from __future__ import annotations

from typing import Any

from bench.__main__ import bounds


def _r(method: str, path: str, latency_ms: float, ru: int = 1) -> dict[str, Any]:
    return {"method": method, "path": path, "latencyMs": latency_ms, "ru": ru}


def test_critical_path_is_prefix_plus_longest_member_chain_plus_longest_write() -> None:
    log = [
        _r("GET", "/v1.0/subscribedSkus", 100, 2),
        _r("GET", "/v1.0/groups", 200, 1),
        _r("GET", "/v1.0/groups/A/members", 1000, 2),
        _r("GET", "/v1.0/groups/B/members", 300, 2),
        _r("GET", "/v1.0/groups/A/members", 500, 2),  # A's second page: chain 1.5 s
        _r("POST", "/v1.0/groups/B/assignLicense", 50),
        _r("POST", "/v1.0/users/u/reprocessLicenseAssignment", 70),
    ]
    b = bounds(log)
    assert b["sequential_prefix_s"] == 0.3
    assert b["longest_chain_s"] == 1.5
    assert b["critical_path_s"] == 0.3 + 1.5 + 0.07
    assert b["ru_bound_s"] == round(11 / 8000 * 10, 2)
    assert b["write_bound_s"] == 0.0
    assert b["budget_bound_s"] == b["ru_bound_s"]


def test_budget_bound_counts_the_write_windows_beyond_the_first() -> None:
    log = [_r("POST", f"/v1.0/users/u{i}/reprocessLicenseAssignment", 1) for i in range(5_701)]
    assert bounds(log)["write_bound_s"] == 300.0
    assert bounds(log)["budget_bound_s"] == 300.0
    assert bounds(log)["write_rate_bound_s"] == round(5_701 / 2_850 * 150, 2)


def test_processing_state_polls_in_one_round_cost_their_slowest_query() -> None:
    def poll(at: str, latency_ms: float) -> dict[str, Any]:
        return {
            **_r("GET", "/v1.0/groups", latency_ms),
            "query": "$filter=id in ('a','b')",
            "at": f"2026-12-03T10:00:{at}+00:00",
        }

    log = [
        _r("GET", "/v1.0/subscribedSkus", 100),
        # first round: three queries side by side; the second starts 1 s after the first ended
        poll("00.000", 200),
        poll("00.010", 300),
        poll("00.020", 250),
        poll("01.500", 150),
    ]
    b = bounds(log)
    assert b["sequential_prefix_s"] == 0.1
    assert b["critical_path_s"] == round(0.1 + 0.3 + 0.15, 2)
