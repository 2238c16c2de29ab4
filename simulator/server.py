"""HTTP front of the simulator: auth, faults, throttling, latency, the request log, `$batch`
and the `/_sim` admin API, on loopback only.

`start_server(tenant, port=0)` runs it in a background thread (tests, the demo);
`python -m simulator serve` runs it in the foreground.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import random
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from shared.common import is_loopback_host as is_loopback
from simulator.errors import GraphError, bad_request
from simulator.graph import PERMISSIONS, GraphApi, Request, Response
from simulator.tenant import Tenant, TenantError

TOKEN_PREFIX = "sim."
TOKEN_LIFETIME_S = 3600
BATCH_LIMIT = 20
# Identity and access throttling (docs/graph-facts.md "Throttling"; Microsoft Graph service-specific
# throttling limits, https://learn.microsoft.com/en-us/graph/throttling-limits), in simulated
# seconds: divided by the server's time scale in real time.
THROTTLE_WINDOW_S = 10.0
WRITE_WINDOW_S = 150.0
WRITE_LIMIT = 3000  # per app per tenant per 2 min 30 s
TENANT_WRITE_WINDOW_S = 300.0
TENANT_WRITE_LIMIT = 18000  # per tenant per 5 min, all apps together
WARN_ABOVE = 0.8  # x-ms-throttle-limit-percentage is sent above this share of the limit
MAX_USAGE = 1.8  # ... and "ranges from 0.8 to 1.8": requests over the limit keep counting
# The app a token belongs to when /_sim/token is not told (any GUID: only a bucket key).
DEFAULT_APP_ID = "5e1f0c2a-9b7d-4e3a-8c6f-1a2b3c4d5e6f"


def default_ru_limit(users: int) -> int:
    """RU per 10 s per app per tenant by tenant size: <50 users, 50-500, >500."""
    return 3500 if users < 50 else 5000 if users <= 500 else 8000


_STATUS_CODES = {
    400: "Request_BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    409: "Request_MultipleObjectsWithSameKeyValue",
    429: "TooManyRequests",
    500: "generalException",
    502: "badGateway",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
}


def make_token(
    roles: list[str],
    lifetime_s: int = TOKEN_LIFETIME_S,
    app_id: str = DEFAULT_APP_ID,
    tenant_id: str | None = None,
) -> str:
    """A token that simply carries its roles, app and tenant (`tid`, as Entra's do); the
    simulator trusts only its own prefix. No `tid`: the server's default tenant."""
    claims: dict[str, Any] = {"roles": roles, "exp": int(time.time()) + lifetime_s, "appid": app_id}
    if tenant_id is not None:
        claims["tid"] = tenant_id
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return TOKEN_PREFIX + payload


def read_token(header: str | None) -> frozenset[str]:
    """Roles of a `Bearer sim.…` token; raises 401 for anything else or an expired token."""
    return token_claims(header)[0]


def token_claims(header: str | None) -> tuple[frozenset[str], str]:
    """(roles, app id) of a `Bearer sim.…` token; 401 for anything else or an expired token."""
    roles, app_id, _ = token_identity(header)
    return roles, app_id


def token_tenant(header: str | None) -> str | None:
    """The `tid` claim of a token, or None (no token, not ours, no claim): never raises, so the
    tenant is known before the token is checked (faults apply to unauthenticated calls too)."""
    try:
        return token_identity(header)[2]
    except GraphError:
        return None


def token_identity(header: str | None) -> tuple[frozenset[str], str, str | None]:
    """(roles, app id, tenant id or None) of a `Bearer sim.…` token; 401 for anything else or
    an expired token."""
    if not header or not header.lower().startswith("bearer "):
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
    token = header[7:].strip()
    try:
        if not token.startswith(TOKEN_PREFIX):
            raise ValueError("prefix")
        raw = token[len(TOKEN_PREFIX) :]
        claims = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        roles = claims["roles"]
        expires = float(claims["exp"])
        app_id = str(claims.get("appid") or DEFAULT_APP_ID)
        tid = claims.get("tid")
        if tid is not None and not isinstance(tid, str):
            raise ValueError("tid")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValueError("roles")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed."
        ) from exc
    if expires < time.time():
        raise GraphError(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        )
    return frozenset(roles), app_id, tid


@dataclass
class Fault:
    """An injected fault. `mode`: "error" answers `status`; "slow" waits `delay_ms` and then
    answers normally; "truncate" sends the headers and half the body, then closes the
    connection; "drop" closes the connection without an answer. It fires `remaining` times
    (None = no limit), each time with `probability` (seeded by the server's seed)."""

    pattern: re.Pattern[str]
    status: int
    remaining: int | None
    method: str | None
    code: str
    retry_after: str | None
    mode: str = "error"
    probability: float = 1.0
    delay_ms: float = 0.0
    fired: int = 0


@dataclass
class _Bucket:
    """One app's budget in this tenant, shared by every client and token of that app: a
    resource-unit token bucket and a write window.

    `demand` is what the app asked for, throttled requests included, leaking at the refill rate:
    the usage reported in x-ms-throttle-limit-percentage, which goes past 1 (up to 1.8) while an
    app keeps calling over its limit. `attempts` is the same for writes."""

    tokens: float
    stamp: float
    demand: float = 0.0
    writes: deque[float] = field(default_factory=deque)
    attempts: deque[float] = field(default_factory=deque)


@dataclass
class TenantState:
    """What the simulator keeps per tenant: its directory, Graph surface and outbox (`api`), its
    request log, its faults and its throttling buckets (Graph's budgets are per app per tenant,
    and the tenant-wide write limit is the tenant's), and whether the app is consented there."""

    tenant: Tenant
    api: GraphApi
    display_name: str
    ru_limit: int  # RU per 10 s per app; 0 = no RU throttling
    write_limit: int  # writes per 150 s per app; 0 = none
    tenant_write_limit: int  # writes per 300 s, all apps; 0 = none
    fault_rng: random.Random
    consented: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    buckets: dict[str, _Bucket] = field(default_factory=dict)  # by app id
    tenant_writes: deque[float] = field(default_factory=deque)  # accepted writes, every app

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def outbox(self) -> list[dict[str, Any]]:
        return self.api.outbox

    def summary(self, default: bool) -> dict[str, Any]:
        """One row of `GET /_sim/tenants`."""
        with self.tenant.lock:
            users, groups, skus = (
                len(self.tenant.users),
                len(self.tenant.groups),
                len(self.tenant.skus),
            )
            outbox = len(self.api.outbox)
        return {
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "default": default,
            "consented": self.consented,
            "users": users,
            "groups": groups,
            "skus": skus,
            "requests": len(self.requests),
            "outbox": outbox,
        }


class SimServer:
    """One running simulator serving one or more tenants; `url`, `tenant` (the default tenant),
    `tenants`, `add_tenant`, `remove_tenant` and `stop()` are the public contract."""

    def __init__(
        self,
        tenant: Tenant | Sequence[Tenant],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0,
        processing_delay_s: float = 0,
        seed: int | None = None,
        ru_limit: int | None = None,
        write_limit: int = WRITE_LIMIT,
        tenant_write_limit: int = TENANT_WRITE_LIMIT,
        rejected_requests_debit: bool = False,
        time_scale: float = 1.0,
        latency_jitter_ms: float | None = None,
        latency_per_item_ms: float = 0,
        error_sku_in_assigned_licenses: bool = False,
        multi_sku_error: str = "all",
        hidden_members: str = "forbidden",
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"refusing to bind to non-loopback host {host!r}: use 127.0.0.1")
        tenants = [tenant] if isinstance(tenant, Tenant) else list(tenant)
        if not tenants:
            raise ValueError("at least one tenant is needed")
        self.latency_ms = latency_ms
        # None: +-25 % of latency_ms; 0: fixed; X: uniform +-X ms.
        self.latency_jitter_ms = latency_jitter_ms
        # Latency model: flat (0) or per page, latency_ms + latency_per_item_ms x objects returned
        # (a page of 999 users with licence states takes Graph far longer than an empty one).
        if latency_per_item_ms < 0:
            raise ValueError("latency_per_item_ms must not be negative")
        self.latency_per_item_ms = latency_per_item_ms
        self.seed = seed
        self.rng = random.Random(seed)
        # Undocumented whether a throttled request also spends tokens (so retrying at once
        # delays recovery): off, it counts only in the usage reported; on, it debits the bucket
        # down to -0.8 of the limit (the usage's 1.8 ceiling).
        self.rejected_requests_debit = rejected_requests_debit
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale  # 10 = throttling windows pass ten times faster
        # What every tenant starts with (tenants added later too); each can be changed per
        # tenant through its /config.
        self._tenant_options: dict[str, Any] = {
            "processing_delay_s": processing_delay_s,
            "ru_limit": ru_limit,
            "write_limit": write_limit,
            "tenant_write_limit": tenant_write_limit,
            "error_sku_in_assigned_licenses": error_sku_in_assigned_licenses,
            "multi_sku_error": multi_sku_error,
            "hidden_members": hidden_members,
        }
        self.lock = threading.Lock()
        # Tenant id -> its state; the first is the default ("home") tenant: tokens without a
        # tenant and the /_sim routes without /tenants/<id> act on it.
        self.tenants: dict[str, TenantState] = {}
        for t in tenants:
            self.add_tenant(t)
        self.default_tenant_id = tenants[0].tenant_id
        self.httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    # ---- tenants -----------------------------------------------------------------------------

    def add_tenant(self, tenant: Tenant, display_name: str | None = None) -> TenantState:
        """Serve one more tenant (at start-up or while running); its id must be new."""
        opts = self._tenant_options
        tenant.processing_delay_s = opts["processing_delay_s"]
        # Behaviours Microsoft's docs leave open (docs/simulator.md "Switches").
        for name in ("error_sku_in_assigned_licenses", "multi_sku_error", "hidden_members"):
            tenant.behaviour.set(name, opts[name])
        ru_limit = opts["ru_limit"]
        with self.lock:
            tid = tenant.tenant_id
            if tid in self.tenants:
                raise ValueError(f"tenant {tid} is already served")
            # The default tenant keeps the single-tenant fault sequence for a given seed.
            salt = f"faults:{self.seed}" if not self.tenants else f"faults:{self.seed}:{tid}"
            state = TenantState(
                tenant=tenant,
                api=GraphApi(tenant),
                display_name=display_name or tenant.display_name or tid,
                # RU budget per 10 s by tenant size (docs/graph-facts.md "Throttling").
                ru_limit=default_ru_limit(len(tenant.users)) if ru_limit is None else ru_limit,
                write_limit=opts["write_limit"],
                tenant_write_limit=opts["tenant_write_limit"],
                fault_rng=random.Random(None if self.seed is None else salt),
            )
            self.tenants[tid] = state
        return state

    def remove_tenant(self, tenant_id: str) -> None:
        """Stop serving a tenant: its tokens get 401 from now on. The default one stays."""
        tid = tenant_id.lower()
        with self.lock:
            if tid == self.default_tenant_id:
                raise ValueError("the default tenant cannot be removed")
            state = self.tenants.pop(tid, None)
        if state is None:
            raise KeyError(tid)
        state.tenant.cancel_pending()

    @property
    def home(self) -> TenantState:
        """The default tenant's state."""
        return self.tenants[self.default_tenant_id]

    # The single-tenant attributes, kept: they are the default tenant's.
    @property
    def tenant(self) -> Tenant:
        return self.home.tenant

    @property
    def api(self) -> GraphApi:
        return self.home.api

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.home.requests

    @property
    def faults(self) -> list[Fault]:
        return self.home.faults

    @property
    def ru_limit(self) -> int:
        return self.home.ru_limit

    @property
    def write_limit(self) -> int:
        return self.home.write_limit

    @property
    def tenant_write_limit(self) -> int:
        return self.home.tenant_write_limit

    def cancel_pending(self) -> None:
        for state in list(self.tenants.values()):
            state.tenant.cancel_pending()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimServer:
        # A short poll interval keeps stop() (and so each test) fast.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="graph-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.cancel_pending()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request ids -------------------------------------------------------------------------

    def new_id(self) -> str:
        with self.lock:
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # ---- Graph pipeline ----------------------------------------------------------------------

    def graph(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        in_batch: bool = False,
    ) -> Response:
        """One /v1.0 request (or one $batch item): faults, auth, throttling, route, log."""
        parts = urlsplit(target)
        full_path = unquote(parts.path)
        query = parts.query
        request_id = self.new_id()
        client_id = headers.get("client-request-id") or request_id
        path = full_path[len("/v1.0") :] or "/"
        ru = 1
        truncate = False
        usage: dict[str, str] = {}
        # The token names its tenant; a call without a (valid) token is the default tenant's,
        # so its faults and log apply before the token is refused, as in one-tenant use.
        auth = headers.get("authorization")
        tid = token_tenant(auth)
        with self.lock:
            state = self.tenants.get(tid.lower()) if tid else self.home
        try:
            if path == "/$batch" and method == "POST" and not in_batch:
                ru = 0  # the envelope costs nothing; each item is charged and logged itself
                truncate = self._fault(state, method, full_path, query, in_batch)
                read_token(auth)
                self._check_tenant(state, tid)
                response = self._batch(headers, body)
            else:
                route, match = self.api.match(method, path)
                ru = _ru_cost(route.ru, route.write, query)
                truncate = self._fault(state, method, full_path, query, in_batch)
                roles, app_id = token_claims(auth)
                state = self._check_tenant(state, tid)
                usage = self._throttle(state, app_id, ru, route.write)
                if not roles & PERMISSIONS[route.permission]:
                    raise GraphError(
                        403,
                        "Authorization_RequestDenied",
                        "Insufficient privileges to complete the operation.",
                    )
                req = Request(
                    method=method,
                    path=path,
                    query=query,
                    headers=headers,
                    body=_json_body(body),
                    roles=roles,
                    base_url=self.url,
                )
                with state.tenant.lock:
                    response = route.handler(state.api, req, match)
        except GraphError as err:
            response = error_response(err, request_id, client_id)
        response.truncate = truncate
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_id)
        if ru:
            response.headers["x-ms-resource-unit"] = str(ru)
        response.headers.update(usage)
        # A batch item's time is part of its envelope's, which counts the objects of every item.
        items = 0 if in_batch else _objects(response.body, response.status)
        response.delay_s = 0.0 if in_batch else self.latency_s(items)
        # A tenant that is no longer served has no log left to write to.
        if state is not None:
            with self.lock:
                state.requests.append(
                    {
                        "method": method,
                        "path": full_path,
                        "query": unquote(query),
                        "status": response.status,
                        "ru": ru,
                        "at": datetime.now(UTC).isoformat(),
                        "batch": in_batch,
                        "objects": items,
                        "latencyMs": round(response.delay_s * 1000, 3),
                    }
                )
        return response

    def _check_tenant(self, state: TenantState | None, tid: str | None) -> TenantState:
        """The tenant a valid token names: 401 if it is no longer served or no longer consents
        (the app's service principal is gone there, so Graph cannot establish who calls)."""
        if state is None:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                f"The tenant for tenant guid '{tid}' does not exist.",
            )
        if not state.consented:
            raise GraphError(
                401,
                "Authorization_IdentityNotFound",
                "The identity of the calling application could not be established.",
            )
        return state

    def _fault(
        self,
        state: TenantState | None,
        method: str,
        path: str,
        query: str,
        in_batch: bool = False,
    ) -> bool:
        """Apply the tenant's first matching fault: raise its error, sleep, or ask for
        truncation."""
        if state is None:
            return False
        subject = f"{path}?{unquote(query)}" if query else path
        delay = 0.0
        truncate = False
        with self.lock:
            for fault in state.faults:
                if fault.remaining is not None and fault.remaining <= 0:
                    continue
                if fault.method and fault.method != method:
                    continue
                if not fault.pattern.search(subject):
                    continue
                if fault.probability < 1 and state.fault_rng.random() >= fault.probability:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                fault.fired += 1
                if fault.mode == "slow":
                    delay = fault.delay_ms / 1000
                    break
                if fault.mode in ("truncate", "drop"):
                    if in_batch:
                        continue  # an item cannot cut the envelope's connection
                    truncate = True
                    if fault.mode == "drop":
                        raise _Drop()
                    break
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                raise GraphError(
                    fault.status,
                    fault.code,
                    f"Injected fault ({fault.status}) for {subject}.",
                    headers,
                )
        if delay:
            time.sleep(delay)
        return truncate

    def _throttle(self, state: TenantState, app_id: str, ru: int, write: bool) -> dict[str, str]:
        """Charge the app's bucket in this tenant (docs/graph-facts.md "Throttling"); 429 when
        it is empty, the app has used its writes or the tenant its writes. Returns the usage
        header to send above 80 % of the app's limits (on a 429 too, in the error's headers)."""
        limit = state.ru_limit
        app_writes = write and state.write_limit > 0
        tenant_writes = write and state.tenant_write_limit > 0
        if limit <= 0 and not app_writes and not tenant_writes:
            return {}
        scale = self.time_scale
        now = time.monotonic()
        tenant_id = state.tenant_id
        error: GraphError | None = None
        usage = 0.0
        with self.lock:
            bucket = state.buckets.get(app_id)
            if bucket is None:
                bucket = state.buckets[app_id] = _Bucket(float(max(limit, 0)), now)
            if limit > 0:
                rate = limit / (THROTTLE_WINDOW_S / scale)  # tokens per real second
                refill = (now - bucket.stamp) * rate
                bucket.tokens = min(float(limit), bucket.tokens + refill)
                bucket.demand = min(max(bucket.demand - refill, 0.0) + ru, MAX_USAGE * limit)
                bucket.stamp = now
                usage = bucket.demand / limit
                if bucket.tokens < ru:
                    if self.rejected_requests_debit:
                        bucket.tokens = max(bucket.tokens - ru, -(MAX_USAGE - 1) * limit)
                    error = _too_many(
                        (ru - bucket.tokens) / rate,
                        f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}",
                        "ResourceUnitLimitExceeded",
                    )
            if app_writes:
                window = WRITE_WINDOW_S / scale
                for times in (bucket.writes, bucket.attempts):
                    while times and now - times[0] >= window:
                        times.popleft()
                if len(bucket.attempts) < MAX_USAGE * state.write_limit:
                    bucket.attempts.append(now)
                usage = max(usage, len(bucket.attempts) / state.write_limit)
                if error is None and len(bucket.writes) >= state.write_limit:
                    error = _too_many(
                        window - (now - bucket.writes[0]),
                        f"Tenant_Application/Write/{app_id}/{tenant_id}",
                        "WriteLimitExceeded",
                    )
            if tenant_writes and error is None:
                window = TENANT_WRITE_WINDOW_S / scale
                while state.tenant_writes and now - state.tenant_writes[0] >= window:
                    state.tenant_writes.popleft()
                if len(state.tenant_writes) >= state.tenant_write_limit:
                    error = _too_many(
                        window - (now - state.tenant_writes[0]),
                        f"Tenant/Write/{app_id}/{tenant_id}",
                        "WriteLimitExceeded",
                    )
            if error is None:
                if limit > 0:
                    bucket.tokens -= ru
                if app_writes:
                    bucket.writes.append(now)
                if tenant_writes:
                    state.tenant_writes.append(now)
        # The tenant-wide limit is not the app's own: the header reports only the app's limits
        # ("the application consumed more than 0.8 of its limit").
        header = (
            {"x-ms-throttle-limit-percentage": f"{min(usage, MAX_USAGE):.2f}"}
            if usage > WARN_ABOVE
            else {}
        )
        if error is not None:
            error.headers.update(header)
            raise error
        return header

    def _batch(self, headers: dict[str, str], body: bytes) -> Response:
        """JSON batching (docs/graph-facts.md "Batching"): in order; a failed dependency: 424."""
        envelope = _json_body(body)
        items = envelope.get("requests") if isinstance(envelope, dict) else None
        if not isinstance(items, list) or not items:
            raise bad_request("Invalid batch payload: 'requests' must be a non-empty array.")
        if len(items) > BATCH_LIMIT:
            raise bad_request(f"Number of batch requests exceeds the limit of {BATCH_LIMIT}.")
        ids = [str(i.get("id")) if isinstance(i, dict) else "" for i in items]
        if len(set(ids)) != len(ids) or not all(ids):
            raise bad_request("Batch request ids must be present and unique.")
        statuses: dict[str, int] = {}
        responses = []
        for item, item_id in zip(items, ids, strict=True):
            # msgraph-sdk for Python sends `depends_on`; Graph's docs spell it `dependsOn`.
            depends = item.get("dependsOn") or item.get("depends_on") or []
            if not isinstance(depends, list) or any(str(d) not in statuses for d in depends):
                raise bad_request(f"Batch request {item_id}: dependsOn must name earlier ids.")
            item_headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
            if any(statuses[str(d)] >= 400 for d in depends):
                resp = Response(424, _error_body("FailedDependency", "Dependency failed.", "", ""))
            elif "body" in item and "content-type" not in item_headers:
                resp = Response(
                    400,
                    _error_body(
                        "BadRequest", "A request with a body needs a Content-Type header.", "", ""
                    ),
                )
            else:
                if "authorization" in headers:
                    item_headers.setdefault("authorization", headers["authorization"])
                raw_body = json.dumps(item["body"]).encode() if "body" in item else b""
                resp = self.graph(
                    str(item.get("method", "GET")).upper(),
                    _batch_target(str(item.get("url", ""))),
                    item_headers,
                    raw_body,
                    in_batch=True,
                )
            statuses[item_id] = resp.status
            out_headers = dict(resp.headers)
            if isinstance(resp.body, dict):
                out_headers["Content-Type"] = "application/json"
            responses.append(
                {"id": item_id, "status": resp.status, "headers": out_headers, "body": resp.body}
            )
        return Response(200, {"responses": responses})

    # ---- admin API ---------------------------------------------------------------------------

    def admin(self, method: str, path: str, body: bytes) -> Response:
        """`/_sim/...`: the default tenant's admin routes, `/_sim/tenants[...]` for the others."""
        data = _json_body(body)
        parts = [unquote(p) for p in path.strip("/").split("/")][1:]  # drop "_sim"
        key = (method, *parts[:1])
        if key == ("GET", "health"):
            return Response(200, {"status": "ok"})
        if parts[:1] == ["tenants"]:
            return self._admin_tenants(method, parts[1:], data)
        if key == ("GET", "config"):
            return Response(200, self.config())
        if key == ("PATCH", "config"):
            self.configure(data)
            return Response(200, self.config())
        return self._admin_tenant(self.home, method, parts, data)

    def _admin_tenants(self, method: str, parts: list[str], data: Any) -> Response:
        """`GET|POST /_sim/tenants`, `GET|DELETE /_sim/tenants/<id>` and
        `/_sim/tenants/<id>/<admin path>`."""
        if not parts:
            if method == "GET":
                with self.lock:
                    states = list(self.tenants.values())
                value = [s.summary(s.tenant_id == self.default_tenant_id) for s in states]
                return Response(200, {"value": value})
            if method == "POST":
                try:
                    added = self.add_tenant(Tenant.from_dict(data))
                except (TenantError, ValueError) as exc:
                    raise bad_request(f"Cannot add the tenant: {exc}") from exc
                return Response(201, added.summary(False))
            raise GraphError(404, "Request_ResourceNotFound", f"No admin route {method} tenants.")
        tid = parts[0].lower()
        with self.lock:
            state = self.tenants.get(tid)
        if state is None:
            raise GraphError(
                404, "Request_ResourceNotFound", f"No tenant '{parts[0]}' is served here."
            )
        rest = parts[1:]
        if not rest and method == "GET":
            return Response(200, state.summary(tid == self.default_tenant_id))
        if not rest and method == "DELETE":
            try:
                self.remove_tenant(tid)
            except ValueError as exc:
                raise bad_request(str(exc)) from exc
            return Response(204)
        if rest[:1] == ["tenants"] or rest[:1] == ["health"]:
            raise GraphError(404, "Request_ResourceNotFound", f"No admin route {method} {rest[0]}.")
        return self._admin_tenant(state, method, rest, data, scoped=True)

    def _token(self, data: Any, tenant_id: str | None = None) -> Response:
        """`POST /_sim/token`: a token for the tenant named (default: the default tenant), or the
        error Entra's token endpoint gives (unknown tenant, app not consented there)."""
        roles = data.get("roles") if isinstance(data, dict) else None
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise bad_request('Body must be {"roles": ["Role.Name", ...]}.')
        app_id = data.get("appId", DEFAULT_APP_ID)
        if not isinstance(app_id, str) or not app_id:
            raise bad_request('"appId" must be a non-empty string.')
        asked = data.get("tenantId")
        if asked is not None and not isinstance(asked, str):
            raise bad_request('"tenantId" must be a string (a tenant id).')
        if asked is not None and tenant_id is not None and asked.lower() != tenant_id:
            raise bad_request(f'"tenantId" {asked!r} is not the tenant of this route.')
        tid = (tenant_id or asked or self.default_tenant_id).lower()
        with self.lock:
            state = self.tenants.get(tid)
        if state is None:
            return _entra_error(
                "invalid_request",
                90002,
                f"Tenant '{asked}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud. Check with your subscription "
                "administrator, this may happen if there are no active subscriptions for the "
                "tenant.",
            )
        if not state.consented:
            return _entra_error(
                "invalid_client",
                700016,
                f"Application with identifier '{app_id}' was not found in the directory "
                f"'{state.tenant_id}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You may have sent your authentication request to the wrong tenant.",
            )
        token = make_token(roles, app_id=app_id, tenant_id=state.tenant_id)
        return Response(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S}
        )

    def _admin_tenant(
        self,
        state: TenantState,
        method: str,
        parts: list[str],
        data: Any,
        *,
        scoped: bool = False,
    ) -> Response:
        """The admin routes that act on one tenant: `/_sim/<path>` for the default one, or
        `/_sim/tenants/<id>/<path>` (`scoped`)."""
        key = (method, *parts[:1])
        tenant = state.tenant
        if key == ("POST", "token"):
            # Under /tenants/<id> the route names the tenant; /_sim/token takes it from the body.
            return self._token(data, state.tenant_id if scoped else None)
        if key == ("POST", "consent") and len(parts) == 1:
            consented = data.get("consented") if isinstance(data, dict) else None
            if not isinstance(consented, bool):
                raise bad_request('Body must be {"consented": true} or {"consented": false}.')
            state.consented = consented
            return Response(200, state.summary(state is self.home))
        if key == ("GET", "requests"):
            with self.lock:
                return Response(200, {"value": list(state.requests)})
        if key == ("DELETE", "requests"):
            with self.lock:
                state.requests.clear()
            return Response(204)
        if key == ("GET", "outbox"):
            with tenant.lock:
                return Response(200, {"value": list(state.api.outbox)})
        if key == ("DELETE", "outbox"):
            with tenant.lock:
                state.api.outbox.clear()
            return Response(204)
        if key == ("GET", "state"):
            return Response(200, tenant.to_dict())
        if (
            method == "POST"
            and parts[:1] == ["groups"]
            and len(parts) == 3
            and parts[2] == "members"
        ):
            member = data.get("id") if isinstance(data, dict) else None
            if not isinstance(member, str):
                raise bad_request('Body must be {"id": "<user or group id>"}.')
            tenant.add_member(parts[1], member)
            return Response(204)
        if (
            method == "DELETE"
            and parts[:1] == ["groups"]
            and len(parts) == 4
            and parts[2] == "members"
        ):
            tenant.remove_member(parts[1], parts[3])
            return Response(204)
        if key == ("POST", "users") and len(parts) == 1:
            user = tenant.add_user(data)
            return Response(201, {"id": user.id})
        if method == "PATCH" and parts[:1] == ["skus"] and len(parts) == 2:
            fields = {"enabled", "capabilityStatus"}
            if not isinstance(data, dict) or not data or set(data) - fields:
                raise bad_request('Body must be {"enabled": N} and/or {"capabilityStatus": S}.')
            if "enabled" in data:
                sku = tenant.set_seats(parts[1], data["enabled"])
            if "capabilityStatus" in data:
                sku = tenant.set_capability(parts[1], data["capabilityStatus"])
            with tenant.lock:
                return Response(200, tenant.sku_json(sku))
        if key == ("GET", "subscriptions") and len(parts) == 1:
            return Response(200, {"value": tenant.subscription_list()})
        if key == ("POST", "subscriptions") and len(parts) == 1:
            return Response(201, tenant.add_subscription(data))
        if method == "PATCH" and parts[:1] == ["subscriptions"] and len(parts) == 2:
            return Response(200, tenant.update_subscription(parts[1], data))
        if key == ("POST", "faults"):
            fault = _parse_fault(data)
            with self.lock:
                state.faults.append(fault)
            return Response(
                201,
                {"path": fault.pattern.pattern, "status": fault.status, "count": fault.remaining},
            )
        if key == ("GET", "faults"):
            with self.lock:
                value = [
                    {
                        "path": f.pattern.pattern,
                        "status": f.status,
                        "remaining": f.remaining,
                        "mode": f.mode,
                        "probability": f.probability,
                        "fired": f.fired,
                    }
                    for f in state.faults
                ]
            return Response(200, {"value": value})
        if key == ("DELETE", "faults"):
            with self.lock:
                state.faults.clear()
            return Response(204)
        if key == ("GET", "config"):
            return Response(200, self.config(state))
        if key == ("PATCH", "config"):
            self.configure(data, state)
            return Response(200, self.config(state))
        path = "/".join(parts)
        raise GraphError(404, "Request_ResourceNotFound", f"No admin route {method} {path}.")

    # Process-wide settings: one latency model and clock for every tenant.
    _CONFIG = {
        "latencyMs": "latency_ms",
        "latencyJitterMs": "latency_jitter_ms",
        "latencyPerItemMs": "latency_per_item_ms",
        "rejectedRequestsDebit": "rejected_requests_debit",
        "timeScale": "time_scale",
    }
    # Per tenant (TenantState attributes): its buckets' sizes.
    _LIMITS = {
        "ruLimit": "ru_limit",
        "writeLimit": "write_limit",
        "tenantWriteLimit": "tenant_write_limit",
    }

    # Admin names of the Behaviour switches (simulator.tenant.Behaviour), per tenant.
    _SWITCHES = {
        "errorSkuInAssignedLicenses": "error_sku_in_assigned_licenses",
        "multiSkuError": "multi_sku_error",
        "hiddenMembers": "hidden_members",
    }

    def config(self, state: TenantState | None = None) -> dict[str, Any]:
        """The process-wide settings and the tenant's own (default: the default tenant's)."""
        state = state or self.home
        out = {name: getattr(self, attr) for name, attr in self._CONFIG.items()}
        out.update({name: getattr(state, attr) for name, attr in self._LIMITS.items()})
        out["processingDelayS"] = state.tenant.processing_delay_s
        for name, attr in self._SWITCHES.items():
            out[name] = getattr(state.tenant.behaviour, attr)
        return out

    def configure(self, data: Any, state: TenantState | None = None) -> None:
        """`PATCH /_sim/config`: change latency, limits, time scale, processing delay or a
        behaviour switch live. Limits, processing delay and switches are the tenant's (default:
        the default tenant); `PATCH /_sim/tenants/<id>/config` refuses the process-wide ones."""
        if not isinstance(data, dict):
            raise bad_request("Body must be a JSON object of settings.")
        tenant_only = state is not None and state is not self.home
        state = state or self.home
        tenant = state.tenant
        known = {*self._CONFIG, *self._LIMITS, "processingDelayS", *self._SWITCHES}
        for name, value in data.items():
            nullable = name == "latencyJitterMs"
            if name not in known:
                raise bad_request(f"Unknown setting {name!r} (known: {', '.join(sorted(known))}).")
            if tenant_only and name in self._CONFIG:
                raise bad_request(
                    f"{name} is process-wide, not per tenant: PATCH /_sim/config to change it."
                )
            if value is None and nullable:
                continue
            if name in self._SWITCHES:
                try:
                    # Checked on a copy first: a bad body changes nothing.
                    copy.copy(tenant.behaviour).set(self._SWITCHES[name], value)
                except ValueError as exc:
                    raise bad_request(f"{name}: {exc}") from exc
                continue
            if name == "rejectedRequestsDebit":
                if not isinstance(value, bool):
                    raise bad_request(f"{name} must be true or false.")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise bad_request(f"{name} must be a non-negative number.")
            if name == "timeScale" and value <= 0:
                raise bad_request("timeScale must be positive.")
        with self.lock:
            for name, value in data.items():
                if name in self._SWITCHES:
                    with tenant.lock:
                        tenant.behaviour.set(self._SWITCHES[name], value)
                elif name == "processingDelayS":
                    tenant.processing_delay_s = float(value)
                elif name in self._LIMITS:
                    setattr(state, self._LIMITS[name], int(value))
                    state.buckets.clear()
                    state.tenant_writes.clear()
                else:
                    setattr(self, self._CONFIG[name], value)

    def latency_s(self, objects: int) -> float:
        """The model's delay for an answer of `objects` objects: `latency_ms` (flat) plus
        `latency_per_item_ms` per object, spread by the jitter (seeded by the server's seed)."""
        with self.lock:
            base = self.latency_ms + self.latency_per_item_ms * objects
            if base <= 0:
                return 0.0
            jitter = self.latency_jitter_ms
            if jitter is None:
                delay = base * self.rng.uniform(0.75, 1.25)
            else:
                delay = base + self.rng.uniform(-jitter, jitter)
        return max(delay, 0.0) / 1000


class _Drop(Exception):
    """A "drop" fault: close the connection without answering."""


def start_server(
    tenant: Tenant | Sequence[Tenant], host: str = "127.0.0.1", port: int = 0, **options: Any
) -> SimServer:
    """Start a simulator in a background thread; call `.stop()` when done. Several tenants: the
    first is the default one."""
    return SimServer(tenant, host, port, **options).start()


# ---- helpers ---------------------------------------------------------------------------------


def _ru_cost(base: int, write: bool, query: str) -> int:
    """Resource units per docs/graph-facts.md: $select -1, $expand +1, $top < 20 -1, minimum 1."""
    if write:
        return 1
    options = {k.lower(): v for k, v in (p.split("=", 1) for p in query.split("&") if "=" in p)}
    options = {unquote(k): v for k, v in options.items()}
    cost = base
    if "$select" in options:
        cost -= 1
    if "$expand" in options:
        cost += 1
    top = options.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(cost, 1)


def _objects(body: Any, status: int) -> int:
    """Objects in an answer, for the latency model: a collection page's items, one for an
    entity, a batch's items summed; none for an error or an empty body."""
    if status >= 400 or not isinstance(body, dict):
        return 0
    value = body.get("value")
    if isinstance(value, list):
        return len(value)
    responses = body.get("responses")
    if isinstance(responses, list):
        return sum(
            _objects(r.get("body"), int(r.get("status") or 0))
            for r in responses
            if isinstance(r, dict)
        )
    return 1


def _too_many(wait_s: float, scope: str, information: str) -> GraphError:
    """429 with Retry-After in whole (real) seconds, at least 1, and the throttle headers."""
    retry_after = max(1, math.ceil(wait_s))
    return GraphError(
        429,
        "TooManyRequests",
        "Too many requests. Please retry again later.",
        {
            "Retry-After": str(retry_after),
            "x-ms-throttle-scope": scope,
            "x-ms-throttle-information": information,
            # Not a Graph header: the exact wait, for clients under a time scale.
            "x-ms-sim-retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
        },
    )


def _encode(body: Any) -> bytes:
    """An answer's JSON: orjson (a members page of 999 users costs the stdlib ~1 ms); the
    stdlib for what orjson refuses (non-string keys, integers past 64 bits, lone surrogates)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def _json_body(body: bytes) -> Any:
    if not body or not body.strip():
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"Unable to read JSON request payload: {exc}") from exc


def _batch_target(url: str) -> str:
    """Batch item URLs arrive as `/users/x`, `users/x`, `/v1.0/users/x` or absolute."""
    if url.lower().startswith(("http://", "https://")):
        parts = urlsplit(url)
        url = parts.path + (f"?{parts.query}" if parts.query else "")
    if not url.startswith("/"):
        url = "/" + url
    if not url.lower().startswith("/v1.0/"):
        url = "/v1.0" + url
    return url


_FAULT_MODES = ("error", "slow", "truncate", "drop")


def _parse_fault(data: Any) -> Fault:
    if not isinstance(data, dict):
        raise bad_request('Body must be {"path": "regex", "status": 503, "count": N}.')
    try:
        pattern = re.compile(str(data["path"]))
        status = int(data.get("status", 503))
        probability = float(data.get("probability", 1.0))
        # With a probability the fault keeps firing unless a count is given.
        default_count = None if "probability" in data else 1
        raw_count = data.get("count", default_count)
        count = None if raw_count is None else int(raw_count)
        delay_ms = float(data.get("delayMs", 0))
    except (KeyError, ValueError, TypeError, re.error) as exc:
        raise bad_request(f"Invalid fault: {exc}") from exc
    mode = str(data.get("mode", "error"))
    if mode not in _FAULT_MODES:
        raise bad_request(f"Fault mode must be one of {', '.join(_FAULT_MODES)}.")
    if not 400 <= status <= 599 or (count is not None and count < 1):
        raise bad_request("Fault status must be 4xx/5xx and count >= 1.")
    if not 0 < probability <= 1 or delay_ms < 0:
        raise bad_request("Fault probability must be in (0, 1] and delayMs >= 0.")
    retry_after = data.get("retryAfter", "1" if status == 429 else None)
    method = data.get("method")
    return Fault(
        pattern=pattern,
        status=status,
        remaining=count,
        method=str(method).upper() if method else None,
        code=str(data.get("code") or _STATUS_CODES.get(status, "generalException")),
        retry_after=None if retry_after is None else str(retry_after),
        mode=mode,
        probability=probability,
        delay_ms=delay_ms,
    )


def _entra_error(error: str, code: int, description: str) -> Response:
    """A 400 from Entra's token endpoint: OAuth `error` and an `AADSTS<code>` description with
    trace and correlation ids, as login.microsoftonline.com answers."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return Response(
        400,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\n"
            f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
    )


def _error_body(code: str, message: str, request_id: str, client_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_id,
            },
        }
    }


def error_response(err: GraphError, request_id: str, client_id: str) -> Response:
    return Response(
        err.status, _error_body(err.code, err.message, request_id, client_id), dict(err.headers)
    )


def _make_handler(sim: SimServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for SDK and httpx clients
        server_version = "graph-simulator"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log at /_sim/requests replaces stderr noise

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = urlsplit(self.path).path
            if path == "/v1.0" or path.startswith("/v1.0/"):
                try:
                    response = sim.graph(self.command, self.path, headers, body)
                except _Drop:
                    self._cut()
                    return
                if response.delay_s > 0:
                    time.sleep(response.delay_s)
            elif path.startswith("/_sim/"):
                request_id = sim.new_id()
                try:
                    response = sim.admin(self.command, path, body)
                except GraphError as err:
                    response = error_response(err, request_id, request_id)
            else:
                unknown = GraphError(
                    404,
                    "Request_ResourceNotFound",
                    f"Unknown path {path}; Graph lives under /v1.0.",
                )
                response = error_response(unknown, "", "")
            self._send(response)

        def _send(self, response: Response) -> None:
            if response.body is None:
                payload, ctype = b"", None
            elif isinstance(response.body, str):
                payload, ctype = response.body.encode(), "text/plain"
            else:
                payload = _encode(response.body)
                ctype = "application/json"
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if response.truncate:
                # A page that breaks mid-way: half the promised body, then the connection ends.
                self.wfile.write(payload[: len(payload) // 2])
                self._cut()
                return
            if payload:
                self.wfile.write(payload)

        def _cut(self) -> None:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _dispatch

    return Handler
