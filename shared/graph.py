"""The only code that talks to Microsoft Graph.

msgraph-sdk builds the requests and runs its middleware (auth, retries, redirects), but bulk
pages are read as raw JSON into the project's own small models: an SDK model object costs
milliseconds of CPU each (docs/toolchain.md), minutes on a large tenant.

Each operation declares the application permissions it needs (`@requires`); the development
credential asks for exactly that set and infra grants exactly that set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import httpx
import orjson
from azure.core.credentials import TokenCredential
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.item.assign_license.assign_license_post_request_body import (
    AssignLicensePostRequestBody,
)
from msgraph.generated.models.assigned_license import AssignedLicense as SdkAssignedLicense
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.users.item.assign_license.assign_license_post_request_body import (
    AssignLicensePostRequestBody as UserAssignLicensePostRequestBody,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import (
    SendMailPostRequestBody,
)
from msgraph_core import GraphClientFactory

from shared import subscriptions as subscriptions_mod
from shared.credentials import GraphOriginTransport
from shared.errors import GraphReadError
from shared.model import (
    HOLDING_STATES,
    AssignedLicense,
    LicenseState,
    Membership,
    ServicePlan,
    Sku,
    User,
)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
PAGE_SIZE = 999  # Graph's maximum for groups and members
HTTP_TIMEOUT_S = 60.0

SKU_SELECT = [
    "skuId",
    "skuPartNumber",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "prepaidUnits",
    "servicePlans",
]
ODATA_SAFE = "$,()'=:/"  # $filter stays readable in logs; everything else is percent-encoded
GROUP_SELECT = [
    "id",
    "displayName",
    "securityEnabled",
    "assignedLicenses",
    "licenseProcessingState",
    "visibility",  # HiddenMembership: members are listed completely only with Member.Read.Hidden
]
HIDDEN_MEMBERSHIP = "HiddenMembership"
HIDDEN_MEMBERS_ROLE = "Member.Read.Hidden"
# No displayName: nothing the engine decides or reports uses a member's name (the UPN names
# people), and a million of them are ~30 MB of JSON read and held for nothing.
MEMBER_SELECT = [
    "id",
    "userPrincipalName",
    "userType",
    "creationType",
    "externalUserState",
    "accountEnabled",
    "assignedLicenses",
    "licenseAssignmentStates",
    "identities",
]
ERROR_MAP: dict[str, Any] = {"XXX": ODataError}

# operation name -> least-privilege application permissions (docs/graph-facts.md)
REQUIRED_PERMISSIONS: dict[str, tuple[str, ...]] = {}
# operation name -> the policy opt-in that alone uses it (shared.policy.Policy.opt_in_keys): its
# permissions are granted only when that opt-in is on (infra/graph-permissions.json optIn).
OPT_IN_OPERATIONS: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def requires(*permissions: str, opt_in: str | None = None) -> Callable[[F], F]:
    """Declare the Graph application permissions an operation needs, next to the operation.

    `opt_in`: the policy key without which the operation is never called."""

    def mark(fn: F) -> F:
        REQUIRED_PERMISSIONS[fn.__name__] = permissions
        if opt_in:
            OPT_IN_OPERATIONS[fn.__name__] = opt_in
        return fn

    return mark


def required_roles(opt_ins: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The permissions the app needs: what infra grants and the local credential asks for.

    Operations of a policy opt-in count only when `opt_ins` names it."""
    return sorted(
        {
            p
            for op, perms in REQUIRED_PERMISSIONS.items()
            if op not in OPT_IN_OPERATIONS or OPT_IN_OPERATIONS[op] in opt_ins
            for p in perms
        }
    )


def opt_in_roles() -> dict[str, list[str]]:
    """Permission -> the opt-ins that need it, for permissions only opt-ins need."""
    base = set(required_roles())
    out: dict[str, set[str]] = {}
    for op, key in OPT_IN_OPERATIONS.items():
        for p in REQUIRED_PERMISSIONS[op]:
            if p not in base:
                out.setdefault(p, set()).add(key)
    return {p: sorted(keys) for p, keys in sorted(out.items())}


# Pacing (Microsoft Graph service-specific throttling limits, identity and access,
# https://learn.microsoft.com/en-us/graph/throttling-limits; docs/graph-facts.md "Throttling").
# Resource units: the smallest per-app, per-tenant budget (tenants under 50 users) is 3,500 per
# 10 s; the engine does not know the tenant's size, so it keeps every request (writes cost 1 RU
# too) under that.
READ_RU_BUDGET = 3_400
READ_RU_WINDOW_S = 10.0
# Writes: 3,000 per app per tenant per 2 min 30 s. Staying under it, with a margin, is cheaper than
# provoking 429s and waiting them out.
WRITE_LIMIT = 2_850
WRITE_WINDOW_S = 150.0
# Graph sends x-ms-throttle-limit-percentage once an app has used more than 0.8 of a limit (the
# value goes up to 1.8). Above that the budget shrinks with every window's worth of traffic, by
# 0.8/usage, and grows back by RECOVERY per window while Graph reports nothing: the app settles
# just under 0.8 of whatever limit Graph applies (a smaller tenant, other clients of the same app,
# a loaded service) instead of learning it from 429s.
SLOW_DOWN_ABOVE = 0.8
RECOVERY = 1.1
MIN_SHARE = 0.01  # the budget never falls below this share of the documented one
RESOURCE_UNIT_HEADER = "x-ms-resource-unit"
USAGE_HEADER = "x-ms-throttle-limit-percentage"
# Base costs from Microsoft's table (the calls the engine makes; any other identity GET costs 1).
_BASE_RU = (
    (re.compile(r"/groups/[^/]+/members$"), 3),
    (re.compile(r"/groups/[^/]+/transitiveMembers$"), 5),
    (re.compile(r"^/subscribedSkus$"), 3),
    (re.compile(r"^/users$"), 2),
)
_VERSION = re.compile(r"^/(v1\.0|beta)(?=/)")


def resource_units(method: str, path: str, params: Mapping[str, str]) -> int:
    """Microsoft's documented cost of a request, the estimate booked before it is sent: base
    cost, $select -1, $expand +1, $top under 20 -1, at least 1; a write costs 1."""
    if method != "GET":
        return 1
    path = _VERSION.sub("", path).rstrip("/")
    cost = next((ru for pattern, ru in _BASE_RU if pattern.search(path)), 1)
    keys = {k.lower() for k in params}
    cost += int("$expand" in keys) - int("$select" in keys)
    top = params.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(cost, 1)


class Charge:
    """Units booked in a limiter at one time; settled to what Graph says it charged."""

    __slots__ = ("at", "live", "units")

    def __init__(self, at: float, units: int) -> None:
        self.at = at
        self.units = units
        self.live = True  # still inside the limiter's window


class SlidingWindowLimiter:
    """At most `allowed` units in any `window_s` seconds: `await acquire(n)` waits until n fit.

    `allowed` is `limit` until Graph reports pressure (`slow_down`, `throttled`), then lower until
    it recovers. Reservations are made under a thread lock and slept outside it, so one limiter
    serves every client, thread and event loop of the process, in order. A sliding window also
    keeps every fixed window of that length under the limit.
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.allowed = float(limit)
        self._floor = max(1.0, limit * MIN_SHARE)
        self._clock = clock
        self._sleep = sleep
        self._events: deque[Charge] = deque()
        self._used = 0
        self._last = -math.inf  # the latest reservation: nobody overtakes it
        self._hold_until = -math.inf
        self._pressure_at = -math.inf
        self._lock = threading.Lock()
        self.waited_s = 0.0
        self.charged = 0  # every unit booked, as settled

    def _expire(self, t: float) -> None:
        # `at + window <= t`, the same sum reserve() waits for: no float gap to loop in.
        while self._events and self._events[0].at + self.window_s <= t:
            gone = self._events.popleft()
            gone.live = False
            self._used -= gone.units

    def reserve(self, units: int = 1) -> tuple[Charge, float]:
        """Book `units` at the earliest time they fit: (the booking, seconds to wait for it)."""
        with self._lock:
            now = self._clock()
            if self.allowed < self.limit and now - self._pressure_at > 3 * self.window_s:
                self.allowed = float(self.limit)  # three quiet windows: pressure is over
            t = max(now, self._last, self._hold_until)
            self._expire(t)
            # An empty window always admits one request, however costly.
            while self._events and self._used + units > self.allowed:
                t = max(t, self._events[0].at + self.window_s)
                self._expire(t)
            charge = Charge(t, units)
            self._events.append(charge)
            self._used += units
            self.charged += units
            self._last = t
            self.waited_s += t - now
            return charge, t - now

    async def acquire(self, units: int = 1) -> Charge:
        charge, wait = self.reserve(units)
        if wait > 0:
            await self._sleep(wait)
        return charge

    def settle(self, charge: Charge, units: int) -> None:
        """Graph charged `units` for what was booked as `charge.units`."""
        with self._lock:
            delta = units - charge.units
            charge.units = units
            self.charged += delta
            if charge.live:
                self._used += delta

    def share(self) -> float:
        """How much of the documented limit the window holds."""
        with self._lock:
            return self._used / self.limit if self.limit else 0.0

    def slow_down(self, usage: float, units: int) -> None:
        """Graph reports `usage` (> 0.8) of this limit on a request of `units`: shrink the budget
        by 0.8/usage per window's worth of such answers, from no more than the window holds."""
        with self._lock:
            self._pressure_at = self._clock()
            ceiling = max(min(self.allowed, float(self._used)), self._floor)
            factor = (SLOW_DOWN_ABOVE / usage) ** min(1.0, units / ceiling)
            self.allowed = max(self._floor, ceiling * factor)

    def speed_up(self, units: int) -> None:
        """An answer without pressure: grow back by RECOVERY per window's worth of them."""
        with self._lock:
            if self.allowed < self.limit:
                step = RECOVERY ** min(1.0, units / self.allowed)
                self.allowed = min(float(self.limit), self.allowed * step)

    def throttled(self, retry_after_s: float) -> None:
        """A 429: nothing more before Retry-After, and half the budget from then on."""
        with self._lock:
            now = self._clock()
            self._pressure_at = now
            self._hold_until = max(self._hold_until, now + retry_after_s)
            self.allowed = max(self._floor, min(self.allowed, float(self._used)) / 2)


class GraphPacer:
    """Graph's budgets for one app in one tenant: resource units (reads and writes) and writes.

    One per (tenant, app) in the process (`pacer_for`): every GraphClient of that app, the run,
    `GET /api/status` and the dashboard, spends the same budget, as Graph counts it.
    """

    def __init__(
        self,
        read_budget: int = READ_RU_BUDGET,
        read_window_s: float = READ_RU_WINDOW_S,
        write_limit: int = WRITE_LIMIT,
        write_window_s: float = WRITE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.resource_units = SlidingWindowLimiter(read_budget, read_window_s, clock, sleep)
        self.writes = SlidingWindowLimiter(write_limit, write_window_s, clock, sleep)
        self.throttled = 0  # 429s seen
        self.pressure = 0  # answers that reported usage above 0.8
        self.peak_usage = 0.0

    async def admit(self, units: int, write: bool) -> Charge:
        """Wait until the request fits; its resource units are booked (writes count there too)."""
        if write:
            await self.writes.acquire(1)
        return await self.resource_units.acquire(units)

    def observe(self, charge: Charge, write: bool, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer: the RU Graph charged, its reported usage, a 429."""
        ru = headers.get(RESOURCE_UNIT_HEADER, "")
        if ru.isdigit():
            self.resource_units.settle(charge, int(ru))
        # A write's usage is of whichever of its two limits it uses most of (Graph does not say).
        busier = self.writes if write and self._write_bound() else self.resource_units
        if status == 429:
            self.throttled += 1
            # <Scope>/<Limit>/<app>/<tenant>: Write is the write quota, Read(Write) the RU one.
            scope = headers.get("x-ms-throttle-scope", "").split("/")
            kind = scope[1] if len(scope) > 1 else ""
            limiter = busier
            if kind:
                limiter = self.writes if kind == "Write" else self.resource_units
            limiter.throttled(_retry_after_s(headers.get("retry-after")))
        try:
            usage = float(headers.get(USAGE_HEADER, ""))
        except ValueError:
            usage = 0.0
        if usage > SLOW_DOWN_ABOVE:
            self.pressure += 1
            self.peak_usage = max(self.peak_usage, usage)
            busier.slow_down(usage, 1 if busier is self.writes else charge.units)
        elif status < 400:
            self.resource_units.speed_up(charge.units)
            if write:
                self.writes.speed_up(1)

    def _write_bound(self) -> bool:
        return self.writes.share() >= self.resource_units.share()


ADAPTIVE_START = 4  # concurrent requests an adaptive gate starts with


class AdaptiveGate:
    """How many reads (or groups' writes) run at once, following Graph's own signals through the
    pacer: one more after each one that finishes while Graph reports no pressure and the
    resource-unit window holds under 0.8 of the budget; half as many as soon as Graph reports
    usage above 0.8 (`x-ms-throttle-limit-percentage`) or answers 429. Never above `ceiling`
    (LICENSING_MAX_CONCURRENCY), never below 1. The pacer still decides when each request may
    go; the gate keeps the number in flight where the budget can carry it, so a tightening
    limit meets a few requests, not a burst."""

    def __init__(self, pacer: GraphPacer, ceiling: int, start: int = ADAPTIVE_START) -> None:
        self.pacer = pacer
        self.ceiling = max(1, ceiling)
        self.limit = max(1, min(start, self.ceiling))
        self.active = 0
        self.peak = self.limit  # the highest limit reached (reported by the bench and tests)
        self.backoffs = 0
        self._seen = (pacer.pressure, pacer.throttled)
        # First come, first served; a slot is handed to exactly one waiter (no wake-all: with
        # hundreds of groups waiting, waking each of them on every release cost more than the
        # requests themselves).
        self._waiters: deque[asyncio.Future[None]] = deque()

    def _adjust(self) -> None:
        seen = (self.pacer.pressure, self.pacer.throttled)
        if seen != self._seen:
            self._seen = seen
            self.limit = max(1, self.limit // 2)
            self.backoffs += 1
            return
        limiter = self.pacer.resource_units
        calm = limiter.allowed >= limiter.limit and limiter.share() < SLOW_DOWN_ABOVE
        if calm and self.limit < self.ceiling:
            self.limit += 1
            self.peak = max(self.peak, self.limit)

    def _wake(self) -> None:
        while self._waiters and self.active < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter gave up its place
                self.active += 1
                waiter.set_result(None)

    async def __aenter__(self) -> AdaptiveGate:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return self
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is counted as ours when the waiter is woken
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # woken, then cancelled: pass it on
                self.active -= 1
                self._wake()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.active -= 1
        self._adjust()
        self._wake()


def _retry_after_s(value: str | None) -> float:
    try:
        return max(float(value or 1), 0.0)
    except ValueError:
        return 1.0  # an HTTP date: rare in Graph; wait a little rather than not at all


_pacers: dict[tuple[str, str], GraphPacer] = {}
_pacers_lock = threading.Lock()


def _tenant_key(base_url: str) -> str:
    return base_url.rstrip("/").lower()


def pacer_for(base_url: str, app_id: str = "", tenant_id: str | None = None) -> GraphPacer:
    """The process's pacer for this Graph endpoint, app and tenant: Graph budgets each app in each
    tenant apart, so a throttled tenant never slows another. `app_id` "" = the process's identity;
    `tenant_id` None = the identity's own tenant (a single-tenant install)."""
    with _pacers_lock:
        key = (_tenant_key(base_url) + (f"#{tenant_id.lower()}" if tenant_id else ""), app_id)
        pacer = _pacers.get(key)
        if pacer is None:
            pacer = _pacers[key] = GraphPacer()
        return pacer


def use_pacer(base_url: str, pacer: GraphPacer, app_id: str = "") -> None:
    """Make `pacer` the process's pacer for this endpoint and app (e.g. windows scaled to a
    simulator's time scale)."""
    with _pacers_lock:
        _pacers[(_tenant_key(base_url), app_id)] = pacer


def forget_pacers() -> None:
    """Drop every pacer of the process (tests: each simulator is a new tenant)."""
    with _pacers_lock:
        _pacers.clear()


class _PacedTransport(httpx.AsyncBaseTransport):
    """Under the SDK's middleware: every attempt, retries included, waits for room in the pacer,
    and every answer tells the pacer what Graph charged and how close the app is to its limits."""

    def __init__(self, inner: httpx.AsyncBaseTransport, pacer: GraphPacer) -> None:
        self.inner = inner
        self.pacer = pacer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        write = request.method != "GET"
        units = resource_units(request.method, request.url.path, request.url.params)
        charge = await self.pacer.admit(units, write)
        response = await self.inner.handle_async_request(request)
        self.pacer.observe(charge, write, response.status_code, response.headers)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class GraphStats:
    requests: int = 0
    writes: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)

    def count(self, operation: str, write: bool = False) -> None:
        self.requests += 1
        self.writes += int(write)
        self.by_operation[operation] = self.by_operation.get(operation, 0) + 1


class GraphClient:
    """Typed access to the Graph calls the engine makes. Construct one per run; `await close()`."""

    def __init__(
        self,
        credential: TokenCredential,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        pacer: GraphPacer | None = None,
        tenant_id: str | None = None,
    ) -> None:
        """`transport` sits under the SDK's middleware (auth, retry): it sees every attempt.
        `pacer`: the process's one for this endpoint and tenant (`pacer_for`) unless given."""
        host = urlparse(base_url).hostname or ""
        # Kiota sends no token to hosts outside allowed_hosts, silently: name the one host we call.
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[GRAPH_SCOPE], allowed_hosts=[host]
        )
        self.pacer = pacer or pacer_for(base_url, tenant_id=tenant_id)
        paced = _PacedTransport(transport or httpx.AsyncHTTPTransport(), self.pacer)
        # Only the configured Graph origin is called, redirects included (shared/credentials.py);
        # outside the pacer, so a refused redirect is never paced or charged.
        guarded = GraphOriginTransport(base_url, paced)
        self._http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, transport=guarded)
        )
        self._adapter = GraphRequestAdapter(auth, client=self._http)
        self._credential = credential
        # Groups Graph said have hidden membership (visibility, read by find_groups).
        self._hidden_groups: set[str] = set()
        self._granted: frozenset[str] | None = None
        self._base = base_url.rstrip("/")
        self._adapter.base_url = self._base
        self.sdk = GraphServiceClient(request_adapter=self._adapter)
        self.stats = GraphStats()
        # One User object per user for the run: members of several groups are parsed and held once.
        self._users: dict[str, User] = {}
        # Values most users share (userType, the sets of SKUs held, ...), held once (_user).
        self._shared: dict[Any, Any] = {}

    def _remember(self, user: User) -> User:
        self._users[user.id] = user
        return user

    def forget_members(self) -> None:
        """Once every group is read: the index of users read is not needed any more (the
        memberships hold the users); on a million-user tenant it is ~50 MB."""
        self._users = {}
        self._shared = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def _json(self, info: RequestInformation, what: str, operation: str) -> dict[str, Any]:
        self.stats.count(operation)  # paced per attempt by the transport
        try:
            raw = await self._adapter.send_primitive_async(info, "bytes", ERROR_MAP)
        except ODataError as exc:
            err = exc.error
            raise GraphReadError(
                what,
                exc.response_status_code,
                err.code if err else None,
                (err.message if err else None) or str(exc),
            ) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise GraphReadError(what, None, None, f"{type(exc).__name__}: {exc}") from exc
        if not raw:
            raise GraphReadError(what, None, None, "empty response body")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise GraphReadError(what, None, None, f"response is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise GraphReadError(what, None, None, "response is not a JSON object")
        return body

    async def _pages(
        self, url: str, what: str, operation: str, advanced: bool = False
    ) -> list[dict[str, Any]]:
        """Every item of a paged collection, or GraphReadError: never a partial list."""
        items: list[dict[str, Any]] = []
        async for value in self._each_page(url, what, operation, advanced):
            items.extend(value)
        return items

    async def _each_page(
        self, url: str, what: str, operation: str, advanced: bool = False
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A paged collection's pages' items, page by page; GraphReadError on any failure, so a
        caller that keeps what it made of them only once the last page came holds no partial
        list."""
        while True:
            page = await self._json(self._get(url, advanced), what, operation)
            value = page.get("value")
            if not isinstance(value, list):
                raise GraphReadError(what, None, None, "page has no 'value' list")
            yield value
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            if not isinstance(next_link, str) or not next_link.startswith(self._base + "/"):
                # An absolute link elsewhere would send our token to another host.
                raise GraphReadError(what, None, None, f"unexpected @odata.nextLink {next_link!r}")
            url = next_link

    # -- reads ------------------------------------------------------------------------------
    # Read requests are built from plain URLs (not the SDK's request builders): expanding kiota's
    # URI templates cost ~9 ms of CPU per request, more than the page itself. They still go through
    # the SDK's adapter, so auth, retry and redirect middleware apply.

    def _get(self, url: str, advanced: bool = False) -> RequestInformation:
        info = RequestInformation(Method.GET)
        info.url = url
        info.headers.try_add("Accept", "application/json")
        if advanced:  # Graph does not carry this header over to the next page by itself
            info.headers.try_add("ConsistencyLevel", "eventual")
        return info

    @requires("LicenseAssignment.Read.All")
    async def list_skus(self) -> list[Sku]:
        url = f"{self._base}/subscribedSkus?$select={','.join(SKU_SELECT)}"
        try:
            body = await self._json(self._get(url), "subscribed SKUs", "list_skus")
        except GraphReadError as exc:
            if exc.status != 403:
                raise
            # Name the grant: LicenseAssignment.ReadWrite.All looks sufficient but List
            # subscribedSkus does not list it, and Graph's 403 does not say what is missing.
            raise GraphReadError(
                "subscribed SKUs",
                403,
                exc.code,
                f"permission denied: grant the app {', '.join(REQUIRED_PERMISSIONS['list_skus'])}"
                " (LicenseAssignment.ReadWrite.All does not include reading subscribedSkus)",
            ) from exc
        value = body.get("value")
        if not isinstance(value, list):
            raise GraphReadError("subscribed SKUs", None, None, "response has no 'value' list")
        try:
            return [_sku(item) for item in value]
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphReadError("subscribed SKUs", None, None, f"malformed SKU: {exc!r}") from exc

    # List subscriptions names Organization.Read.All as least privileged (docs/graph-facts.md);
    # LicenseAssignment.Read.All, enough for subscribedSkus, is not listed for it.
    @requires("Organization.Read.All")
    async def list_subscriptions(self) -> list[subscriptions_mod.Subscription]:
        """The tenant's companySubscriptions, complete, or GraphReadError (never a partial list)."""
        url = f"{self._base}/directory/subscriptions?$select={','.join(subscriptions_mod.SELECT)}"
        what = "subscriptions"
        try:
            items = await self._pages(url, what, "list_subscriptions")
        except GraphReadError as exc:
            if exc.status != 403:
                raise
            raise GraphReadError(
                what,
                403,
                exc.code,
                "permission denied: grant the app Organization.Read.All (List subscriptions; "
                "LicenseAssignment.Read.All does not include it)",
            ) from exc
        try:
            return [subscriptions_mod.parse(item) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphReadError(what, None, None, f"malformed subscription: {exc}") from exc

    @requires("GroupMember.Read.All")
    async def find_groups(
        self, odata_filter: str, extra_select: tuple[str, ...] = (), advanced: bool = False
    ) -> list[dict[str, Any]]:
        """Groups matching a $filter, with the properties licensing needs (raw JSON objects).

        `advanced` sends an advanced query (ConsistencyLevel: eventual + $count=true), which `ne`
        and `not` need.
        """
        select = ",".join([*GROUP_SELECT, *extra_select])
        url = (
            f"{self._base}/groups?$filter={quote(odata_filter, safe=ODATA_SAFE)}"
            f"&$select={select}&$top={PAGE_SIZE}" + ("&$count=true" if advanced else "")
        )
        what = f"groups matching {odata_filter}"
        items = await self._pages(url, what, "find_groups", advanced)
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise GraphReadError(what, None, None, "a group without an id")
            if item.get("visibility") == HIDDEN_MEMBERSHIP:
                self._hidden_groups.add(item["id"].lower())
        return items

    async def _granted_roles(self) -> frozenset[str]:
        """The application permissions our Graph token carries (its `roles` claim); empty if
        the token cannot be read, so nothing is assumed granted."""
        if self._granted is None:
            token = await asyncio.to_thread(self._credential.get_token, GRAPH_SCOPE)
            self._granted = token_roles(token.token)
        return self._granted

    # Without User.Read.All, Graph returns user members with only @odata.type and id
    # (docs/graph-facts.md): no UPN or userType, so guests could not be recognised. Listing a
    # hidden-membership group's members requires Member.Read.Hidden (List group members).
    @requires("GroupMember.Read.All", "User.Read.All", HIDDEN_MEMBERS_ROLE)
    async def list_members(self, group_id: str) -> Membership:
        """A group's direct members, complete. Raises GraphReadError on any failure."""
        url = (
            f"{self._base}/groups/{quote(group_id, safe='')}/members"
            f"?$select={','.join(MEMBER_SELECT)}&$top={PAGE_SIZE}"
        )
        what = f"members of group {group_id}"
        if (
            group_id.lower() in self._hidden_groups
            and HIDDEN_MEMBERS_ROLE not in await self._granted_roles()
        ):
            # Microsoft does not say what Graph answers without it (an error, nobody, or only
            # some members): a list read this way could be partial, so it is not read at all.
            raise GraphReadError(
                what,
                None,
                None,
                f"the group's membership is hidden (visibility {HIDDEN_MEMBERSHIP}) and the "
                f"app's token does not carry {HIDDEN_MEMBERS_ROLE}: grant it "
                "(infra/graph-permissions.json) so the member list can be complete",
            )
        users: list[User] = []
        nested: list[str] = []
        others = 0
        # Page by page: a page's JSON is dropped once its members are made (a 20,000-member group
        # never holds 20,000 dicts); the Membership exists only once the last page came.
        async for page in self._each_page(url, what, "list_members"):
            others += self._members_of(page, what, users, nested)
        return Membership(
            users=tuple(users), nested_group_ids=tuple(nested), other_member_count=others
        )

    def _members_of(
        self, items: list[dict[str, Any]], what: str, users: list[User], nested: list[str]
    ) -> int:
        """One page of members into `users` and `nested`; how many were neither."""
        others = 0
        for item in items:
            kind = item.get("@odata.type") if isinstance(item, dict) else None
            if kind == "#microsoft.graph.user":
                if not item.get("userPrincipalName"):
                    raise GraphReadError(
                        what,
                        None,
                        None,
                        f"user {item.get('id')} came back without "
                        "userPrincipalName: is User.Read.All granted?",
                    )
                try:
                    known = self._users.get(str(item.get("id", "")).lower())
                    users.append(known or self._remember(_user(item, self._shared)))
                except (KeyError, TypeError, ValueError) as exc:
                    raise GraphReadError(what, None, None, f"malformed user: {exc!r}") from exc
            elif kind == "#microsoft.graph.group":
                nested.append(str(item.get("id")))
            elif isinstance(kind, str):
                others += 1
            else:
                raise GraphReadError(what, None, None, "a member without @odata.type")
        return others

    # List users (https://learn.microsoft.com/en-us/graph/api/user-list): User.Read.All. Filtering
    # on assignedLicenses/any(x:x/skuId eq …) is an advanced query: ConsistencyLevel: eventual and
    # $count=true. Only with migration.reportOutsideGroups: it reads every holder of the SKU.
    @requires("User.Read.All")
    async def list_sku_holders(self, sku_id: str) -> list[tuple[str, str, bool]]:
        """(user id, UPN, holds it only directly) for every user assigned this SKU."""
        flt = f"assignedLicenses/any(x:x/skuId eq {_uuid(sku_id)})"
        url = (
            f"{self._base}/users?$filter={quote(flt, safe=ODATA_SAFE)}"
            f"&$select=id,userPrincipalName,licenseAssignmentStates&$count=true&$top={PAGE_SIZE}"
        )
        what = f"holders of SKU {sku_id}"
        out = []
        for item in await self._pages(url, what, "list_sku_holders", advanced=True):
            try:
                states = [
                    s
                    for s in _list(item, "licenseAssignmentStates")
                    if str(s.get("skuId", "")).lower() == sku_id
                ]
                only_direct = bool(states) and all(not s.get("assignedByGroup") for s in states)
                out.append((str(item["id"]).lower(), str(item["userPrincipalName"]), only_direct))
            except (KeyError, TypeError) as exc:
                raise GraphReadError(what, None, None, f"malformed user: {exc!r}") from exc
        return out

    # -- writes -----------------------------------------------------------------------------

    @requires("LicenseAssignment.ReadWrite.All")
    async def assign_group_licenses(
        self, group_id: str, add: list[tuple[str, list[str]]], remove: list[str]
    ) -> None:
        body = AssignLicensePostRequestBody(
            add_licenses=[
                SdkAssignedLicense(sku_id=_uuid(s), disabled_plans=[_uuid(p) for p in plans])
                for s, plans in add
            ],
            remove_licenses=[_uuid(s) for s in remove],
        )
        self.stats.count("assign_group_licenses", write=True)
        info = self.sdk.groups.by_group_id(group_id).assign_license.to_post_request_information(
            body
        )
        await self._adapter.send_no_response_content_async(info, ERROR_MAP)

    # Assign license (user): least privileged application permission LicenseAssignment.ReadWrite.All
    # (https://learn.microsoft.com/en-us/graph/api/user-assignlicense), already granted for groups.
    @requires("LicenseAssignment.ReadWrite.All", opt_in="migration.removeRedundantDirect")
    async def remove_direct_licenses(self, user_id: str, sku_ids: list[str]) -> None:
        """Remove the user's own (direct) assignments of these SKUs; group ones stay."""
        self.stats.count("remove_direct_licenses", write=True)
        body = UserAssignLicensePostRequestBody(
            add_licenses=[], remove_licenses=[_uuid(s) for s in sku_ids]
        )
        info = self.sdk.users.by_user_id(user_id).assign_license.to_post_request_information(body)
        await self._adapter.send_no_response_content_async(info, ERROR_MAP)

    # Remove member (https://learn.microsoft.com/en-us/graph/api/group-delete-members): least
    # privileged application permission GroupMember.ReadWrite.All; only with the reclaim opt-in.
    @requires("GroupMember.ReadWrite.All", opt_in="reclaim.removeDisabledMembersAfterDays")
    async def remove_group_member(self, group_id: str, user_id: str) -> None:
        self.stats.count("remove_group_member", write=True)
        info = (
            self.sdk.groups.by_group_id(group_id)
            .members.by_directory_object_id(user_id)
            .ref.to_delete_request_information()
        )
        await self._adapter.send_no_response_content_async(info, ERROR_MAP)

    @requires("User.ReadWrite.All")
    async def reprocess_user(self, user_id: str) -> None:
        self.stats.count("reprocess_user", write=True)
        info = self.sdk.users.by_user_id(
            user_id
        ).reprocess_license_assignment.to_post_request_information()
        await self._adapter.send_no_response_content_async(info, ERROR_MAP)

    @requires("Mail.Send")
    async def send_mail(self, mailbox: str, to: list[str], subject: str, html: str) -> None:
        body = SendMailPostRequestBody(
            message=Message(
                subject=subject,
                body=ItemBody(content_type=BodyType.Html, content=html),
                to_recipients=[Recipient(email_address=EmailAddress(address=a)) for a in to],
            ),
            save_to_sent_items=False,
        )
        self.stats.count("send_mail", write=True)
        info = self.sdk.users.by_user_id(mailbox).send_mail.to_post_request_information(body)
        await self._adapter.send_no_response_content_async(info, ERROR_MAP)


def token_roles(token: str) -> frozenset[str]:
    """The `roles` claim of an access token's payload (the second dot-separated part, base64url
    JSON: a Microsoft Entra JWT, or the local simulator's `sim.<claims>`); read, not verified,
    only to know what was granted. Empty when it cannot be read."""
    parts = token.split(".")
    if len(parts) < 2:
        return frozenset()
    raw = parts[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return frozenset()
    roles = claims.get("roles") if isinstance(claims, dict) else None
    if not isinstance(roles, list):
        return frozenset()
    return frozenset(r for r in roles if isinstance(r, str))


def describe_graph_error(exc: BaseException) -> str:
    """One line saying what Graph answered, for a failed write."""
    if isinstance(exc, ODataError):
        err = exc.error
        code = err.code if err else None
        message = err.message if err else None
        return f"HTTP {exc.response_status_code} {code or ''}: {message or exc}".strip()
    return f"{type(exc).__name__}: {exc}"


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


def _sku(item: dict[str, Any]) -> Sku:
    prepaid = item.get("prepaidUnits") or {}
    return Sku(
        sku_id=str(item["skuId"]).lower(),
        part_number=str(item["skuPartNumber"]),
        # Missing stays empty, so Sku.assignable fails closed and says why.
        capability_status=str(item.get("capabilityStatus") or ""),
        applies_to=str(item.get("appliesTo") or ""),
        enabled=int(prepaid.get("enabled") or 0),
        consumed=int(item.get("consumedUnits") or 0),
        service_plans=tuple(
            ServicePlan(str(p["servicePlanId"]).lower(), str(p["servicePlanName"]))
            for p in item.get("servicePlans") or ()
        ),
    )


def parse_group_licenses(raw: Any) -> tuple[AssignedLicense, ...]:
    return tuple(
        AssignedLicense(
            str(a["skuId"]).lower(), frozenset(str(p).lower() for p in a.get("disabledPlans") or ())
        )
        for a in raw or ()
    )


def parse_processing_state(raw: Any) -> str | None:
    """`licenseProcessingState`: the v1.0 metadata types it `{state}`, the group resource page a
    plain string (docs/graph-facts.md); both are accepted. Anything else raises ValueError: a shape
    we do not understand is not "no state"."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and "state" in raw:
        state = raw["state"]
        if state is None or isinstance(state, str):
            return state
    raise ValueError(f"licenseProcessingState is neither {{state}} nor a string: {raw!r}")


def _list(item: dict[str, Any], key: str) -> list[Any]:
    value = item.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"{key} is not a list of objects: {value!r}")
    return value


def _external_issuer(identities: list[dict[str, Any]]) -> str | None:
    """The issuer of a sign-in identity from outside this tenant, or None (decisions.md 16).

    A `federated` identity is issued by another organisation or a social/Microsoft account; any
    other identity's issuer is the tenant's own domain (the `userPrincipalName` identity's issuer),
    so a different issuer is external too.
    """
    own = {
        str(i.get("issuer") or "").lower()
        for i in identities
        if str(i.get("signInType") or "").lower() == "userprincipalname"
    }
    for ident in identities:
        kind = str(ident.get("signInType") or "").lower()
        issuer = str(ident.get("issuer") or "")
        if kind == "userprincipalname":
            continue
        if kind == "federated" or (own and issuer.lower() not in own):
            return issuer or kind
    return None


def _user(item: dict[str, Any], shared: dict[Any, Any] | None = None) -> User:
    # Hot path (once per member). GUIDs are compared in lower case throughout.
    # Holding is decided from licenseAssignmentStates when present: the docs do not say whether a
    # SKU in Error also appears in assignedLicenses (docs/graph-facts.md), so that list is only
    # the fallback. Only states in error (or disabled) are kept for the planner.
    raw_states = _list(item, "licenseAssignmentStates")
    states: list[LicenseState] = []
    held: set[str] = set()
    # Every state (Active ones too, with their disabled plans) of users the removal reports weigh:
    # holders of a direct assignment (migration) and disabled accounts (reclaim); shared/removals.
    keep_all = item.get("accountEnabled") is False or any(
        isinstance(s, dict) and not s.get("assignedByGroup") for s in raw_states
    )
    for s in raw_states:
        sku_id = s.get("skuId")
        if not isinstance(sku_id, str) or not sku_id:
            raise ValueError(f"licenseAssignmentState without skuId: {s!r}")
        sku_id = sku_id.lower()
        state = s.get("state")
        error = s.get("error")
        if state in HOLDING_STATES:
            held.add(sku_id)
        if keep_all or state != "Active" or error not in (None, "None"):
            group = s.get("assignedByGroup")
            stamp = s.get("lastUpdatedDateTime")
            states.append(
                LicenseState(
                    sku_id,
                    str(group).lower() if group else None,
                    str(state or ""),
                    error,
                    disabled_plans=frozenset(str(p).lower() for p in s.get("disabledPlans") or ()),
                    last_updated=stamp if isinstance(stamp, str) else None,
                )
            )
    if not raw_states:
        held = {str(a["skuId"]).lower() for a in _list(item, "assignedLicenses")}
    identities = _list(item, "identities")
    # `shared` (one per client): a million users hold a few dozen distinct values here; each
    # is kept once rather than once per user.
    one = (lambda v: v) if shared is None else (lambda v: shared.setdefault(v, v))
    return User(
        id=item["id"].lower(),
        upn=item["userPrincipalName"],
        user_type=one(item.get("userType")),
        creation_type=one(item.get("creationType")),
        external_user_state=one(item.get("externalUserState")),
        account_enabled=item.get("accountEnabled"),
        held_skus=one(frozenset(one(s) for s in held)),
        license_states=tuple(states),
        external_issuer=_external_issuer(identities) if identities else None,
    )
