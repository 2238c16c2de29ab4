"""The HTTP API's logic, without azure.functions: input validation, caller roles, queued runs, run
listings, seat status.

Each HTTP endpoint is one `@endpoint` coroutine here taking a plain `Request` and answering a plain
`Response` (status, body, headers); triggers/http.py turns the host's HttpRequest into a `Request`
and the `Response` back into an HttpResponse, and does nothing else. Adding an endpoint:
docs/architecture.md "HTTP endpoints".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import urlencode, urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from shared.common import GUID_RE
from shared.credentials import credential_for
from shared.dashboard import render_dashboard, render_overview
from shared.errors import ConfigurationError, GraphReadError
from shared.forecast import MIN_POINTS, MIN_SPAN, SupplyChange, forecast, runs_out
from shared.graph import GraphClient, required_roles
from shared.names import sku_product_name
from shared.queue import (
    MAX_DEQUEUE_COUNT,
    RUN_ID_RE,
    RunMessage,
    RunQueue,
    Trigger,
    poison_queue_name,
)
from shared.run import RunReport, execute_run, read_run
from shared.settings import Mode, Settings
from shared.store import (
    TableStore,
    iso,
    new_run_id,
    parse_time,
    run_from_entity,
    run_to_entity,
)
from shared.subscriptions import of_summary, supply_changes
from shared.tenants import Tenant, TenantError, settings_for, tenants_source
from shared.waiting import from_row, waiting_item_position

log = logging.getLogger("licensing")

OPERATOR_ROLE = "Licensing.Operator"
READER_ROLE = "Licensing.Reader"
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
ROLE_CLAIM_TYPES = {"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
NAME_CLAIM_TYPES = ("name", "preferred_username", "upn", "oid")
# The caller's object id in Microsoft Entra ID: what a tenant record's readers/operators list.
OBJECT_ID_CLAIM_TYPES = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
TENANT_PARAM = "tenant"
MAX_GROUP_IDS = 500
DEFAULT_PAGE, MAX_PAGE = 20, 100
FINISHED = ("succeeded", "partial", "failed", "refused")
HISTORY_RUNS = 90  # snapshots per SKU read for the history chart and forecast


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# -- requests and responses, without azure.functions ----------------------------------------------


@dataclass(frozen=True)
class Request:
    """What an endpoint reads of an HTTP request. Header names are matched case-insensitively."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    route_params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def base_url(self) -> str:
        """The API's root as the caller reached it (status URLs, page links)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/api"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    mimetype: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    charset: str = "utf-8"

    def json(self) -> Any:
        return json.loads(self.body)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(status, json.dumps(body, indent=2).encode(), headers=dict(headers or {}))


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


Endpoint = Callable[[Request, Callable[[], Settings]], Awaitable[Response]]


def endpoint(fn: Callable[[Request, Settings], Awaitable[Response]]) -> Endpoint:
    """An HTTP endpoint: called with the request and where the settings come from (parsed once
    per worker by the caller). ApiError -> its JSON error; a bad app setting -> 503 naming it;
    storage out of reach -> 503 StorageUnavailable; anything else -> a logged JSON 500 (the
    host's own answer would be an empty 500 body)."""

    @functools.wraps(fn)
    async def wrapper(request: Request, settings: Callable[[], Settings]) -> Response:
        try:
            return await fn(request, settings())
        except ApiError as exc:
            return json_response(exc.body(), exc.status)
        except ConfigurationError as exc:
            return error_response(503, "Misconfigured", str(exc))
        except (ServiceRequestError, ServiceResponseError) as exc:
            # The storage SDKs' own retries are spent: an outage, not a fault in this request.
            log.error("%s %s: storage unreachable: %s", request.method, request.url, exc)
            return json_response(
                {
                    "error": {
                        "code": "StorageUnavailable",
                        "message": "Table or Queue Storage could not be reached (retried); "
                        "nothing was changed: try again later",
                    }
                },
                503,
                {"Retry-After": "30"},
            )
        except Exception:
            # The trace goes to the log (Application Insights), not to the caller.
            log.exception("%s %s failed unexpectedly", request.method, urlsplit(request.url).path)
            return error_response(
                500, "InternalError", "the request failed unexpectedly; the error is logged"
            )

    return wrapper


# -- caller -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    object_id: str | None = None  # None: the token carried no object id claim


def _load_json(raw: bytes | str) -> Any:
    """json.loads with its RecursionError on deep nesting turned into a ValueError naming it."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def parse_principal(header: str | None) -> Principal | None:
    """The caller App Service Authentication vouches for; None when there is no header."""
    if header is None or not header.strip():
        return None
    try:
        data = _load_json(base64.b64decode(header.strip(), validate=True))
        if not isinstance(data, dict):
            raise TypeError("it is not a JSON object")
        claims = data["claims"]
        if not isinstance(claims, list):
            raise TypeError("claims is not a list")
        pairs = [(str(c["typ"]), str(c["val"])) for c in claims]
    except (ValueError, binascii.Error, KeyError, TypeError) as exc:
        raise bad_request(
            f"{PRINCIPAL_HEADER} is not base64 JSON with a claims list ({exc})"
        ) from None
    role_types = set(ROLE_CLAIM_TYPES)
    if isinstance(data.get("role_typ"), str):
        role_types.add(data["role_typ"])
    roles = frozenset(v for t, v in pairs if t in role_types)
    names = dict(pairs)
    name_types = [data.get("name_typ"), *NAME_CLAIM_TYPES]
    name = next((names[t] for t in name_types if isinstance(t, str) and t in names), "unknown")
    object_id = next((names[t] for t in OBJECT_ID_CLAIM_TYPES if t in names), None)
    return Principal(name, roles, object_id.lower() if object_id else None)


Access = Literal["read", "plan", "apply"]
# Who may do what with App Service Authentication on (docs/operations.md, infra/app-roles.json).
ROLES_FOR: dict[Access, frozenset[str]] = {
    "read": frozenset({READER_ROLE, OPERATOR_ROLE}),  # runs, status and dashboard name users
    "plan": frozenset({READER_ROLE, OPERATOR_ROLE}),
    "apply": frozenset({OPERATOR_ROLE}),
}


def authorize_request(settings: Settings, request: Request, access: Access) -> Principal | None:
    return authorize(settings, request.header(PRINCIPAL_HEADER), access)


def authorize(settings: Settings, header: str | None, access: Access) -> Principal | None:
    """The caller, or ApiError 401/403.

    Authentication on (the platform's WEBSITE_AUTH_ENABLED): the platform sets X-MS-CLIENT-PRINCIPAL
    and strips any a client sends, so it names the caller; every route needs a signed-in caller
    with a role of ROLES_FOR. Authentication off: the header is ignored (anyone could send it), the
    function key is the only check, and apply is refused unless LICENSING_HTTP_APPLY_WITHOUT_AUTH.
    """
    if not settings.auth_enabled:
        if access == "apply" and not settings.http_apply_without_auth:
            raise ApiError(
                403,
                "Forbidden",
                "apply runs over HTTP need App Service Authentication (a signed-in caller with "
                f"the app role {OPERATOR_ROLE!r}); turn Authentication on, or set the app setting "
                "LICENSING_HTTP_APPLY_WITHOUT_AUTH=true to let the function key alone start them",
            )
        return None
    principal = parse_principal(header)
    if principal is None:
        raise ApiError(
            401,
            "Unauthorized",
            "App Service Authentication is on but this request has no signed-in caller; sign in "
            "(Microsoft Entra ID) and send the token",
        )
    needed = ROLES_FOR[access]
    if not needed & principal.roles:
        raise ApiError(
            403,
            "Forbidden",
            f"this needs the app role {' or '.join(repr(r) for r in sorted(needed))}; "
            f"{principal.name} has {', '.join(sorted(principal.roles)) or 'no roles'}",
        )
    return principal


# -- tenants: which one a request is about, and whether the caller may see or run it -------------


def _listed(principal: Principal, entries: tuple[str, ...]) -> bool:
    """The caller is in a tenant record's list, by object id or by name (case-insensitive)."""
    mine = {principal.name.lower()} | ({principal.object_id} if principal.object_id else set())
    return any(e.strip().lower() in mine for e in entries)


def may_read(tenant: Tenant | None, principal: Principal | None) -> bool:
    """Reading a tenant's rows, and plan runs (they change nothing; the Reader role may start
    them): the record's `readers` or `operators` (who runs a tenant reads it); `readers` empty:
    every caller with a role. No caller (Authentication off, the function key only): the key is
    the deployment's, it sees every tenant."""
    if tenant is None or principal is None or not tenant.readers:
        return True
    return _listed(principal, tenant.readers) or _listed(principal, tenant.operators)


def may_apply(tenant: Tenant | None, principal: Principal | None) -> bool:
    """Apply runs on a tenant: its `operators` (empty: every caller with the Operator role)."""
    if tenant is None or principal is None or not tenant.operators:
        return True
    return _listed(principal, tenant.operators)


def _tenant_forbidden(tenant: Tenant, principal: Principal, what: str, key: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f"{principal.name} may not {what} tenant {tenant.display_name} ({tenant.tenant_id}): "
        f"the tenant record's `{key}` does not list them (by object id or name)",
    )


def tenant_records(settings: Settings) -> list[Tenant]:
    """Every tenant record; a malformed tenants file or row is a 503 naming it."""
    try:
        return tenants_source(settings).list()
    except TenantError as exc:
        raise ApiError(503, "Misconfigured", f"the tenant records cannot be read: {exc}") from None


def resolve_tenant(
    settings: Settings, params: Mapping[str, str], access: Access, principal: Principal | None
) -> Tenant | None:
    """The tenant a request names with `?tenant=` (None: the implicit tenant of a deployment
    without tenant records), or ApiError: 400 for a bad or missing id (a deployment with tenant
    records has no implicit tenant), 404 for one it does not enforce, 403 for one the caller's
    role is not given for."""
    raw = params.get(TENANT_PARAM)
    if raw is None:
        records = tenant_records(settings)
        if not records:
            return None
        raise bad_request(
            f"this deployment enforces {len(records)} tenant(s): name one with the query parameter "
            f"`{TENANT_PARAM}` (its tenant id); GET /api/tenants lists them"
        )
    if not GUID_RE.match(raw):
        raise bad_request(f"`{TENANT_PARAM}` must be a tenant id (GUID), got {raw!r}")
    try:
        tenant = tenants_source(settings).get(raw)
    except TenantError as exc:
        raise ApiError(503, "Misconfigured", f"the tenant records cannot be read: {exc}") from None
    if tenant is None:
        raise ApiError(404, "NotFound", f"tenant {raw.lower()} is not one this deployment enforces")
    if principal is not None:
        if not may_read(tenant, principal):
            raise _tenant_forbidden(tenant, principal, "see", "readers")
        if access == "apply" and not may_apply(tenant, principal):
            raise _tenant_forbidden(tenant, principal, "start apply runs on", "operators")
    return tenant


def tenant_query(tenant: Tenant | None) -> dict[str, str]:
    """The query that keeps a drill-down on its tenant (empty for the implicit one)."""
    return {TENANT_PARAM: tenant.tenant_id} if tenant else {}


def with_query(url: str, query: Mapping[str, Any]) -> str:
    return f"{url}?{urlencode(query)}" if query else url


@dataclass(frozen=True)
class Scope:
    """What one request works on: the tenant, its settings and its rows."""

    tenant: Tenant | None
    settings: Settings
    store: TableStore

    @property
    def query(self) -> dict[str, str]:
        return tenant_query(self.tenant)


def scope_of(
    settings: Settings, params: Mapping[str, str], access: Access, principal: Principal | None
) -> Scope:
    tenant = resolve_tenant(settings, params, access, principal)
    tenant_settings = settings_for(settings, tenant)
    return Scope(tenant, tenant_settings, TableStore.from_settings(tenant_settings))


# -- input --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    mode: Mode
    group_ids: list[str] | None
    wait: bool


def parse_run_request(raw: bytes) -> RunRequest:
    """Validate a POST /api/runs body; ApiError 400 saying what is wrong."""
    if not raw.strip():
        raise bad_request('send a JSON body such as {"mode": "plan"}')
    try:
        body = _load_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    unknown = sorted(set(body) - {"mode", "groupIds", "wait"})
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)} (allowed: mode, groupIds, wait)")
    mode = body.get("mode")
    if mode not in ("plan", "apply"):
        raise bad_request(f"mode must be 'plan' or 'apply', got {mode!r}")
    wait = body.get("wait", False)
    if not isinstance(wait, bool):
        raise bad_request(f"wait must be true or false, got {wait!r}")
    if "groupIds" not in body:
        return RunRequest(cast(Mode, mode), None, wait)
    ids = body["groupIds"]
    # null is refused, not read as "every group": omitting the field is the only way to ask for all.
    if not isinstance(ids, list) or not ids or len(ids) > MAX_GROUP_IDS:
        raise bad_request(
            f"groupIds must be a non-empty list of at most {MAX_GROUP_IDS} group ids, got "
            f"{type(ids).__name__ if ids is not None else 'null'}; omit it for every tagged group"
        )
    for i, gid in enumerate(ids):
        if not isinstance(gid, str) or not GUID_RE.match(gid):
            raise bad_request(f"groupIds[{i}] is not a group id (GUID): {gid!r}")
    return RunRequest(cast(Mode, mode), ids, wait)


def check_some_requested_group_tagged(request: RunRequest, summary: Mapping[str, Any]) -> None:
    """An inline run asked only for groups the policy does not tag did nothing: a 404 naming them
    (the run is recorded; its requestedNotTagged lists them). Some tagged: the summary names the
    others in requestedNotTagged."""
    missing = summary.get("requestedNotTagged") or []
    if (
        request.group_ids
        and missing
        and len(missing) >= len({g.lower() for g in request.group_ids})
    ):
        raise ApiError(
            404,
            "NotFound",
            f"no requested group is tagged by the policy; not tagged (or not found): "
            f"{', '.join(missing)}; run {summary.get('runId')} read them and changed nothing",
        )


def check_run_id(run_id: str) -> str:
    """A run id is a real UTC time and six hex digits (RUN_ID_RE admits only real dates)."""
    if not RUN_ID_RE.match(run_id):
        raise bad_request(f"{run_id!r} is not a run id (like 20261127T020000Z-a1b2c3)")
    return run_id


def parse_page(params: Mapping[str, str]) -> tuple[int, str | None]:
    unknown = sorted(set(params) - {"limit", "after", TENANT_PARAM, "code"})
    if unknown:
        raise bad_request(
            f"unknown query parameter(s): {', '.join(unknown)} (allowed: limit, after, tenant)"
        )
    raw = params.get("limit")
    limit = DEFAULT_PAGE
    if raw is not None:
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_PAGE:
            raise bad_request(f"limit must be an integer 1..{MAX_PAGE}, got {raw!r}")
        limit = int(raw)
    after = params.get("after")
    if after is not None:
        check_run_id(after)
    return limit, after


# -- runs ---------------------------------------------------------------------------------------


_ITEM = (
    "runId",
    "mode",
    "trigger",
    "requestedBy",
    "status",
    "startedAt",
    "finishedAt",
    "counts",
    "groupsChanged",
    "usersAffected",
    "error",
    "refusedReason",
)


def run_item(
    row: Mapping[str, Any], base_url: str, query: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A run row as a list item; `query` (the tenant) is kept in its url."""
    run = run_from_entity(row)
    url = with_query(f"{base_url}/runs/{run['runId']}", query or {})
    # Where its queue message went when every delivery failed (docs/runbook.md); else null.
    poison = row.get("PoisonQueue") or None
    return {**{key: run[key] for key in _ITEM}, "poisonQueue": poison, "url": url}


def list_runs_page(
    store: TableStore,
    limit: int,
    after: str | None,
    base_url: str,
    query: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One page of runs, newest first; nextLink fetches the next page (null on the last).
    `query` (the tenant) is kept in every link."""
    store.ensure_tables()
    rows, more = store.list_runs_page(limit, after)
    items = [run_item(r, base_url, query) for r in rows]
    next_link = None
    if more and items:
        next_link = f"{base_url}/runs?" + urlencode(
            {**(query or {}), "limit": limit, "after": items[-1]["runId"]}
        )
    return {"value": items, "nextLink": next_link}


def read_run_or_404(store: TableStore, run_id: str) -> dict[str, Any]:
    check_run_id(run_id)
    found = read_run(store, run_id)
    if found is None:
        raise ApiError(404, "NotFound", f"no run {run_id} is recorded")
    return found


def queue_run(
    store: TableStore,
    queue: RunQueue,
    request: RunRequest,
    requested_by: str = "",
    now: datetime | None = None,
    *,
    trigger: Trigger = "http",
    ensure_tables: bool = True,
) -> str:
    """Record the run as queued, then enqueue it: the id is known before the worker starts.

    `store` is the run's tenant's (TableStore.for_tenant); the message names that tenant.
    ensure_tables False: the caller made the tables already (the nightly fan-out, once a tick:
    every tenant's rows are in the same tables)."""
    now = now or datetime.now(UTC)
    run_id = new_run_id(now)
    run = {
        "runId": run_id,
        "mode": request.mode,
        "trigger": trigger,
        "status": "queued",
        "startedAt": now.isoformat(),
        "finishedAt": None,
        "requestedBy": requested_by,
    }
    if ensure_tables:
        store.ensure_tables()
    store.put_run(run_to_entity(run))
    message = RunMessage(
        run_id,
        request.mode,
        tuple(request.group_ids) if request.group_ids else None,
        requested_by,
        store.tenant_id,
        trigger,
    )
    try:
        queue.send(message)
    except Exception as exc:
        run.update(status="failed", error=f"could not be queued: {type(exc).__name__}: {exc}")
        store.put_run(run_to_entity(run))
        raise ApiError(503, "QueueUnavailable", f"the run could not be queued: {exc}") from exc
    log.info(
        "run %s (%s%s) queued by %s",
        run_id,
        request.mode,
        f", tenant {store.tenant_id}" if store.tenant_id else "",
        requested_by or ("the nightly timer" if trigger == "timer" else "a function key"),
    )
    return run_id


async def work_queued_run(
    settings: Settings, text: str, *, attempt: int = 1, **kwargs: Any
) -> RunReport | None:
    """The queue worker: run a queued run once. None: nothing to do (bad or repeated message).

    attempt: the message's delivery count (the host's dequeueCount). A message no retry can fix
    goes to the poison queue at once; on the last delivery a failure is noted on the run row
    (the host then moves the message to the poison queue). A redelivered message whose run was
    left `running` by a worker that died closes that run as failed."""
    poison = poison_queue_name(settings.run_queue)
    try:
        message = RunMessage.from_json(text)
    except ValueError as exc:  # retrying cannot fix it: straight to the poison queue
        log.error("a malformed run message goes to %s: %s", poison, exc)
        await asyncio.to_thread(RunQueue.from_env(poison).send_text, text)
        return None
    store: TableStore = kwargs.pop("store", None) or TableStore.from_settings(settings)
    store = store.for_tenant(message.tenant_id)
    claimed = await asyncio.to_thread(store.claim_queued_run, message.run_id)
    if not claimed:
        await asyncio.to_thread(_close_if_abandoned, store, message.run_id, attempt)
        return None
    try:
        if message.tenant_id:
            # Read when the run starts: a tenant disabled or removed since it was queued is not
            # enforced, and its run says why.
            tenant = await asyncio.to_thread(tenants_source(settings).get, message.tenant_id)
            if tenant is None or not tenant.enabled:
                why = "was removed" if tenant is None else "is disabled"
                await asyncio.to_thread(
                    store.close_run,
                    message.run_id,
                    ("running",),
                    f"tenant {message.tenant_id} {why} since the run was queued: nothing was read "
                    "or changed",
                    "refused",
                )
                log.warning("run %s: tenant %s %s", message.run_id, message.tenant_id, why)
                return None
            settings = settings_for(settings, tenant)
        return await execute_run(
            settings,
            message.mode,
            message.trigger,
            group_ids=list(message.group_ids) if message.group_ids else None,
            store=store,
            run_id=message.run_id,
            requested_by=message.requested_by,
            **kwargs,
        )
    except Exception as exc:
        if attempt >= MAX_DEQUEUE_COUNT:
            note = (
                f"delivery {attempt} of {MAX_DEQUEUE_COUNT} failed ({type(exc).__name__}: {exc}); "
                f"the Functions host moves its message to the queue {poison} "
                "(docs/runbook.md: poison messages)"
            )
            try:
                await asyncio.to_thread(store.note_poisoned, message.run_id, poison, note)
            except Exception as note_exc:  # storage down: the run stays open until swept
                log.error("run %s: could not note the poison queue: %s", message.run_id, note_exc)
        raise  # the host retries the message, then moves it to the poison queue


def _close_if_abandoned(store: TableStore, run_id: str, attempt: int) -> None:
    """A delivery found its run already taken: fine while that worker lives; if it died (no live
    liveness row), close the run as failed rather than leave it `running` forever."""
    row = store.get_run(run_id)
    status = row.get("Status") if row else None
    if status == "running" and not store.run_is_alive(run_id, datetime.now(UTC)):
        store.close_run(
            run_id,
            ("running",),
            f"the worker running it stopped before it finished; delivery {attempt} of its queue "
            "message found it abandoned. Groups it had not recorded were not changed by it, or "
            "are checked again by later runs; start it again if it is still wanted.",
        )
        log.error("run %s was abandoned by its worker: closed as failed", run_id)
        return
    log.warning("run %s is %s (not queued): message skipped", run_id, status or "unknown")


# -- status -------------------------------------------------------------------------------------


def sku_forecast(
    history: list[tuple[datetime, int]],
    enabled: int,
    consumed: int,
    now: datetime,
    changes: list[SupplyChange] | None = None,
) -> dict[str, Any]:
    """When consumed seats reach enabled at the recent growth (least squares over 30 days), or
    earlier when a subscription ends first (`changes`: known supply changes)."""
    growth = _growth_forecast(history, enabled, consumed, now)
    free = enabled - consumed
    if free <= 0 or not changes:
        return growth
    slope = growth["slopePerDay"] if growth["state"] == "growing" else 0.0
    outlook = runs_out(free, slope, changes, now)
    if outlook.cause != "supply" or outlook.runs_out_on is None or outlook.change is None:
        return growth
    day = outlook.runs_out_on.date().isoformat()
    if growth["runsOutOn"] is not None and growth["runsOutOn"] <= day:
        return growth
    return {
        "state": "ending",
        "slopePerDay": growth["slopePerDay"],
        "runsOutOn": day,
        "text": f"runs out {day}: {outlook.change.why}",
    }


def _growth_forecast(
    history: list[tuple[datetime, int]], enabled: int, consumed: int, now: datetime
) -> dict[str, Any]:
    free = enabled - consumed
    points = sorted(history)
    if free <= 0:
        return {
            "state": "exhausted",
            "slopePerDay": None,
            "runsOutOn": None,
            "text": "no seats left",
        }
    if len(points) < MIN_POINTS or points[-1][0] - points[0][0] < MIN_SPAN:
        return {
            "state": "unknown",
            "slopePerDay": None,
            "runsOutOn": None,
            "text": "not enough history yet",
        }
    fc = forecast(points, free, now)
    slope = round(fc.slope_per_day, 2)
    if fc.runs_out_on is None:
        return {"state": "flat", "slopePerDay": slope, "runsOutOn": None, "text": "not growing"}
    day = fc.runs_out_on.date().isoformat()
    return {
        "state": "growing",
        "slopePerDay": slope,
        "runsOutOn": day,
        "text": f"runs out {day} (+{slope:g}/day)",
    }


async def build_status(
    settings: Settings,
    store: TableStore,
    *,
    credential: TokenCredential | None = None,
    with_details: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Seats per SKU now (Graph; the latest run's figures if Graph cannot be read), the latest run,
    open alerts. with_details adds each SKU's history and the latest run's groups (dashboard)."""
    now = now or datetime.now(UTC)
    await asyncio.to_thread(store.ensure_tables)
    recent = await asyncio.to_thread(store.list_runs, 20)
    latest = recent[0] if recent else None
    finished = next(
        (r for r in recent if r.get("Status") in ("succeeded", "partial", "refused")), None
    )
    last = await asyncio.to_thread(read_run, store, finished["RunId"]) if finished else None
    warnings: list[str] = []
    live: dict[str, Any] = {}
    source = "graph"
    graph = None
    try:
        graph = GraphClient(
            credential or credential_for(settings, required_roles()),
            settings.graph_base_url,
            tenant_id=settings.tenant_id,  # the tenant's pacer: its budget, not another's
        )
        live = {s.sku_id: s for s in await graph.list_skus()}
    except GraphReadError as exc:
        source = "latest-run"
        warnings.append(f"seats could not be read from Graph now ({exc}); the latest run's shown")
    finally:
        if graph is not None:
            await graph.close()
    skus: list[dict[str, Any]] = []
    run_skus = {s["skuId"]: s for s in (last or {}).get("skus", [])}
    # Where the seats come from, as the latest finished run read them (None: not read).
    subscriptions = of_summary(last or {})
    if last and subscriptions is None and last.get("subscriptionsError"):
        warnings.append(
            f"run {last['runId']} could not read the subscriptions: the forecast leaves "
            "subscription end dates out"
        )
    sku_ids = list(run_skus) or sorted(live, key=lambda i: live[i].part_number)
    for sid in sku_ids:
        recorded, now_sku = run_skus.get(sid, {}), live.get(sid)
        enabled = now_sku.enabled if now_sku else int(recorded.get("enabled", 0))
        consumed = now_sku.consumed if now_sku else int(recorded.get("consumed", 0))
        rows = await asyncio.to_thread(store.sku_history, sid, HISTORY_RUNS)
        history = [
            (t, int(r.get("Consumed", 0)), int(r.get("Enabled", 0)))
            for r in rows
            if (t := parse_time(r.get("At"))) is not None
        ]
        part = now_sku.part_number if now_sku else recorded.get("skuPartNumber")
        item: dict[str, Any] = {
            "skuId": sid,
            "skuPartNumber": part,
            "productName": sku_product_name(sid, part),
            "capabilityStatus": (
                now_sku.capability_status if now_sku else recorded.get("capabilityStatus")
            ),
            "enabled": enabled,
            "consumed": consumed,
            "free": enabled - consumed,
            "reserve": recorded.get("reserve", 0),
            "demand": recorded.get("demand", 0),
            "shortfall": recorded.get("shortfall", 0),
            "forecast": sku_forecast(
                [(t, c) for t, c, _ in history],
                enabled,
                consumed,
                now,
                supply_changes(subscriptions or (), sid),
            ),
        }
        if with_details:
            item["history"] = [
                {"at": t.isoformat(), "consumed": c, "enabled": e} for t, c, e in history
            ]
        skus.append(item)
    alerts = await asyncio.to_thread(store.open_alerts)
    status: dict[str, Any] = {
        "generatedAt": now.isoformat(),
        "seatsSource": source,
        "skus": skus,
        "latestRun": _run_brief(latest),
        "seatsRun": _run_brief(finished),
        "openAlerts": [
            {
                "condition": a["RowKey"],
                "kind": a.get("Kind"),
                "subject": a.get("Subject"),
                "severity": a.get("Severity"),
                "status": a.get("Status"),
                "since": iso(a.get("FirstSeen")),
            }
            for a in alerts
        ],
        "warnings": warnings,
    }
    if with_details:
        status["groups"] = (last or {}).get("groups", [])
        status["waiting"] = await asyncio.to_thread(latest_waiting_summary, store)
    return status


_BRIEF = ("runId", "mode", "trigger", "status", "startedAt", "finishedAt", "counts")


def _run_brief(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    item = run_item(row, "")
    return {key: item[key] for key in _BRIEF}


# -- endpoints (one per HTTP function; routes and methods are declared in triggers/http.py) -------


def _check_enabled(tenant: Tenant | None) -> None:
    if tenant is not None and not tenant.enabled:
        raise ApiError(
            409,
            "Conflict",
            f"tenant {tenant.display_name} ({tenant.tenant_id}) is disabled: no run is started for "
            "it; its runs, status and dashboard stay readable. Enable its tenant record to run it",
        )


@endpoint
async def start_run(request: Request, s: Settings) -> Response:
    """POST /api/runs[?tenant]: queue a run (202 + status URL), or run it inline (`wait`)."""
    principal = authorize_request(s, request, "plan")  # signed in (when Auth is on) before the body
    run = parse_run_request(request.body)
    if run.mode == "apply":
        principal = authorize_request(s, request, "apply")
    requested_by = principal.name if principal else ""
    access: Access = run.mode
    scope = await asyncio.to_thread(scope_of, s, request.params, access, principal)
    _check_enabled(scope.tenant)
    store = scope.store
    if run.wait:  # inline: for small runs (a few groups); HTTP requests time out at 230 s
        report = await execute_run(
            scope.settings,
            run.mode,
            "http",
            group_ids=run.group_ids,
            store=store,
            requested_by=requested_by,
        )
        summary = report.summary()
        check_some_requested_group_tagged(run, summary)
        ok = report.status in ("succeeded", "partial", "refused")
        return json_response(summary, 200 if ok else 500)
    queue = RunQueue.from_env(s.run_queue)
    # Storage calls block: off the event loop, so other invocations of this worker keep running.
    run_id = await asyncio.to_thread(queue_run, store, queue, run, requested_by)
    url = with_query(f"{request.base_url}/runs/{run_id}", scope.query)
    return json_response(
        {"runId": run_id, "status": "queued", "mode": run.mode, "statusUrl": url},
        202,
        {"Location": url, "Retry-After": "10"},
    )


@endpoint
async def list_runs(request: Request, s: Settings) -> Response:
    """GET /api/runs?limit&after&tenant: recorded runs, newest first, in pages."""
    principal = authorize_request(s, request, "read")
    limit, after = parse_page(request.params)
    scope = await asyncio.to_thread(scope_of, s, request.params, "read", principal)
    page = await asyncio.to_thread(
        list_runs_page, scope.store, limit, after, request.base_url, scope.query
    )
    return json_response(page)


@endpoint
async def get_run(request: Request, s: Settings) -> Response:
    """GET /api/runs/{runId}[?tenant]: one run with its groups and SKUs."""
    principal = authorize_request(s, request, "read")
    run_id = check_run_id(request.route_params.get("runId", ""))
    scope = await asyncio.to_thread(scope_of, s, request.params, "read", principal)
    return json_response(await asyncio.to_thread(read_run_or_404, scope.store, run_id))


def _only_params(params: Mapping[str, str], *allowed: str) -> None:
    unknown = sorted(set(params) - {*allowed, "code"})
    if unknown:
        allowed_text = f"allowed: {', '.join(allowed)}" if allowed else "it takes none"
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)} ({allowed_text})")


@endpoint
async def get_status(request: Request, s: Settings) -> Response:
    """GET /api/status[?tenant]: seats per SKU now, the latest run, open alerts."""
    principal = authorize_request(s, request, "read")
    scope = await asyncio.to_thread(scope_of, s, request.params, "read", principal)
    return json_response(await build_status(scope.settings, scope.store))


DASHBOARD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def _html(html: str) -> Response:
    return Response(200, html.encode("utf-8"), "text/html", DASHBOARD_HEADERS)


@endpoint
async def get_dashboard(request: Request, s: Settings) -> Response:
    """GET /api/dashboard[?tenant]: the status as one HTML page with seat history and forecasts;
    without `tenant` on a deployment with tenant records, the tenants overview."""
    principal = authorize_request(s, request, "read")
    # The page's links keep the function key the page was opened with (?code=): the browser
    # has no other way to send it, and the page goes only to the caller who sent it.
    keep = {"code": request.params["code"]} if request.params.get("code") else {}
    if TENANT_PARAM not in request.params:
        records = await asyncio.to_thread(tenant_records, s)
        if records:
            rows = await tenant_summaries(s, records, principal, request.base_url)
            return _html(render_overview(rows, keep, datetime.now(UTC)))
    scope = await asyncio.to_thread(scope_of, s, request.params, "read", principal)
    status = await build_status(scope.settings, scope.store, with_details=True)
    tenant = None
    if scope.tenant is not None:
        tenant = {
            "id": scope.tenant.tenant_id,
            "name": scope.tenant.display_name,
            "enabled": scope.tenant.enabled,
            "overview": with_query("dashboard", keep),
        }
    return _html(render_dashboard(status, tenant))


# -- the tenants --------------------------------------------------------------------------------


def _seats_short(run: Mapping[str, Any] | None) -> tuple[int | None, list[dict[str, Any]]]:
    """Seats to buy so everyone waiting for a seat gets one and each SKU keeps its reserve (the
    SKUs' `shortfall`, as the sku-exhausted alert and the dashboard say it), summed over the
    run's SKUs. None: no run has read the seats (unknown, not zero)."""
    skus = (run or {}).get("skus") or []
    if not skus:
        return None, []
    short = [
        {
            "skuId": sku.get("skuId"),
            "skuPartNumber": sku.get("skuPartNumber"),
            "productName": sku.get("productName"),
            "shortfall": int(sku.get("shortfall") or 0),
        }
        for sku in skus
        if int(sku.get("shortfall") or 0) > 0
    ]
    return sum(s["shortfall"] for s in short), short


def tenant_summary(
    store: TableStore,
    tenant: Tenant | None,
    base_url: str,
    implicit: tuple[str, Mode] = ("", "plan"),
) -> dict[str, Any]:
    """One row of GET /api/tenants and of the overview page. A tenant whose rows cannot be read
    gets `error` and nulls (unknown), never zeros."""
    query = tenant_query(tenant)
    item: dict[str, Any] = {
        "tenantId": tenant.tenant_id if tenant else None,
        "displayName": tenant.display_name if tenant else implicit[0],
        "enabled": tenant.enabled if tenant else True,
        "mode": tenant.mode if tenant else implicit[1],
        "lastRun": None,
        "seatsShort": None,
        "seatsShortBySku": None,
        "seatsRunId": None,
        "waiting": None,
        "waitingComplete": None,
        "openAlerts": None,
        "error": None,
        "links": {
            name: with_query(f"{base_url}/{name}", query)
            for name in ("status", "dashboard", "runs", "waiting")
        },
    }
    try:
        store.ensure_tables()
        recent = store.list_runs(20)
        if recent:
            latest = run_item(recent[0], base_url, query)
            item["lastRun"] = {
                k: latest[k]
                for k in ("runId", "status", "mode", "trigger", "startedAt", "finishedAt", "url")
            }
        # The run the seat figures come from: the latest that read them (as build_status).
        seats_row = next(
            (r for r in recent if r.get("Status") in ("succeeded", "partial", "refused")), None
        )
        seats_run = read_run(store, seats_row["RunId"]) if seats_row else None
        short, by_sku = _seats_short(seats_run)
        if short is not None and seats_run is not None:
            item.update(seatsShort=short, seatsShortBySku=by_sku, seatsRunId=seats_run["runId"])
        waiting = latest_waiting_summary(store)
        if waiting is not None:
            item["waiting"] = int(waiting.get("people") or 0)
            item["waitingComplete"] = bool(waiting.get("complete"))
        item["openAlerts"] = len(store.open_alerts())
    except Exception as exc:  # this tenant's rows only: the other rows still show
        log.warning("tenant %s: its rows could not be read: %s", item["tenantId"], exc)
        item.update(
            lastRun=None,
            seatsShort=None,
            seatsShortBySku=None,
            seatsRunId=None,
            waiting=None,
            waitingComplete=None,
            openAlerts=None,
            error=f"its rows could not be read: {type(exc).__name__}: {exc}"[:500],
        )
    return item


async def tenant_summaries(
    settings: Settings, records: list[Tenant], principal: Principal | None, base_url: str
) -> list[dict[str, Any]]:
    """The rows the caller may read, in the records' order, read side by side (each tenant's
    reads block on storage; one slow tenant does not make the others wait in turn)."""
    base = TableStore.from_settings(settings)
    visible = [t for t in records if may_read(t, principal)]
    return list(
        await asyncio.gather(
            *(
                asyncio.to_thread(tenant_summary, base.for_tenant(t.tenant_id), t, base_url)
                for t in visible
            )
        )
    )


@endpoint
async def list_tenants(request: Request, s: Settings) -> Response:
    """GET /api/tenants: one row per tenant the caller may read (last run, seats short, people
    waiting, open alerts, links). No tenant records: one row, the implicit tenant (tenantId
    null), so a single-tenant install answers the same shape."""
    principal = authorize_request(s, request, "read")
    _only_params(request.params)
    records = await asyncio.to_thread(tenant_records, s)
    if not records:
        store = TableStore.from_settings(s)
        name = s.tenant_name or "this deployment's tenant"
        row = await asyncio.to_thread(
            tenant_summary, store, None, request.base_url, (name, s.timer_mode)
        )
        return json_response({"value": [row]})
    rows = await tenant_summaries(s, records, principal, request.base_url)
    return json_response({"value": rows})


# -- the waiting list ---------------------------------------------------------------------------

WAITING_PARAMS = ("limit", "after", "runId", TENANT_PARAM, "code")


def parse_waiting_page(params: Mapping[str, str]) -> tuple[int, int, str | None]:
    """limit, after (the position of the previous page's last person), runId (default latest)."""
    unknown = sorted(set(params) - set(WAITING_PARAMS))
    if unknown:
        raise bad_request(
            f"unknown query parameter(s): {', '.join(unknown)} "
            "(allowed: limit, after, runId, tenant)"
        )
    limit = DEFAULT_PAGE
    raw = params.get("limit")
    if raw is not None:
        if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_PAGE:
            raise bad_request(f"limit must be an integer 1..{MAX_PAGE}, got {raw!r}")
        limit = int(raw)
    after = 0
    raw = params.get("after")
    if raw is not None:
        if not re.fullmatch(r"[0-9]{1,7}", raw):
            raise bad_request(
                f"after must be the position of the previous page's last person (0..9999999), "
                f"got {raw!r}"
            )
        after = int(raw)
    run_id = params.get("runId")
    if run_id is not None:
        check_run_id(run_id)
    return limit, after, run_id


def waiting_page(
    store: TableStore,
    params: Mapping[str, str],
    base_url: str,
    query: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """GET /api/waiting: (status, JSON body, headers). The latest unrestricted run's waiting
    list (or runId's), paged; every page carries whether the list is complete and which groups
    were not read, so a partial list never reads as the whole tenant."""
    try:
        limit, after, run_id = parse_waiting_page(params)
        store.ensure_tables()
        run_id = run_id or store.latest_waiting_run()
        if run_id is None:
            body: dict[str, Any] = {
                "runId": None,
                "generatedAt": None,
                "complete": False,
                "unreadGroups": [],
                "limitedTo": [],
                "people": 0,
                "skus": [],
                "value": [],
                "nextLink": None,
                "note": "no run has recorded a waiting list yet",
            }
            return 200, body, {}
        head = store.waiting_head(run_id)
        if head is None:
            raise ApiError(404, "NotFound", f"run {run_id} recorded no waiting list")
        summary = json.loads(head.get("SummaryJson") or "{}")
        rows, more = store.waiting_items(run_id, limit, after)
        items = [{"position": waiting_item_position(r["RowKey"]), **from_row(r)} for r in rows]
        next_link = None
        if more and items:
            next_link = f"{base_url}/waiting?" + urlencode(
                {**(query or {}), "limit": limit, "after": items[-1]["position"], "runId": run_id}
            )
        body = {
            "runId": run_id,
            "generatedAt": head.get("GeneratedAt"),
            "complete": bool(summary.get("complete")),
            "unreadGroups": summary.get("unreadGroups") or [],
            "limitedTo": summary.get("limitedTo") or [],
            "people": int(summary.get("people") or 0),
            "skus": summary.get("skus") or [],
            "value": items,
            "nextLink": next_link,
        }
        return 200, body, {}
    except ApiError as exc:
        return exc.status, exc.body(), {}


def latest_waiting_summary(store: TableStore) -> dict[str, Any] | None:
    """The latest unrestricted run's waiting counts (dashboard), or None."""
    run_id = store.latest_waiting_run()
    head = store.waiting_head(run_id) if run_id else None
    if head is None:
        return None
    summary: dict[str, Any] = json.loads(head.get("SummaryJson") or "{}")
    return {"runId": run_id, "generatedAt": head.get("GeneratedAt"), **summary}


@endpoint
async def get_waiting(request: Request, s: Settings) -> Response:
    """GET /api/waiting[?tenant]: who waits for a seat (the latest unrestricted run's list)."""
    principal = authorize_request(s, request, "read")
    parse_waiting_page(request.params)  # a bad query is refused before any tenant is looked up
    scope = await asyncio.to_thread(scope_of, s, request.params, "read", principal)
    status, body, headers = await asyncio.to_thread(
        waiting_page, scope.store, dict(request.params), request.base_url, scope.query
    )
    return json_response(body, status, headers)
