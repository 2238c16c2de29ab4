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


# ---------------------------------------------------------------------------------------------
# Seats free over time: demand growth against supply changes on known dates (a subscription
# ending, a renewal with fewer licences). Independent of how the slope is estimated above.


@dataclass(frozen=True)
class SupplyChange:
    at: datetime
    seats: int  # seats gained (+) or lost (-) on that date
    why: str  # what a person reads, e.g. "subscription 7a1f… (10 seats) ends unless renewed"


@dataclass(frozen=True)
class Outlook:
    runs_out_on: datetime | None  # when free seats first reach 0; None: not within what is known
    cause: (
        str  # "exhausted" (none free now), "growth", "supply" (a change takes the last seats), ""
    )
    change: SupplyChange | None = None  # the supply change that brings the date forward, if any

    def days_left(self, now: datetime) -> float | None:
        if self.runs_out_on is None:
            return None
        return max(0.0, (self.runs_out_on - now).total_seconds() / 86_400)


def seats_free_over_time(
    free_now: float, slope_per_day: float, changes: Sequence[SupplyChange], now: datetime
) -> list[tuple[datetime, float]]:
    """Free seats now and just after each supply change (changes before `now` count at `now`),
    with consumption growing `slope_per_day` (negative growth is taken as none: seats handed back
    are not promised)."""
    slope = max(0.0, slope_per_day)
    points = [(now, float(free_now))]
    free, at = float(free_now), now
    for change in sorted(changes, key=lambda c: c.at):
        when = max(change.at, now)
        free -= slope * (when - at).total_seconds() / 86_400
        free += change.seats
        at = when
        points.append((when, free))
    return points


def runs_out(
    free_now: float, slope_per_day: float, changes: Sequence[SupplyChange], now: datetime
) -> Outlook:
    """When free seats first reach 0: growth eating them, or a supply change taking them away,
    whichever comes first."""
    if free_now <= 0:
        return Outlook(now, "exhausted")
    slope = max(0.0, slope_per_day)
    free, at = float(free_now), now
    lost: SupplyChange | None = None  # the latest change that took seats, for the reason
    for change in sorted(changes, key=lambda c: c.at):
        when = max(change.at, now)
        if slope > 0:
            zero = at + timedelta(days=free / slope)
            if zero <= when:
                return Outlook(zero, "supply" if lost else "growth", lost)
        free -= slope * (when - at).total_seconds() / 86_400
        free += change.seats
        at = when
        if change.seats < 0:
            lost = change
        if free <= 0:
            return Outlook(when, "supply", change)
    if slope > 0:
        return Outlook(at + timedelta(days=free / slope), "supply" if lost else "growth", lost)
    return Outlook(None, "")
