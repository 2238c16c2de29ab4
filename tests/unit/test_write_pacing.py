"""Writes and reads are paced under Graph's limits, and by what Graph says about them, instead of
provoking 429s."""

from __future__ import annotations

import asyncio
import threading

from shared.graph import (
    READ_RU_BUDGET,
    READ_RU_WINDOW_S,
    USAGE_HEADER,
    WRITE_LIMIT,
    WRITE_WINDOW_S,
    GraphPacer,
    SlidingWindowLimiter,
    pacer_for,
    resource_units,
)


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
    assert READ_RU_BUDGET < 3500 and READ_RU_WINDOW_S == 10.0


def test_requests_are_estimated_at_microsofts_documented_costs():
    # Microsoft Graph service-specific throttling limits, identity and access (base costs).
    members = {"$select": "id", "$top": "999"}
    assert resource_units("GET", "/v1.0/groups/g1/members", members) == 2  # 3, -1 for $select
    assert resource_units("GET", "/v1.0/groups/g1/transitiveMembers", {}) == 5
    assert resource_units("GET", "/v1.0/subscribedSkus", {"$select": "skuId"}) == 2
    assert resource_units("GET", "/v1.0/users", {"$top": "5"}) == 1  # 2, -1 for $top < 20
    assert resource_units("GET", "/v1.0/groups", {"$filter": "x", "$expand": "y"}) == 2
    assert resource_units("POST", "/v1.0/groups/g1/assignLicense", {}) == 1


def pacer(clock: FakeClock, budget: int = 100, writes: int = 50) -> GraphPacer:
    return GraphPacer(budget, 10.0, writes, 150.0, clock, clock.sleep)


def test_what_graph_charged_replaces_the_estimate():
    clock = FakeClock()
    p = pacer(clock)
    charge = asyncio.run(p.admit(1, write=False))
    p.observe(charge, False, 200, {"x-ms-resource-unit": "7"})
    assert p.resource_units.charged == 7 and p.resource_units.share() == 0.07


def test_writes_spend_resource_units_too():
    clock = FakeClock()
    p = pacer(clock, budget=3)

    async def writes() -> None:
        for _ in range(4):
            await p.admit(1, write=True)

    asyncio.run(writes())
    assert p.writes.charged == 4 and p.resource_units.charged == 4
    assert clock.now >= 10.0  # the fourth write waited for room in the RU budget


def test_usage_above_0_8_slows_the_app_down_and_quiet_answers_speed_it_up_again():
    clock = FakeClock()
    p = pacer(clock, budget=1000)

    async def calls(n: int, usage: str | None) -> None:
        for _ in range(n):
            charge = await p.admit(2, write=False)
            p.observe(charge, False, 200, {USAGE_HEADER: usage} if usage else {})
            clock.now += 0.01

    asyncio.run(calls(10, None))
    assert clock.now < 1 and p.resource_units.allowed == 1000
    asyncio.run(calls(100, "1.2"))  # Graph says the app is over its limit
    assert p.resource_units.allowed < 30 and p.pressure == 100 and p.peak_usage == 1.2
    assert clock.now > 5  # it waited for room instead of pressing on
    slowed = p.resource_units.allowed
    asyncio.run(calls(200, None))
    assert p.resource_units.allowed > slowed  # growing back while Graph reports nothing
    clock.now += 31
    asyncio.run(calls(1, None))
    assert p.resource_units.allowed == 1000  # three quiet windows: back to the full budget


def test_a_429_holds_every_client_of_the_pacer_until_retry_after():
    clock = FakeClock()
    p = pacer(clock)
    charge = asyncio.run(p.admit(1, write=True))
    p.observe(
        charge,
        True,
        429,
        {"retry-after": "12", "x-ms-throttle-scope": "Tenant_Application/Write/app/tenant"},
    )
    assert p.throttled == 1
    asyncio.run(p.admit(2, write=False))  # reads are not held by a write limit
    assert clock.now == 0.0
    asyncio.run(p.admit(1, write=True))
    assert clock.now >= 12.0


def test_a_throttled_app_converges_under_the_limit_without_429():
    """A model of Graph's token bucket (600 RU per 10 s, usage reported as the simulator does)
    against a pacer that believes the documented 3,400: it must settle below the limit."""
    clock = FakeClock()
    p = pacer(clock, budget=3400)
    limit, rate = 600.0, 60.0
    tokens, demand, stamp = limit, 0.0, 0.0
    statuses: list[int] = []

    async def client() -> None:
        nonlocal tokens, demand, stamp
        while clock.now < 120:
            charge = await p.admit(2, write=False)
            refill = (clock.now - stamp) * rate
            tokens, stamp = min(limit, tokens + refill), clock.now
            demand = min(max(demand - refill, 0) + 2, 1.8 * limit)
            status = 429 if tokens < 2 else 200
            tokens -= 2 if status == 200 else 0
            statuses.append(status)
            headers = {USAGE_HEADER: f"{demand / limit:.2f}"} if demand > 0.8 * limit else {}
            p.observe(charge, False, status, headers)
            clock.now += 0.005  # 5 ms a call: 400 RU/s if nothing held it back

    asyncio.run(client())
    assert 429 not in statuses and p.pressure > 0
    assert len(statuses) * 2 >= 0.8 * (600 + 60 * 120)  # most of what Graph allowed was used


def test_one_pacer_per_endpoint_and_app_shared_across_event_loops_and_threads():
    a = pacer_for("http://127.0.0.1:1/v1.0/")
    assert pacer_for("http://127.0.0.1:1/v1.0") is a
    assert pacer_for("http://127.0.0.1:2/v1.0") is not a
    assert pacer_for("http://127.0.0.1:1/v1.0", app_id="other") is not a
    before = a.resource_units.charged
    asyncio.run(a.admit(2, write=False))
    asyncio.run(a.admit(2, write=False))  # a second event loop: no lock bound to the first
    done = [threading.Thread(target=lambda: asyncio.run(a.admit(2, write=False))) for _ in "ab"]
    for t in done:
        t.start()
    for t in done:
        t.join()
    assert a.resource_units.charged == before + 8
