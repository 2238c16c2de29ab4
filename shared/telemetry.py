"""OpenTelemetry names in one place. The engine only uses the API; the host (function_app) or a test
installs providers. Without one, spans are no-ops."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Tracer, TracerProvider

TRACER_NAME = "group_licensing"
SPAN_RUN = "licensing.run"
SPAN_COLLECT = "licensing.collect"
SPAN_PLAN = "licensing.plan"
SPAN_APPLY = "licensing.apply"
SPAN_RECORD = "licensing.record"
SPAN_ALERT = "licensing.alert"


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)
