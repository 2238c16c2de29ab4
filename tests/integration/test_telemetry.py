"""One run of the demo tenant through in-memory exporters: its trace (phases, groups, Graph calls
as child spans), its metrics and its logs (correlated with the trace)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry as t
from shared.run import execute_run
from shared.telemetry import ProgressEvent
from tests.integration.conftest import World


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def test_run_trace_metrics_logs_and_progress(world: World, caplog: Any):
    # One throttled member read: retried by the SDK after Retry-After, counted and traced.
    world.sim.admin(
        "POST", "/_sim/faults", {"path": "members", "status": 429, "count": 1, "retryAfter": "1"}
    )
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    events: list[ProgressEvent] = []
    seen_trace_ids: list[str] = []

    class TraceIds(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            from opentelemetry import trace

            ctx = trace.get_current_span().get_span_context()
            seen_trace_ids.append(f"{ctx.trace_id:032x}")

    handler = TraceIds()
    logging.getLogger("licensing").addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="licensing"):
            report = asyncio.run(
                execute_run(
                    world.settings,
                    "apply",
                    "test",
                    tracer_provider=tracer_provider,
                    meter_provider=MeterProvider(metric_readers=[reader]),
                    progress=events.append,
                )
            )
    finally:
        logging.getLogger("licensing").removeHandler(handler)
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    [root] = [s for s in finished if s.name == t.SPAN_RUN]
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}, "one trace"

    def parent(span: Any) -> str:
        return by_id[span.parent.span_id].name if span.parent else ""

    names = {s.name for s in finished}
    assert {t.SPAN_COLLECT, t.SPAN_PLAN, t.SPAN_APPLY, t.SPAN_RECORD, t.SPAN_ALERT} <= names
    reads = [s for s in finished if s.name == t.SPAN_GROUP_READ]
    assert len(reads) == len(report.plan.groups) and {parent(s) for s in reads} == {t.SPAN_COLLECT}
    applies = [s for s in finished if s.name == t.SPAN_GROUP_APPLY]
    assert {s.attributes["licensing.group_id"] for s in applies} == {
        g.group_id for g in report.plan.changes
    }
    assert {parent(s) for s in applies} == {t.SPAN_APPLY}
    assert {s.attributes["licensing.outcome"] for s in applies} == {"applied"}
    graph = [s for s in finished if s.name.startswith(t.SPAN_GRAPH_PREFIX)]
    assert {parent(s) for s in graph if "/members" in s.attributes["url.path"]} == {
        t.SPAN_GROUP_READ
    }
    assert {
        parent(s)
        for s in graph
        if s.name == "graph POST" and "sendMail" not in s.attributes["url.path"]
    } == {t.SPAN_GROUP_APPLY}
    assert any(s.attributes.get("graph.throttled") for s in graph)
    [plan_span] = [s for s in finished if s.name == t.SPAN_PLAN]
    decisions = [e for e in plan_span.events if e.name == t.EVENT_DECISION]
    assert len(decisions) == len(report.plan.groups)

    points = metric_points(reader)
    decided = {p.attributes["decision"]: p.value for p in points[t.METRIC_DECISIONS]}
    assert decided == {k: v for k, v in report.plan.counts().items() if v}
    free = {p.attributes["sku"]: p.value for p in points[t.METRIC_FREE_SEATS]}
    assert set(free) == {s["skuPartNumber"] for s in report.sku_rows()}
    requests = sum(p.value for p in points[t.METRIC_GRAPH_REQUESTS])
    assert requests == len(world.requests()), "every HTTP attempt, retries included"
    assert sum(p.value for p in points[t.METRIC_GRAPH_THROTTLED]) == 1
    assert sum(p.value for p in points[t.METRIC_GRAPH_RESOURCE_UNITS]) > 0
    [duration] = points[t.METRIC_RUN_DURATION]
    assert duration.count == 1 and duration.attributes["status"] == report.status

    ended = [r for r in caplog.records if "ended" in r.getMessage()]
    assert ended, "the run logs its end"
    assert f"{root.context.trace_id:032x}" in seen_trace_ids, "logs carry the run's trace"

    phases = [e.phase for e in events]
    assert phases.count("read") == len(report.plan.groups)
    assert ProgressEvent("decided", len(report.plan.groups), len(report.plan.groups)) in events
    applied = [e for e in events if e.phase == "applied"]
    assert (
        applied[-1].done
        == applied[-1].total
        == report.graph_writes - sum(1 for a in report.alerts if a.get("sent"))
    )
