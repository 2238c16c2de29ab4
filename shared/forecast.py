"""When does a SKU run out at its recent growth? Least-squares slope of consumed seats per day
(`statistics.linear_regression`, ordinary least squares)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import linear_regression

MIN_POINTS = 3
MIN_SPAN = timedelta(days=1)  # a few minutes of history says nothing about growth


@dataclass(frozen=True)
class Forecast:
    slope_per_day: float  # seats consumed per day; <= 0: not growing
    runs_out_on: datetime | None  # None: not growing, or not enough history

    def days_left(self, now: datetime) -> float | None:
        if self.runs_out_on is None:
            return None
        return max(0.0, (self.runs_out_on - now).total_seconds() / 86_400)


def forecast(
    history: Sequence[tuple[datetime, int]], remaining: int, at: datetime, window_days: int = 30
) -> Forecast:
    """When `remaining` free seats are used up, counting from `at`, at the growth `history` shows.

    `history` is (time, consumed) for one SKU, any order; the last `window_days` of it are used.
    """
    if not history:
        return Forecast(0.0, None)
    points = sorted(history)
    latest_at = points[-1][0]
    points = [p for p in points if p[0] >= latest_at - timedelta(days=window_days)]
    if len(points) < MIN_POINTS or points[-1][0] - points[0][0] < MIN_SPAN:
        return Forecast(0.0, None)
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / 86_400 for t, _ in points]
    ys = [float(c) for _, c in points]
    slope, _ = linear_regression(xs, ys)  # xs span MIN_SPAN, so they are never all equal
    if slope <= 0:
        return Forecast(slope, None)
    return Forecast(slope, at + timedelta(days=max(0.0, remaining / slope)))
