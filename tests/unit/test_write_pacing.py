"""Writes and reads are paced under Graph's limits instead of provoking 429s."""

from __future__ import annotations

import asyncio

from shared.graph import WRITE_LIMIT, WRITE_WINDOW_S, SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_no_window_of_the_given_length_ever_holds_more_than_the_limit():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(5, 10.0, clock, clock.sleep)
    times: list[float] = []

    async def writes() -> None:
        for _ in range(23):
            await limiter.acquire()
            times.append(clock.now)
            clock.now += 0.5  # each write takes half a second

    asyncio.run(writes())
    for t in times:
        assert sum(1 for u in times if t <= u < t + 10.0) <= 5
    assert times[5] >= 10.0  # the sixth write waited for the window to move on
    assert limiter.waited_s > 0


def test_under_the_limit_nothing_waits():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(100, 10.0, clock, clock.sleep)

    async def writes() -> None:
        await asyncio.gather(*(limiter.acquire() for _ in range(100)))

    asyncio.run(writes())
    assert clock.now == 0.0 and limiter.waited_s == 0.0


def test_the_default_stays_under_graphs_documented_write_limit():
    assert WRITE_LIMIT < 3000 and WRITE_WINDOW_S == 150.0


def test_reads_are_weighed_by_their_resource_unit_cost():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(10, 10.0, clock, clock.sleep)
    times: list[float] = []

    async def reads() -> None:
        for _ in range(12):  # 2 units each: five fit in a window
            await limiter.acquire(2)
            times.append(clock.now)
            clock.now += 0.1

    asyncio.run(reads())
    assert times[4] < 10.0 <= times[5]
    for t in times:
        assert 2 * sum(1 for u in times if t <= u < t + 10.0) <= 10


def test_one_request_costlier_than_the_whole_budget_still_goes_alone():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 10.0, clock, clock.sleep)
    asyncio.run(limiter.acquire(5))
    assert clock.now == 0.0


def test_graph_reads_are_budgeted_under_the_smallest_tenants_limit():
    from shared.graph import READ_RU_BUDGET, READ_RU_WINDOW_S, RU_COST

    assert READ_RU_BUDGET < 3500 and READ_RU_WINDOW_S == 10.0
    assert RU_COST["list_members"] == 2  # 3 RU, -1 for $select
