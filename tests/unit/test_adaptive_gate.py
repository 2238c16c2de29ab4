"""Adaptive concurrency: grows while Graph reports no pressure, halves on usage above 0.8 or a
429, never above the LICENSING_MAX_CONCURRENCY ceiling."""

from __future__ import annotations

import asyncio

from shared.graph import AdaptiveGate, GraphPacer


async def _through(gate: AdaptiveGate, n: int, on_each: object = None) -> int:
    most = 0

    async def one(i: int) -> None:
        nonlocal most
        async with gate:
            most = max(most, gate.active)
            assert gate.active <= gate.limit <= gate.ceiling
            await asyncio.sleep(0.001)
            if callable(on_each):
                on_each(i)

    await asyncio.gather(*(one(i) for i in range(n)))
    return most


def test_grows_to_the_ceiling_while_graph_is_calm() -> None:
    gate = AdaptiveGate(GraphPacer(), ceiling=12, start=2)
    most = asyncio.run(_through(gate, 200))
    assert gate.limit == gate.peak == 12
    assert most == 12  # it used the room, and never more
    assert gate.backoffs == 0


def test_halves_when_graph_reports_usage_above_0_8() -> None:
    pacer = GraphPacer()
    gate = AdaptiveGate(pacer, ceiling=16, start=16)
    charge = pacer.resource_units.reserve(2)[0]

    def pressure(i: int) -> None:
        if i == 0:
            pacer.observe(charge, False, 200, {"x-ms-throttle-limit-percentage": "0.9"})

    asyncio.run(_through(gate, 1))
    assert gate.backoffs == 0 and gate.limit == 16
    asyncio.run(_through(gate, 1, pressure))
    assert gate.backoffs == 1 and gate.limit == 8


def test_a_429_halves_it_and_it_does_not_grow_while_the_budget_is_lowered() -> None:
    pacer = GraphPacer()
    gate = AdaptiveGate(pacer, ceiling=32, start=8)
    charge = pacer.resource_units.reserve(2)[0]

    def throttle(i: int) -> None:
        if i == 0:
            pacer.observe(charge, False, 429, {"retry-after": "0"})

    asyncio.run(_through(gate, 1, throttle))
    assert gate.limit == 4
    asyncio.run(_through(gate, 20))  # the pacer's budget is still halved: no growth yet
    assert gate.limit == 4


def test_the_ceiling_holds_even_when_it_is_below_the_start() -> None:
    gate = AdaptiveGate(GraphPacer(), ceiling=1)
    assert asyncio.run(_through(gate, 10)) == 1


def test_waiters_go_in_arrival_order_and_a_cancelled_one_loses_no_slot() -> None:
    async def scenario() -> tuple[list[str], int]:
        gate = AdaptiveGate(GraphPacer(), ceiling=1, start=1)
        order: list[str] = []
        release = asyncio.Event()

        async def holder() -> None:
            async with gate:
                await release.wait()
            # "c" was just handed the slot; cancelled before it runs, it must pass it on.
            waiting["c"].cancel()

        async def waiter(name: str) -> None:
            async with gate:
                order.append(name)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiting = {n: asyncio.create_task(waiter(n)) for n in ("b", "c", "d", "e")}
        await asyncio.sleep(0)
        waiting["b"].cancel()  # gave up while waiting
        release.set()
        await first
        await asyncio.gather(*waiting.values(), return_exceptions=True)
        return order, gate.active

    order, active = asyncio.run(scenario())
    assert order == ["d", "e"]
    assert active == 0
