"""Azure Functions app (Python v2 model): registers the blueprints, nothing else.

- triggers/http.py: the HTTP API (adapters; the logic is shared/api.py, described by
  docs/openapi.yaml): `POST /api/runs`, `GET /api/runs`, `GET /api/runs/{runId}`,
  `GET /api/status`, `GET /api/dashboard`, `GET /api/waiting`, `GET /api/tenants` (the routes but
  /api/tenants take `?tenant=<id>` on a deployment with tenant records)
- triggers/background.py: timer `nightly_enforcement` (LICENSING_TIMER_SCHEDULE, mode
  LICENSING_TIMER_MODE) and queue `run_worker` (runs queued over HTTP, queue LICENSING_RUN_QUEUE in
  the host's storage)

The functions are re-exported so tools and tests can call them by name (function_app.start_run).
"""

from __future__ import annotations

import azure.functions as func

from shared.telemetry import configure
from triggers import background, http, settings
from triggers.background import nightly_enforcement, run_worker
from triggers.http import (
    dashboard,
    get_run,
    get_status,
    list_runs,
    list_tenants,
    list_waiting,
    start_run,
)

configure()  # exporters by environment (Azure Monitor, OTLP, console); nothing when unset
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http.bp)
app.register_functions(background.bp)

__all__ = [
    "app",
    "dashboard",
    "get_run",
    "get_status",
    "list_runs",
    "list_tenants",
    "list_waiting",
    "nightly_enforcement",
    "run_worker",
    "settings",
    "start_run",
]
