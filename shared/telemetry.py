"""OpenTelemetry in one place: span and metric names, the run's metrics, Graph call spans, progress
events for the command line, and exporter set-up for the host.

The engine uses only the API with providers passed in (tests pass in-memory ones); without them the
global providers apply (no-ops unless `configure()` or Azure Monitor installed real ones).

Trace of one run (`licensing.run`):
  licensing.collect -> graph GET (subscribedSkus, groups), licensing.group.read -> graph GET (pages)
  licensing.plan    -> one `licensing.decision` event per group
  licensing.apply   -> licensing.group.apply -> graph POST (assignLicense, reprocess...)
  licensing.alert   -> graph POST sendMail
  licensing.record
Every HTTP attempt to Graph (retries included) is one `graph <METHOD>` span.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from azure.core.credentials import TokenCredential
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    RequestInfo,
    ResponseInfo,
)
from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.trace import Span, Tracer, TracerProvider

from shared.graph import RESOURCE_UNIT_HEADER, USAGE_HEADER, GraphClient
from shared.model import Membership
from shared.settings import local_endpoint_problems

if TYPE_CHECKING:
    from shared.planner import Plan

TRACER_NAME = "group_licensing"
METER_NAME = "group_licensing"
SPAN_RUN = "licensing.run"
SPAN_COLLECT = "licensing.collect"
SPAN_PLAN = "licensing.plan"
SPAN_APPLY = "licensing.apply"
SPAN_RECORD = "licensing.record"
SPAN_ALERT = "licensing.alert"
SPAN_GROUP_READ = "licensing.group.read"
SPAN_GROUP_APPLY = "licensing.group.apply"
SPAN_GRAPH_PREFIX = "graph "  # + HTTP method
EVENT_DECISION = "licensing.decision"

METRIC_FREE_SEATS = "licensing.sku.free_seats"
METRIC_DECISIONS = "licensing.decisions"
METRIC_GRAPH_REQUESTS = "licensing.graph.requests"
METRIC_GRAPH_RESOURCE_UNITS = "licensing.graph.resource_units"
METRIC_GRAPH_THROTTLED = "licensing.graph.throttled"
METRIC_RUN_DURATION = "licensing.run.duration"

log = logging.getLogger("licensing")


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)


def get_meter(provider: MeterProvider | None = None) -> Meter:
    return metrics.get_meter(METER_NAME, meter_provider=provider)


# -- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressEvent:
    """What a long run has done so far. phase: read (group members read), decided (plan made),
    applied (Graph writes done). total is None while it is not known yet."""

    phase: str
    done: int
    total: int | None = None


ProgressCallback = Callable[[ProgressEvent], None]


# -- metrics ----------------------------------------------------------------------------------


class RunMetrics:
    """The run's instruments. Graph request figures are counted per HTTP attempt."""

    def __init__(self, provider: MeterProvider | None = None) -> None:
        meter = get_meter(provider)
        self.free_seats = meter.create_gauge(
            METRIC_FREE_SEATS, unit="{seat}", description="enabled minus consumed units per SKU"
        )
        self.decisions = meter.create_counter(
            METRIC_DECISIONS, unit="{group}", description="group decisions by kind"
        )
        self.graph_requests = meter.create_counter(
            METRIC_GRAPH_REQUESTS, unit="{request}", description="HTTP requests sent to Graph"
        )
        self.resource_units = meter.create_counter(
            METRIC_GRAPH_RESOURCE_UNITS,
            unit="{resource_unit}",
            description="Graph resource units charged (x-ms-resource-unit)",
        )
        self.throttled = meter.create_counter(
            METRIC_GRAPH_THROTTLED, unit="{request}", description="Graph requests answered 429"
        )
        self.duration = meter.create_histogram(
            METRIC_RUN_DURATION, unit="s", description="run duration"
        )

    def record_plan(self, plan: Plan, mode: str) -> None:
        for group in plan.groups:
            self.decisions.add(1, {"decision": group.decision.value, "mode": mode})

    def record_seats(self, sku_rows: list[dict[str, Any]]) -> None:
        for row in sku_rows:
            # freeAfter is measured after an apply; otherwise the seats free now are free before
            # the plan, without the policy's reserve.
            measured = row.get("freeAfterSource") == "measured"
            free = row["freeAfter"] if measured else row["enabled"] - row["consumed"]
            self.free_seats.set(free, {"sku": row["skuPartNumber"]})

    def record_end(self, seconds: float, mode: str, status: str) -> None:
        self.duration.record(seconds, {"mode": mode, "status": status})


# -- Graph instrumentation ----------------------------------------------------------------------


class _GraphHooks:
    """Request and response hooks for opentelemetry-instrumentation-httpx's transport: the span
    is the library's (one per HTTP attempt, retries too, since it sits under msgraph's retry
    middleware); these name it `graph <METHOD>` and add what Graph's pacing and the run's metrics
    need (resource units, the throttle percentage, 429s)."""

    def __init__(self, graph: InstrumentedGraphClient) -> None:
        self.graph = graph

    async def request(self, span: Span, request: RequestInfo) -> None:
        method = request.method.decode()
        span.update_name(SPAN_GRAPH_PREFIX + method)
        # The stable HTTP names, whichever semantic-convention mode the library runs in.
        span.set_attribute("http.request.method", method)
        span.set_attribute("url.path", httpx.URL(request.url).path)

    async def response(self, span: Span, request: RequestInfo, response: ResponseInfo) -> None:
        g = self.graph
        method = request.method.decode()
        status = response.status_code
        headers = httpx.Headers(response.headers)
        span.set_attribute("http.response.status_code", status)
        if g.metrics:
            g.metrics.graph_requests.add(1, {"method": method, "status": status})
        ru = headers.get(RESOURCE_UNIT_HEADER)
        if ru and ru.isdigit():
            span.set_attribute("graph.resource_units", int(ru))
            if g.metrics:
                g.metrics.resource_units.add(int(ru), {"method": method})
        usage = headers.get(USAGE_HEADER)
        if usage:  # over 0.8 of a limit: the pacer slows down (shared/graph.py GraphPacer)
            span.set_attribute("graph.throttle_limit_percentage", usage)
        if status == 429:
            g.throttled += 1
            span.set_attribute("graph.throttled", True)
            if g.metrics:
                g.metrics.throttled.add(1, {"method": method})
            log.warning("Graph throttled %s %s", method, httpx.URL(request.url).path)


class InstrumentedGraphClient(GraphClient):
    """GraphClient with spans per group and per Graph HTTP attempt, request metrics, and progress
    events. Behaviour (results, errors, retries) is GraphClient's own."""

    def __init__(
        self,
        credential: TokenCredential,
        base_url: str,
        *,
        tracer: Tracer,
        tracer_provider: TracerProvider | None = None,
        run_metrics: RunMetrics | None = None,
        progress: ProgressCallback | None = None,
        tenant_id: str | None = None,
    ) -> None:
        self.tracer = tracer
        self.metrics = run_metrics
        self.progress = progress
        self.throttled = 0
        # Under the SDK's middleware, so every attempt (retries too) gets a span and is counted.
        hooks = _GraphHooks(self)
        transport = AsyncOpenTelemetryTransport(
            httpx.AsyncHTTPTransport(),
            tracer_provider=tracer_provider,
            request_hook=hooks.request,
            response_hook=hooks.response,
        )
        super().__init__(credential, base_url, transport=transport, tenant_id=tenant_id)
        self._members_read = 0
        self._writes_done = 0
        self._writes_total = 0
        self._group_of_user: dict[str, str] = {}
        self._group_spans: dict[str, tuple[Span, int]] = {}  # group id -> (span, last end ns)
        self._apply_parent: otel_context.Context | None = None

    def _emit(self, phase: str, done: int, total: int | None) -> None:
        if self.progress:
            self.progress(ProgressEvent(phase, done, total))

    async def list_members(self, group_id: str) -> Membership:
        try:
            with self.tracer.start_as_current_span(
                SPAN_GROUP_READ, attributes={"licensing.group_id": group_id}
            ) as span:
                membership = await super().list_members(group_id)
                span.set_attribute("licensing.member_count", len(membership.users))
                return membership
        finally:
            self._members_read += 1
            self._emit("read", self._members_read, None)

    # -- apply --------------------------------------------------------------------------------

    def start_apply(self, plan: Plan) -> None:
        """Called before the writes: sets the totals and which group each reprocessed user is in."""
        self._apply_parent = otel_context.get_current()
        self._writes_total = 0
        for g in plan.changes:
            self._writes_total += int(bool(g.add_licenses or g.remove_licenses))
            self._writes_total += len(g.reprocess_user_ids)
            for uid in g.reprocess_user_ids:
                self._group_of_user[uid] = g.group_id
        self._emit("applied", 0, self._writes_total)

    def end_apply(self, outcomes: Mapping[str, Any]) -> None:
        for gid, (span, end_ns) in self._group_spans.items():
            outcome = outcomes.get(gid)
            if outcome is not None:
                span.set_attribute("licensing.outcome", outcome.status)
                if outcome.status == "failed":
                    span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.detail))
            span.end(end_time=end_ns)
        self._group_spans.clear()

    def _group_span(self, group_id: str) -> Span:
        found = self._group_spans.get(group_id)
        if found:
            return found[0]
        span = self.tracer.start_span(
            SPAN_GROUP_APPLY,
            context=self._apply_parent,
            attributes={"licensing.group_id": group_id},
        )
        self._group_spans[group_id] = (span, time.time_ns())
        return span

    async def _write(self, group_id: str | None, call: Callable[[], Awaitable[None]]) -> None:
        if group_id is None:
            await call()
            return
        span = self._group_span(group_id)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await call()
        finally:
            otel_context.detach(token)
            self._group_spans[group_id] = (span, time.time_ns())
            self._writes_done += 1
            self._emit("applied", self._writes_done, self._writes_total)

    async def assign_group_licenses(
        self, group_id: str, add: list[tuple[str, list[str]]], remove: list[str]
    ) -> None:
        await self._write(
            group_id, lambda: GraphClient.assign_group_licenses(self, group_id, add, remove)
        )

    async def reprocess_user(self, user_id: str) -> None:
        await self._write(
            self._group_of_user.get(user_id),
            lambda: GraphClient.reprocess_user(self, user_id),
        )


def decision_events(span: Span, plan: Plan) -> None:
    for g in plan.groups:
        span.add_event(
            EVENT_DECISION,
            {
                "licensing.group_id": g.group_id,
                "licensing.profile": g.profile,
                "licensing.decision": g.decision.value,
            },
        )


# -- exporters (the host) -----------------------------------------------------------------------


def configure(env: Mapping[str, str] | None = None) -> str:
    """Install global providers once per process, by environment:

    - APPLICATIONINSIGHTS_CONNECTION_STRING set: Azure Monitor (traces, metrics, logs), the
      Functions host's `telemetryMode: OpenTelemetry` correlates them with invocations;
    - else OTEL_EXPORTER_OTLP_ENDPOINT set: OTLP over HTTP;
    - else LICENSING_OTEL_CONSOLE=1: the console;
    - else nothing (API no-ops). Returns which one was chosen.
    """
    env = os.environ if env is None else env
    # Local mode talks to loopback only; the settings refuse this too, but only when first read,
    # and this runs at import.
    local = env.get("LICENSING_GRAPH_CREDENTIAL") == "local-simulator"
    if local and (
        off := [
            p for p in local_endpoint_problems(env) if "OTEL_" in p or "APPLICATIONINSIGHTS" in p
        ]
    ):
        log.error("no telemetry is exported: %s", "; ".join(off))
        return "none"
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError:  # keep the app up; say why nothing reaches Application Insights
            log.error(
                "APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry "
                "is not installed: no telemetry is exported"
            )
            return "none"
        kwargs: dict[str, Any] = {}
        if "Authorization=AAD" in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""):
            # Application Insights with local auth off accepts only Entra-authenticated telemetry;
            # the exporter needs the app's (user-assigned) managed identity for that.
            from azure.identity import ManagedIdentityCredential

            kwargs["credential"] = ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID"))
        configure_azure_monitor(logger_name="licensing", **kwargs)
        return "azure-monitor"
    otlp = bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    console = env.get("LICENSING_OTEL_CONSOLE") == "1"
    if not otlp and not console:
        return "none"
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogExporter
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "group-licensing")})
    if otlp:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        spans: Any = OTLPSpanExporter()
        metric_exporter: Any = OTLPMetricExporter()
        logs: Any = OTLPLogExporter()
    else:
        spans, metric_exporter, logs = (
            ConsoleSpanExporter(),
            ConsoleMetricExporter(),
            ConsoleLogExporter(),
        )
    tracer_provider = SdkTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(
        SdkMeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]
        )
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    set_logger_provider(logger_provider)
    # Log records carry the active span's trace and span ids: logs correlate with the run's trace.
    logging.getLogger("licensing").addHandler(LoggingHandler(logger_provider=logger_provider))
    return "otlp" if otlp else "console"
