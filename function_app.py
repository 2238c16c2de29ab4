"""Azure Functions triggers (Python v2 model). Triggers only: parse input, call the engine.

- timer `nightly_enforcement`: schedule LICENSING_TIMER_SCHEDULE, mode LICENSING_TIMER_MODE
- HTTP `POST /api/runs`: start a plan or apply run, answer with the run's summary
- HTTP `GET /api/runs/{runId}`: a recorded run
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any, cast

import azure.functions as func

from shared.errors import ConfigurationError
from shared.run import execute_run, read_run
from shared.settings import Mode, Settings
from shared.store import TableStore

app = func.FunctionApp()
log = logging.getLogger("licensing")

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
MAX_GROUP_IDS = 500


@functools.cache
def settings() -> Settings:
    """Parsed once per worker; a bad setting raises ConfigurationError naming it."""
    return Settings.from_env()


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=2), status_code=status, mimetype="application/json"
    )


def _error(status: int, code: str, message: str) -> func.HttpResponse:
    return _json({"error": {"code": code, "message": message}}, status)


@app.timer_trigger(
    schedule="%LICENSING_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def nightly_enforcement(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("the nightly run is past due; running now")
    s = settings()
    report = await execute_run(s, s.timer_mode, "timer")
    log.info(
        "run %s (%s) ended %s: %s",
        report.run_id,
        report.mode,
        report.status,
        report.summary()["counts"],
    )
    if report.status == "failed":
        # Surface the failure to the Functions host (retries, failure metrics); the run is recorded.
        raise RuntimeError(f"run {report.run_id} failed: {report.error}")


def parse_run_request(req: func.HttpRequest) -> tuple[Mode, list[str] | None]:
    """Validate the POST /api/runs body; raise ValueError with what is wrong."""
    raw = req.get_body()
    if not raw.strip():
        raise ValueError('send a JSON body such as {"mode": "plan"}')
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(body) - {"mode", "groupIds"})
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)} (allowed: mode, groupIds)")
    mode = body.get("mode")
    if mode not in ("plan", "apply"):
        raise ValueError(f"mode must be 'plan' or 'apply', got {mode!r}")
    ids = body.get("groupIds")
    if ids is None:
        return cast(Mode, mode), None
    if not isinstance(ids, list) or not ids or len(ids) > MAX_GROUP_IDS:
        raise ValueError(f"groupIds must be a non-empty list of at most {MAX_GROUP_IDS} group ids")
    for i, gid in enumerate(ids):
        if not isinstance(gid, str) or not GUID_RE.match(gid):
            raise ValueError(f"groupIds[{i}] is not a group id (GUID): {gid!r}")
    return cast(Mode, mode), ids


@app.route(route="runs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def start_run(req: func.HttpRequest) -> func.HttpResponse:
    try:
        mode, group_ids = parse_run_request(req)
    except ValueError as exc:
        return _error(400, "BadRequest", str(exc))
    try:
        s = settings()
    except ConfigurationError as exc:
        return _error(503, "Misconfigured", str(exc))
    report = await execute_run(s, mode, "http", group_ids=group_ids)
    status = 200 if report.status in ("succeeded", "partial", "refused") else 500
    return _json(report.summary(), status)


@app.route(route="runs/{runId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    run_id = req.route_params.get("runId", "")
    if not re.match(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$", run_id):
        return _error(
            400, "BadRequest", f"{run_id!r} is not a run id (like 20261127T020000Z-a1b2c3)"
        )
    try:
        s = settings()
    except ConfigurationError as exc:
        return _error(503, "Misconfigured", str(exc))
    found = read_run(TableStore.from_settings(s), run_id)
    if found is None:
        return _error(404, "NotFound", f"no run {run_id} is recorded")
    return _json(found)
