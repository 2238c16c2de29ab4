"""Azure Functions triggers (Python v2 model). Triggers only: parse input, call the engine
(shared/api.py holds the HTTP logic; docs/openapi.yaml describes the API).

- timer `nightly_enforcement`: schedule LICENSING_TIMER_SCHEDULE, mode LICENSING_TIMER_MODE
- HTTP `POST /api/runs`: queue a plan or apply run (202 + status URL), or run it inline (`wait`)
- queue `run_worker`: runs a queued run (queue LICENSING_RUN_QUEUE in the host's storage)
- HTTP `GET /api/runs`, `GET /api/runs/{runId}`: recorded runs (paged), one run
- HTTP `GET /api/status`: seats per SKU now, latest run, open alerts
- HTTP `GET /api/dashboard`: the same as one HTML page with seat history and forecasts
- HTTP `GET /api/waiting`: who waits for a seat (the latest run's waiting list, paged)

Who may call which route (App Service Authentication, app roles): shared/api.py `authorize`,
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared import api
from shared.dashboard import render_dashboard
from shared.errors import ConfigurationError
from shared.queue import RunQueue
from shared.run import execute_run
from shared.settings import Settings
from shared.store import TableStore
from shared.telemetry import configure

configure()  # exporters by environment (Azure Monitor, OTLP, console); nothing when unset
app = func.FunctionApp()
log = logging.getLogger("licensing")


@functools.cache
def settings() -> Settings:
    """Parsed once per worker; a bad setting raises ConfigurationError naming it."""
    return Settings.from_env()


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=2), status_code=status, mimetype="application/json", headers=headers
    )


def _error(status: int, code: str, message: str) -> func.HttpResponse:
    return _json({"error": {"code": code, "message": message}}, status)


def _base_url(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/api"


def _authorize(req: func.HttpRequest, access: api.Access) -> api.Principal | None:
    return api.authorize(settings(), req.headers.get(api.PRINCIPAL_HEADER), access)


Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def _guarded(fn: Handler) -> Handler:
    """ApiError -> its JSON error; a bad app setting -> 503 naming it; anything else -> a logged
    JSON 500 (the host's own answer would be an empty 500 body)."""

    @functools.wraps(fn)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await fn(req)
        except api.ApiError as exc:
            return _json(exc.body(), exc.status)
        except ConfigurationError as exc:
            return _error(503, "Misconfigured", str(exc))
        except Exception:
            # The trace goes to the log (Application Insights), not to the caller.
            log.exception("%s %s failed unexpectedly", req.method, urlsplit(req.url).path)
            return _error(
                500, "InternalError", "the request failed unexpectedly; the error is logged"
            )

    return wrapper


@app.timer_trigger(
    schedule="%LICENSING_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def nightly_enforcement(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("the nightly run is past due; running now")
    s = settings()
    report = await execute_run(s, s.timer_mode, "timer")
    log.info("run %s (%s) ended %s", report.run_id, report.mode, report.status)
    if report.status in ("failed", "refused"):
        # Surface it to the Functions host (failure metrics, alert rules on failed executions):
        # a refused nightly run enforced nothing. The run is recorded and the run-problem mailed.
        reason = report.error if report.status == "failed" else report.refused_reason
        raise RuntimeError(f"run {report.run_id} {report.status}: {reason}")


@app.route(route="runs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@_guarded
async def start_run(req: func.HttpRequest) -> func.HttpResponse:
    s = settings()
    principal = _authorize(req, "plan")  # signed in (when Authentication is on) before the body
    request = api.parse_run_request(req.get_body())
    if request.mode == "apply":
        principal = _authorize(req, "apply")
    store = TableStore.from_settings(s)
    if request.wait:  # inline: for small runs (a few groups); HTTP requests time out at 230 s
        report = await execute_run(
            s,
            request.mode,
            "http",
            group_ids=request.group_ids,
            store=store,
            requested_by=principal.name if principal else "",
        )
        summary = report.summary()
        api.check_some_requested_group_tagged(request, summary)
        ok = report.status in ("succeeded", "partial", "refused")
        return _json(summary, 200 if ok else 500)
    queue = RunQueue.from_env(s.run_queue)
    # Storage calls block: off the event loop, so other invocations of this worker keep running.
    requested_by = principal.name if principal else ""
    run_id = await asyncio.to_thread(api.queue_run, store, queue, request, requested_by)
    url = f"{_base_url(req)}/runs/{run_id}"
    return _json(
        {"runId": run_id, "status": "queued", "mode": request.mode, "statusUrl": url},
        202,
        {"Location": url, "Retry-After": "10"},
    )


@app.queue_trigger(
    arg_name="msg", queue_name="%LICENSING_RUN_QUEUE%", connection="AzureWebJobsStorage"
)
async def run_worker(msg: func.QueueMessage) -> None:
    # Raising lets the host retry; after maxDequeueCount (host.json) it moves the message to
    # "<queue>-poison". dequeue_count tells the worker which delivery this is.
    report = await api.work_queued_run(
        settings(), msg.get_body().decode("utf-8", "replace"), attempt=msg.dequeue_count or 1
    )
    if report is not None:
        log.info("queued run %s ended %s", report.run_id, report.status)


@app.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@_guarded
async def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    _authorize(req, "read")
    limit, after = api.parse_page(dict(req.params))
    store = TableStore.from_settings(settings())
    return _json(await asyncio.to_thread(api.list_runs_page, store, limit, after, _base_url(req)))


@app.route(route="runs/{runId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@_guarded
async def get_run(req: func.HttpRequest) -> func.HttpResponse:
    _authorize(req, "read")
    run_id = api.check_run_id(req.route_params.get("runId", ""))
    store = TableStore.from_settings(settings())
    return _json(await asyncio.to_thread(api.read_run_or_404, store, run_id))


@app.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@_guarded
async def get_status(req: func.HttpRequest) -> func.HttpResponse:
    _authorize(req, "read")
    s = settings()
    return _json(await api.build_status(s, TableStore.from_settings(s)))


@app.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@_guarded
async def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    _authorize(req, "read")
    s = settings()
    status = await api.build_status(s, TableStore.from_settings(s), with_details=True)
    return func.HttpResponse(
        render_dashboard(status),
        mimetype="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


@app.route(route="waiting", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@_guarded
async def list_waiting(req: func.HttpRequest) -> func.HttpResponse:
    _authorize(req, "read")
    store = TableStore.from_settings(settings())
    status, body, headers = await asyncio.to_thread(
        api.waiting_page, store, dict(req.params), _base_url(req)
    )
    return _json(body, status, headers)
