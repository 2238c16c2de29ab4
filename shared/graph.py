"""The only code that talks to Microsoft Graph.

msgraph-sdk builds the requests and runs its middleware (auth, retries, redirects), but bulk
pages are read as raw JSON into the project's own small models: an SDK model object costs
milliseconds of CPU each (docs/toolchain.md), minutes on a large tenant.

Each operation declares the application permissions it needs (`@requires`); the development
credential asks for exactly that set and infra grants exactly that set.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
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
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import (
    SendMailPostRequestBody,
)
from msgraph_core import GraphClientFactory

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
]
MEMBER_SELECT = [
    "id",
    "userPrincipalName",
    "displayName",
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

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def requires(*permissions: str) -> Callable[[F], F]:
    """Declare the Graph application permissions an operation needs, next to the operation."""

    def mark(fn: F) -> F:
        REQUIRED_PERMISSIONS[fn.__name__] = permissions
        return fn

    return mark


def required_roles() -> list[str]:
    """Every permission the app needs: what infra grants and the local credential asks for."""
    return sorted({p for perms in REQUIRED_PERMISSIONS.values() for p in perms})


# Resource units: Graph's smallest per-app, per-tenant budget (tenants under 50 users) is 3,500
# per 10 s; the engine does not know the tenant's size, so it keeps reads under that. Costs are
# Microsoft's, after the -1 for $select (docs/graph-facts.md "Throttling").
READ_RU_BUDGET = 3_400
READ_RU_WINDOW_S = 10.0
RU_COST = {"list_members": 2, "list_skus": 2, "find_groups": 1}

# Graph's write limit for identity and access: 3,000 writes per app per tenant per 2 min 30 s
# (docs/graph-facts.md). Staying under it, with a margin, is cheaper than provoking 429s and
# waiting them out.
WRITE_LIMIT = 2_850
WRITE_WINDOW_S = 150.0


class SlidingWindowLimiter:
    """At most `limit` units in any `window_s` seconds: `await acquire(n)` waits until n fit.

    A sliding window also keeps every fixed window of that length under the limit.
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
        self._clock = clock
        self._sleep = sleep
        self._events: deque[tuple[float, int]] = deque()  # (time, units)
        self._used = 0
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    async def acquire(self, units: int = 1) -> None:
        async with self._lock:  # FIFO: requests keep their order
            while True:
                now = self._clock()
                while self._events and now - self._events[0][0] >= self.window_s:
                    self._used -= self._events.popleft()[1]
                # An empty window always admits one request, however costly.
                if self._used + units <= self.limit or not self._events:
                    self._events.append((now, units))
                    self._used += units
                    return
                wait = self.window_s - (now - self._events[0][0])
                self.waited_s += wait
                await self._sleep(wait)


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
    ) -> None:
        """`transport` sits under the SDK's middleware (auth, retry): it sees every attempt."""
        host = urlparse(base_url).hostname or ""
        # Kiota sends no token to hosts outside allowed_hosts, silently: name the one host we call.
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[GRAPH_SCOPE], allowed_hosts=[host]
        )
        self._http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, transport=transport)
        )
        self._adapter = GraphRequestAdapter(auth, client=self._http)
        self._base = base_url.rstrip("/")
        self._adapter.base_url = self._base
        self.sdk = GraphServiceClient(request_adapter=self._adapter)
        self.stats = GraphStats()
        # One User object per user for the run: members of several groups are parsed and held once.
        self._users: dict[str, User] = {}
        self.write_pacer = SlidingWindowLimiter(WRITE_LIMIT, WRITE_WINDOW_S)
        self.read_pacer = SlidingWindowLimiter(READ_RU_BUDGET, READ_RU_WINDOW_S)

    def _remember(self, user: User) -> User:
        self._users[user.id] = user
        return user

    async def close(self) -> None:
        await self._http.aclose()

    async def _json(self, info: RequestInformation, what: str, operation: str) -> dict[str, Any]:
        await self.read_pacer.acquire(RU_COST.get(operation, 1))
        self.stats.count(operation)
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
        while True:
            page = await self._json(self._get(url, advanced), what, operation)
            value = page.get("value")
            if not isinstance(value, list):
                raise GraphReadError(what, None, None, "page has no 'value' list")
            items.extend(value)
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return items
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
        body = await self._json(self._get(url), "subscribed SKUs", "list_skus")
        value = body.get("value")
        if not isinstance(value, list):
            raise GraphReadError("subscribed SKUs", None, None, "response has no 'value' list")
        try:
            return [_sku(item) for item in value]
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphReadError("subscribed SKUs", None, None, f"malformed SKU: {exc!r}") from exc

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
        return items

    # Without User.Read.All, Graph returns user members with only @odata.type and id
    # (docs/graph-facts.md): no UPN or userType, so guests could not be recognised.
    @requires("GroupMember.Read.All", "User.Read.All")
    async def list_members(self, group_id: str) -> Membership:
        """A group's direct members, complete. Raises GraphReadError on any failure."""
        url = (
            f"{self._base}/groups/{quote(group_id, safe='')}/members"
            f"?$select={','.join(MEMBER_SELECT)}&$top={PAGE_SIZE}"
        )
        what = f"members of group {group_id}"
        items = await self._pages(url, what, "list_members")
        users: list[User] = []
        nested: list[str] = []
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
                    users.append(known or self._remember(_user(item)))
                except (KeyError, TypeError, ValueError) as exc:
                    raise GraphReadError(what, None, None, f"malformed user: {exc!r}") from exc
            elif kind == "#microsoft.graph.group":
                nested.append(str(item.get("id")))
            elif isinstance(kind, str):
                others += 1
            else:
                raise GraphReadError(what, None, None, "a member without @odata.type")
        return Membership(
            users=tuple(users), nested_group_ids=tuple(nested), other_member_count=others
        )

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
        await self.write_pacer.acquire()
        self.stats.count("assign_group_licenses", write=True)
        info = self.sdk.groups.by_group_id(group_id).assign_license.to_post_request_information(
            body
        )
        await self._adapter.send_no_response_content_async(info, ERROR_MAP)

    @requires("User.ReadWrite.All")
    async def reprocess_user(self, user_id: str) -> None:
        await self.write_pacer.acquire()
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
        await self.write_pacer.acquire()
        self.stats.count("send_mail", write=True)
        info = self.sdk.users.by_user_id(mailbox).send_mail.to_post_request_information(body)
        await self._adapter.send_no_response_content_async(info, ERROR_MAP)


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
    """The issuer of a sign-in identity from outside this tenant, or None (decisions.md 10).

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


def _user(item: dict[str, Any]) -> User:
    # Hot path (once per member). GUIDs are compared in lower case throughout.
    # Holding is decided from licenseAssignmentStates when present: the docs do not say whether a
    # SKU in Error also appears in assignedLicenses (docs/graph-facts.md), so that list is only
    # the fallback. Only states in error (or disabled) are kept for the planner.
    raw_states = _list(item, "licenseAssignmentStates")
    states: list[LicenseState] = []
    held: set[str] = set()
    for s in raw_states:
        sku_id = s.get("skuId")
        if not isinstance(sku_id, str) or not sku_id:
            raise ValueError(f"licenseAssignmentState without skuId: {s!r}")
        sku_id = sku_id.lower()
        state = s.get("state")
        error = s.get("error")
        if state in HOLDING_STATES:
            held.add(sku_id)
        if state != "Active" or error not in (None, "None"):
            group = s.get("assignedByGroup")
            states.append(
                LicenseState(sku_id, str(group).lower() if group else None, str(state or ""), error)
            )
    if not raw_states:
        held = {str(a["skuId"]).lower() for a in _list(item, "assignedLicenses")}
    identities = _list(item, "identities")
    return User(
        id=item["id"].lower(),
        upn=item["userPrincipalName"],
        display_name=item.get("displayName") or "",
        user_type=item.get("userType"),
        creation_type=item.get("creationType"),
        external_user_state=item.get("externalUserState"),
        account_enabled=item.get("accountEnabled"),
        held_skus=frozenset(held),
        license_states=tuple(states),
        external_issuer=_external_issuer(identities) if identities else None,
    )
