"""The many-tenants benchmark's arithmetic: percentiles, the CPU bound, the scale-out ratios."""

from __future__ import annotations

from typing import Any

import pytest

from bench.tenants import attainable_ratio, cpu_bound_s, percentile, summarize


def test_percentile_interpolates_between_the_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    assert percentile(list(reversed(values)), 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 95) == 7.0


def test_percentile_refuses_no_values_and_a_bad_rank() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], 101)


def test_the_cpu_bound_caps_the_ratio_a_worker_count_can_reach() -> None:
    # 400 CPU seconds on 2 cores: no run can finish in under 200 s.
    assert cpu_bound_s(400, 2) == 200
    # Baseline 600 s: 4 workers could reach 4x (150 s) but the CPU allows 200 s: 3x at best.
    assert attainable_ratio(600, 4, cpu_bound_s(400, 2)) == 3.0
    # With CPU to spare, the ratio is the worker count.
    assert attainable_ratio(600, 2, cpu_bound_s(100, 2)) == 2.0


def _worker(runs: list[tuple[float, float, str]], end: float, cpu: float) -> dict[str, Any]:
    return {
        "runs": [{"tenant": "t", "status": s, "start": a, "end": b} for a, b, s in runs],
        "end": end,
        "cpu_s": cpu,
        "peak_rss_mb": 100.0,
    }


def test_summary_counts_failures_and_missing_tenants_and_times_from_go() -> None:
    go = 1000.0
    workers = [
        _worker([(1000, 1002, "succeeded"), (1000, 1004, "partial")], 1004.5, 3.0),
        _worker([(1000, 1001, "failed"), (1001, 1003, "succeeded")], 1003.0, 2.0),
    ]
    s = summarize(workers, go, tenants=5, cores=2, other_cpu_s=5.0)
    assert s["wall_s"] == 4.5  # go to the last worker's end
    assert (s["tenants_done"], s["tenants_failed"]) == (3, 2)  # one failed, one never ran
    assert s["statuses"] == {"failed": 1, "partial": 1, "succeeded": 2}
    assert s["run_p50_s"] == 2.0 and s["run_max_s"] == 4.0
    assert s["cpu_s"] == 10.0 and s["cpu_bound_s"] == 5.0
    assert s["tenants_per_min"] == 40.0  # 3 done in 4.5 s
    assert s["runs_per_worker"] == [2, 2]
    assert s["worker_cpu_max_s"] == 3.0  # the busiest worker: one process, one core at a time
