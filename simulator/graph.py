"""The Graph v1.0 routes the product uses, as plain functions of a parsed request.

Transport-free on purpose: the HTTP server and the `$batch` endpoint both call `GraphApi.handle`.
Authentication, faults, throttling and the request log live in `simulator.server`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator import odata, schema
from simulator.errors import GraphError, bad_request, unsupported_query
from simulator.tenant import Group, Sku, Tenant, User

# ---- permissions ---------------------------------------------------------------------------
# Least-privilege application permission first (docs/graph-facts.md), then the documented higher
# ones that also satisfy the call. The only table of accepted roles: change access rules here.
PERMISSIONS: dict[str, frozenset[str]] = {
    # List subscribedSkus names LicenseAssignment.Read.All (older pages: Organization.Read.All)
    # and the Organization/Directory ones; LicenseAssignment.ReadWrite.All is not listed, so it
    # does not grant this read.
    "skus.read": frozenset(
        {
            "LicenseAssignment.Read.All",
            "Organization.Read.All",
            "Organization.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        }
    ),
    "groups.read": frozenset(
        {
            "GroupMember.Read.All",
            "Group.Read.All",
            "GroupMember.ReadWrite.All",
            "Group.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        }
    ),
    "users.read": frozenset(
        {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
    ),
    "groups.assignLicense": frozenset(
        {"LicenseAssignment.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
    ),
    "users.assignLicense": frozenset(
        {"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
    ),
    "users.reprocess": frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"}),
    # Remove member (group-delete-members): least privileged GroupMember.ReadWrite.All.
    "groups.members.write": frozenset(
        {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
    ),
    "mail.send": frozenset({"Mail.Send"}),
    # List subscriptions (directory-list-subscriptions.md): Organization.Read.All least
    # privileged; Directory.Read.All and Organization.ReadWrite.All higher.
    "subscriptions.read": frozenset(
        {"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All"}
    ),
}

# Without one of these a user in a members list comes back with only @odata.type and id
# (MGD includes/limited-info.md).
USER_DETAIL_ROLES = PERMISSIONS["users.read"]
# "To list the members of a hidden membership group, the Member.Read.Hidden permission is
# required" (List group members); what Graph answers without it is Behaviour.hidden_members.
HIDDEN_MEMBERS_ROLE = "Member.Read.Hidden"
HIDDEN_MEMBERSHIP = "HiddenMembership"

USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"

_MEMBER_FILTERS = {**odata.GROUP_FILTERS, **odata.USER_FILTERS}
_MEMBER_SELECT = list(
    dict.fromkeys(
        schema.USER_DEFAULT
        + schema.USER_SELECT_ONLY
        + schema.GROUP_DEFAULT
        + schema.GROUP_SELECT_ONLY
    )
)
_USER_SELECT = list(schema.USER_DEFAULT + schema.USER_SELECT_ONLY)
_GROUP_SELECT = list(schema.GROUP_DEFAULT + schema.GROUP_SELECT_ONLY)
_USER_NAMES = frozenset(_USER_SELECT)
_GROUP_NAMES = frozenset(_GROUP_SELECT)
_USER_DEFAULT_NAMES = [n for n in schema.USER_DEFAULT if n not in schema.NEVER_RETURNED]
_USER_SEARCH = ("displayName", "mail", "userPrincipalName", "givenName", "surname")
_GROUP_SEARCH = ("displayName", "description")
_LIST_OPTIONS = {"$select", "$top", "$filter", "$count", "$search", "$orderby"}
# Full user object answered by assignLicense / reprocessLicenseAssignment.
_USER_FULL_EXTRA = ("accountEnabled", "assignedLicenses", "assignedPlans", "usageLocation")
_EXPAND_RE = re.compile(r"^members(?:\(\$select=([^)]*)\))?$", re.IGNORECASE)
_EXPAND_LIMIT = 20
# Rendered users kept for members pages (GraphApi._rendered); past this the cache starts over.
_RENDERED_LIMIT = 100_000


@dataclass
class Request:
    method: str
    path: str  # below /v1.0, percent-decoded, e.g. /groups/{id}/members
    query: str  # raw query string as sent
    headers: dict[str, str]  # lower-cased names
    body: Any
    roles: frozenset[str]
    base_url: str

    @property
    def graph_root(self) -> str:
        return f"{self.base_url}/v1.0"


@dataclass
class Response:
    status: int
    body: Any = None  # dict -> JSON, str -> text/plain, None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    # Fault injection: send the headers and part of the body, then close the connection.
    truncate: bool = False
    # The latency model's delay for this answer (the HTTP front sleeps it before sending).
    delay_s: float = 0.0


Handler = Callable[["GraphApi", Request, "re.Match[str]"], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    permission: str
    ru: int  # base resource-unit cost (docs/graph-facts.md "Throttling")
    write: bool = False


class GraphApi:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.outbox: list[dict[str, Any]] = []
        # Users as members pages render them, by properties and user id: (user, its version,
        # its entry). A user is read once per group it is in; an entry is valid while it is the
        # same object with the same version and the behaviour switches are unchanged.
        self._rendered: dict[tuple[str, ...], dict[str, tuple[User, int, dict[str, Any]]]] = {}
        self._rendered_under: tuple[Any, ...] = ()

    def match(self, method: str, path: str) -> tuple[Route, re.Match[str]]:
        allowed = False
        for route in ROUTES:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method == method:
                return route, m
            allowed = True
        if allowed:
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        segment = path.strip("/").split("/")[0] if path.strip("/") else path
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    # ---- rendering -----------------------------------------------------------------------

    def _context(self, req: Request, entity_set: str, select: list[str] | None) -> str:
        sel = f"({','.join(select)})" if select else ""
        return f"{req.graph_root}/$metadata#{entity_set}{sel}"

    def render_user(self, user: User, select: list[str] | None) -> dict[str, Any]:
        return self.tenant.user_values(user, _user_names(select))

    def render_user_full(self, user: User) -> dict[str, Any]:
        names = list(schema.USER_DEFAULT) + [
            n for n in list(user.props) + list(_USER_FULL_EXTRA) if n not in schema.USER_DEFAULT
        ]
        return {n: self.tenant.user_value(user, n) for n in dict.fromkeys(names)}

    def render_group(self, group: Group, select: list[str] | None) -> dict[str, Any]:
        if select is None:
            # Directory extension properties are returned by default (group-list.md).
            names = list(schema.GROUP_DEFAULT) + list(group.extensions)
        else:
            names = ["id", *(n for n in select if n != "id")]  # groups always carry id
        return {
            n: self.tenant.group_value(group, n) for n in names if n not in schema.NEVER_RETURNED
        }

    def render_member(
        self, req: Request, object_id: str, select: list[str] | None
    ) -> dict[str, Any]:
        return self.member_renderer(req, select)(object_id)

    def member_renderer(
        self, req: Request, select: list[str] | None
    ) -> Callable[[str], dict[str, Any]]:
        """`render_member` for one request's members: the caller's roles and the select list
        are looked at once per page, not once per member."""
        users, groups = self.tenant.users, self.tenant.groups
        user_values = self.tenant.user_values
        details = bool(req.roles & USER_DETAIL_ROLES)
        unames = _user_names(None if select is None else [n for n in select if n in _USER_NAMES])
        gsel = None if select is None else [n for n in select if n in _GROUP_NAMES]
        under = astuple(self.tenant.behaviour)
        if (
            under != self._rendered_under
            or sum(map(len, self._rendered.values())) >= _RENDERED_LIMIT
        ):
            self._rendered.clear()
            self._rendered_under = under
        cache = self._rendered.setdefault(tuple(unames), {})

        def render(object_id: str) -> dict[str, Any]:
            user = users.get(object_id)
            if user is not None:
                if not details:
                    return {"@odata.type": USER_TYPE, "id": user.id}
                hit = cache.get(object_id)
                if hit is not None and hit[0] is user and hit[1] == user.version:
                    return hit[2].copy()
                entry = {"@odata.type": USER_TYPE, "id": user.id, **user_values(user, unames)}
                cache[object_id] = (user, user.version, entry)
                return entry.copy()
            return {"@odata.type": GROUP_TYPE, **self.render_group(groups[object_id], gsel)}

        return render

    def _getter(self, object_id: str) -> odata.Getter:
        user = self.tenant.users.get(object_id)
        if user is not None:
            return lambda name: self.tenant.user_value(user, name)
        group = self.tenant.groups[object_id]
        return lambda name: self.tenant.group_value(group, name)

    def _page(
        self,
        req: Request,
        query: odata.Query,
        ids: list[str],
        render: Callable[[str], dict[str, Any]],
        context: str,
        search_props: tuple[str, ...],
    ) -> Response:
        """Filter, search, sort and page a collection of object ids."""
        selected = self._matching(query, ids, search_props)
        page = selected[query.offset : query.offset + query.top]
        body: dict[str, Any] = {"@odata.context": context}
        if query.with_count and query.offset == 0:
            body["@odata.count"] = len(selected)
        if query.offset + query.top < len(selected):
            rest = odata.next_link_query(req.query, query.offset + query.top)
            body["@odata.nextLink"] = f"{req.graph_root}{req.path}?{rest}"
        body["value"] = [render(i) for i in page]
        return Response(200, body)

    def _matching(
        self, query: odata.Query, ids: list[str], search_props: tuple[str, ...]
    ) -> list[str]:
        selected = ids
        if query.filter is not None:
            node = query.filter
            selected = [i for i in selected if odata.evaluate(node, self._getter(i))]
        if query.search:
            clauses = query.search
            selected = [
                i for i in selected if odata.matches_search(clauses, search_props, self._getter(i))
            ]
        for name, desc in reversed(query.orderby):  # stable sorts, last key first
            keyed = [(odata.sort_key(self._getter(i)(name)), i) for i in selected]
            keyed.sort(key=lambda pair: pair[0], reverse=desc)
            selected = [i for _, i in keyed]
        return selected

    def _count_text(self, req: Request, count: int) -> Response:
        if req.headers.get("consistencylevel", "").lower() != "eventual":
            raise bad_request("$count is not currently supported.")
        return Response(200, str(count))

    # ---- subscribedSkus ------------------------------------------------------------------

    def list_skus(self, req: Request, m: re.Match[str]) -> Response:
        q = odata.parse_query(
            req.query,
            req.headers,
            allowed={"$select"},
            select_props=list(schema.SKU_PROPERTIES),
            type_name="microsoft.graph.subscribedSku",
            resource="subscribedSkus",
        )
        value = [_project(self.tenant.sku_json(s), q.select) for s in self.tenant.skus.values()]
        return Response(
            200, {"@odata.context": self._context(req, "subscribedSkus", q.select), "value": value}
        )

    def get_sku(self, req: Request, m: re.Match[str]) -> Response:
        q = odata.parse_query(
            req.query,
            req.headers,
            allowed={"$select"},
            select_props=list(schema.SKU_PROPERTIES),
            type_name="microsoft.graph.subscribedSku",
        )
        sku_key = m["id"].lower()
        sku: Sku | None = None
        if sku_key.startswith(self.tenant.tenant_id + "_"):
            sku = self.tenant.skus.get(sku_key.split("_", 1)[1])
        if sku is None:
            raise GraphError(
                404, "Request_ResourceNotFound", f"Resource '{m['id']}' does not exist."
            )
        body = {
            "@odata.context": self._context(req, "subscribedSkus", q.select) + "/$entity",
            **_project(self.tenant.sku_json(sku), q.select),
        }
        return Response(200, body)

    # ---- directory/subscriptions ---------------------------------------------------------

    def list_subscriptions(self, req: Request, m: re.Match[str]) -> Response:
        q = odata.parse_query(
            req.query,
            req.headers,
            allowed={"$select"},
            select_props=list(schema.SUBSCRIPTION_PROPERTIES),
            type_name="microsoft.graph.companySubscription",
            resource="subscriptions",
        )
        value = [_project(s, q.select) for s in self.tenant.subscription_list()]
        context = self._context(req, "directory/subscriptions", q.select)
        return Response(200, {"@odata.context": context, "value": value})

    def get_subscription(self, req: Request, m: re.Match[str]) -> Response:
        q = odata.parse_query(
            req.query,
            req.headers,
            allowed={"$select"},
            select_props=list(schema.SUBSCRIPTION_PROPERTIES),
            type_name="microsoft.graph.companySubscription",
        )
        key = m["id"].lower()
        sub = next((s for s in self.tenant.subscription_list() if s["id"] == key), None)
        if sub is None:
            raise GraphError(
                404, "Request_ResourceNotFound", f"Resource '{m['id']}' does not exist."
            )
        context = self._context(req, "directory/subscriptions", q.select) + "/$entity"
        return Response(200, {"@odata.context": context, **_project(sub, q.select)})

    # ---- groups --------------------------------------------------------------------------

    def _group_query(self, req: Request, *, single: bool = False) -> odata.Query:
        return odata.parse_query(
            req.query,
            req.headers,
            allowed={"$select", "$expand"} if single else _LIST_OPTIONS | {"$expand"},
            select_props=_GROUP_SELECT,
            type_name="microsoft.graph.group",
            filters=odata.GROUP_FILTERS,
            resource="Group",
            search_props=_GROUP_SEARCH,
            default_orderby=("displayName",),
        )

    def _expand(self, req: Request, query: odata.Query) -> list[str] | None:
        """`$expand=members($select=...)`: the members' select list, or None for no expand."""
        raw = odata.split_query(req.query).get("$expand")
        if raw is None:
            return None
        m = _EXPAND_RE.match(raw.strip())
        if m is None:
            raise unsupported_query(f"Expansion of '{raw}' is not supported.")
        if query.advanced or query.search:
            raise unsupported_query("$expand is not supported with advanced queries.")
        return (
            odata.parse_select(m[1], _MEMBER_SELECT, "microsoft.graph.directoryObject")
            if m[1]
            else []
        )

    def _render_group_expanded(
        self, req: Request, group: Group, select: list[str] | None, expand: list[str] | None
    ) -> dict[str, Any]:
        body = self.render_group(group, select)
        if expand is not None:
            # $expand on directory objects returns at most 20 items and no nextLink.
            sel = expand or None
            visible = self._visible_members(req, group, group.members[:_EXPAND_LIMIT], expand=True)
            render = self.member_renderer(req, sel)
            body["members"] = [render(i) for i in visible]
        return body

    def list_groups(self, req: Request, m: re.Match[str]) -> Response:
        q = self._group_query(req)
        expand = self._expand(req, q)
        return self._page(
            req,
            q,
            list(self.tenant.groups),
            lambda i: self._render_group_expanded(req, self.tenant.groups[i], q.select, expand),
            self._context(req, "groups", q.select),
            _GROUP_SEARCH,
        )

    def count_groups(self, req: Request, m: re.Match[str]) -> Response:
        q = self._group_query(req)
        return self._count_text(
            req, len(self._matching(q, list(self.tenant.groups), _GROUP_SEARCH))
        )

    def get_group(self, req: Request, m: re.Match[str]) -> Response:
        q = self._group_query(req, single=True)
        expand = self._expand(req, q)
        group = self.tenant.get_group(m["id"])
        body = {
            "@odata.context": self._context(req, "groups", q.select) + "/$entity",
            **self._render_group_expanded(req, group, q.select, expand),
        }
        return Response(200, body)

    def list_members(self, req: Request, m: re.Match[str]) -> Response:
        group = self.tenant.get_group(m["id"])
        transitive = m["rel"].lower() == "transitivemembers"
        cast = (m["cast"] or "").lower()
        eventual = req.headers.get("consistencylevel", "").lower() == "eventual"
        if cast and not eventual:
            # Casts are advanced queries (docs/graph-facts.md, queries 1).
            raise unsupported_query(
                "OData cast on members requires the 'ConsistencyLevel: eventual' header. Refer to "
                "https://aka.ms/graph-docs/advanced-queries for more information"
            )
        q = odata.parse_query(
            req.query,
            req.headers,
            allowed=_LIST_OPTIONS,
            select_props=_MEMBER_SELECT,
            type_name="microsoft.graph.directoryObject",
            filters=_MEMBER_FILTERS,
            resource="DirectoryObject",
            search_props=_GROUP_SEARCH,
            filter_needs_aq=True,
        )
        if q.orderby and not q.advanced:
            raise unsupported_query("Sorting not supported for current query.")
        ids = self.tenant.transitive_members(group) if transitive else list(group.members)
        ids = self._visible_members(req, group, ids)
        entity_set = "directoryObjects"
        if cast == "microsoft.graph.user":
            ids, entity_set = [i for i in ids if i in self.tenant.users], "users"
        elif cast == "microsoft.graph.group":
            ids, entity_set = [i for i in ids if i in self.tenant.groups], "groups"
        if m["count"]:
            return self._count_text(req, len(self._matching(q, ids, _GROUP_SEARCH)))
        return self._page(
            req,
            q,
            ids,
            self.member_renderer(req, q.select),
            self._context(req, entity_set, q.select),
            _GROUP_SEARCH,
        )

    def _visible_members(
        self, req: Request, group: Group, ids: list[str], *, expand: bool = False
    ) -> list[str]:
        """The members this caller may list: all, unless the membership is hidden and the
        caller lacks Member.Read.Hidden (then per Behaviour.hidden_members; an `$expand` in
        "forbidden" mode shows none rather than failing the whole group list)."""
        if group.props.get("visibility") != HIDDEN_MEMBERSHIP or HIDDEN_MEMBERS_ROLE in req.roles:
            return ids
        mode = self.tenant.behaviour.hidden_members
        if mode == "forbidden" and expand:
            return []
        if mode == "forbidden":
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        if mode == "empty":
            return []
        return ids[::2]  # "partial": some members, and nothing says others are missing

    def members_with_errors(self, req: Request, m: re.Match[str]) -> Response:
        group = self.tenant.get_group(m["id"])
        q = odata.parse_query(
            req.query,
            req.headers,
            allowed={"$select", "$top", "$count"},
            select_props=_USER_SELECT,
            type_name="microsoft.graph.user",
        )
        ids = [u.id for u in self.tenant.members_with_errors(group)]
        return self._page(
            req,
            q,
            ids,
            self.member_renderer(req, q.select),
            self._context(req, "directoryObjects", q.select),
            (),
        )

    def assign_group_license(self, req: Request, m: re.Match[str]) -> Response:
        group = self.tenant.assign_group_licenses(m["id"], req.body)
        body = {
            "@odata.context": self._context(req, "groups", None) + "/$entity",
            **self.render_group(group, None),
            "assignedLicenses": group.assigned_licenses(),
            "licenseProcessingState": {"state": group.processing_state},
        }
        location = (
            f"{req.base_url}/v2/{self.tenant.tenant_id}/directoryObjects/{group.id}"
            "/Microsoft.DirectoryServices.Group"
        )
        return Response(202, body, {"Location": location})

    def remove_member(self, req: Request, m: re.Match[str]) -> Response:
        """DELETE /groups/{id}/members/{memberId}/$ref: 204, the member leaves at once; the
        group's licences leave the user when Entra processes the change (processing delay)."""
        self.tenant.remove_member(m["id"], m["member"], processed=True)
        return Response(204)

    # ---- users ---------------------------------------------------------------------------

    def _user_query(self, req: Request, *, single: bool = False) -> odata.Query:
        return odata.parse_query(
            req.query,
            req.headers,
            allowed={"$select"} if single else set(_LIST_OPTIONS),
            select_props=_USER_SELECT,
            type_name="microsoft.graph.user",
            filters=odata.USER_FILTERS,
            resource="User",
            search_props=_USER_SEARCH,
            default_orderby=("displayName", "userPrincipalName"),
        )

    def list_users(self, req: Request, m: re.Match[str]) -> Response:
        q = self._user_query(req)
        return self._page(
            req,
            q,
            list(self.tenant.users),
            lambda i: self.render_user(self.tenant.users[i], q.select),
            self._context(req, "users", q.select),
            _USER_SEARCH,
        )

    def count_users(self, req: Request, m: re.Match[str]) -> Response:
        q = self._user_query(req)
        return self._count_text(req, len(self._matching(q, list(self.tenant.users), _USER_SEARCH)))

    def get_user(self, req: Request, m: re.Match[str]) -> Response:
        q = self._user_query(req, single=True)
        user = self.tenant.get_user(m["id"])
        body = {
            "@odata.context": self._context(req, "users", q.select) + "/$entity",
            **self.render_user(user, q.select),
        }
        return Response(200, body)

    def license_details(self, req: Request, m: re.Match[str]) -> Response:
        user = self.tenant.get_user(m["id"])
        value = []
        for lic in user.assigned_licenses():
            sku = self.tenant.skus[lic["skuId"]]
            plans = [
                {
                    "servicePlanId": p["servicePlanId"],
                    "servicePlanName": p["servicePlanName"],
                    "provisioningStatus": "Disabled"
                    if p["servicePlanId"] in lic["disabledPlans"]
                    else "Success",
                    "appliesTo": p["appliesTo"],
                }
                for p in sku.service_plans
            ]
            value.append(
                {
                    "id": sku.sku_id,
                    "skuId": sku.sku_id,
                    "skuPartNumber": sku.part_number,
                    "servicePlans": plans,
                }
            )
        context = f"{req.graph_root}/$metadata#users('{user.id}')/licenseDetails"
        return Response(200, {"@odata.context": context, "value": value})

    def assign_user_license(self, req: Request, m: re.Match[str]) -> Response:
        user = self.tenant.assign_user_licenses(m["id"], req.body)
        return Response(200, self._user_entity(req, user))

    def reprocess(self, req: Request, m: re.Match[str]) -> Response:
        user = self.tenant.reprocess_user(m["id"])
        return Response(200, self._user_entity(req, user))

    def _user_entity(self, req: Request, user: User) -> dict[str, Any]:
        return {
            "@odata.context": self._context(req, "users", None) + "/$entity",
            **self.render_user_full(user),
        }

    def send_mail(self, req: Request, m: re.Match[str]) -> Response:
        user = self.tenant.find_user(m["id"])
        if user is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{m['id']}' is invalid.")
        message, save = _validate_mail(req.body)
        self.outbox.append(
            {
                "from": m["id"],
                "userId": user.id,
                "message": message,
                "saveToSentItems": save,
                "at": datetime.now(UTC).isoformat(),
            }
        )
        return Response(202)


def _user_names(select: list[str] | None) -> list[str]:
    """The user properties an answer carries: the selected ones, else the default set."""
    if select is None:
        return _USER_DEFAULT_NAMES
    return [n for n in select if n not in schema.NEVER_RETURNED]


def _project(obj: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return obj
    return {k: obj[k] for k in select if k in obj}


def _validate_mail(body: Any) -> tuple[dict[str, Any], bool]:
    """The sendMail body shape (docs/graph-facts.md "Mail"); malformed input: 400, as Exchange."""
    if isinstance(body, dict):
        # Action parameter names are case-insensitive: msgraph-sdk for Python sends
        # {"Message": ..., "SaveToSentItems": ...} and Graph accepts it.
        names = {"message": "message", "savetosentitems": "saveToSentItems"}
        body = {names.get(str(k).lower(), k): v for k, v in body.items()}
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise bad_request("Empty Payload. JSON content expected: 'message' is required.")
    message = body["message"]
    if "subject" in message and not isinstance(message["subject"], str):
        raise bad_request("message.subject must be a string.")
    content = message.get("body")
    if content is not None:
        if not isinstance(content, dict) or not isinstance(content.get("content", ""), str):
            raise bad_request("message.body must be an itemBody with 'content'.")
        if str(content.get("contentType", "Text")).lower() not in ("text", "html"):
            raise bad_request("message.body.contentType must be 'Text' or 'HTML'.")
    recipients: list[Any] = []
    for key in ("toRecipients", "ccRecipients", "bccRecipients"):
        value = message.get(key, [])
        if not isinstance(value, list):
            raise bad_request(f"message.{key} must be an array of recipients.")
        recipients.extend(value)
    if not message.get("toRecipients") and not recipients:
        raise GraphError(
            400, "ErrorInvalidRecipients", "At least one recipient isn't valid: no recipients."
        )
    for r in recipients:
        address = r.get("emailAddress", {}).get("address") if isinstance(r, dict) else None
        if not isinstance(address, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                f"At least one recipient isn't valid., Recipient '{address}' is not resolved.",
            )
    save = body.get("saveToSentItems", True)
    # The documented example sends the string "false"; Graph's JSON reader accepts it.
    if isinstance(save, str) and save.lower() in ("true", "false"):
        save = save.lower() == "true"
    if not isinstance(save, bool):
        raise bad_request("saveToSentItems must be a Boolean.")
    return message, save


_ID = r"(?P<id>[^/]+)"


def _route(
    method: str, path: str, handler: Handler, permission: str, ru: int, write: bool = False
) -> Route:
    return Route(method, re.compile(path, re.IGNORECASE), handler, permission, ru, write)


# RU costs from docs/graph-facts.md: members 3, transitiveMembers 5, subscribedSkus 3, users 2,
# other GET 1, writes 1 (+ a write).
ROUTES: list[Route] = [
    _route("GET", r"/subscribedSkus", GraphApi.list_skus, "skus.read", 3),
    _route("GET", rf"/subscribedSkus/{_ID}", GraphApi.get_sku, "skus.read", 1),
    _route(
        "GET", r"/directory/subscriptions", GraphApi.list_subscriptions, "subscriptions.read", 1
    ),
    _route(
        "GET",
        rf"/directory/subscriptions/{_ID}",
        GraphApi.get_subscription,
        "subscriptions.read",
        1,
    ),
    _route("GET", r"/groups", GraphApi.list_groups, "groups.read", 1),
    _route("GET", r"/groups/\$count", GraphApi.count_groups, "groups.read", 1),
    _route("GET", rf"/groups/{_ID}", GraphApi.get_group, "groups.read", 1),
    _route(
        "GET",
        rf"/groups/{_ID}/(?P<rel>members)(?:/(?P<cast>microsoft\.graph\.(?:user|group)))?(?P<count>/\$count)?",
        GraphApi.list_members,
        "groups.read",
        3,
    ),
    _route(
        "GET",
        rf"/groups/{_ID}/(?P<rel>transitiveMembers)(?:/(?P<cast>microsoft\.graph\.(?:user|group)))?(?P<count>/\$count)?",
        GraphApi.list_members,
        "groups.read",
        5,
    ),
    _route(
        "GET",
        rf"/groups/{_ID}/membersWithLicenseErrors",
        GraphApi.members_with_errors,
        "groups.read",
        1,
    ),
    _route(
        "POST",
        rf"/groups/{_ID}/assignLicense",
        GraphApi.assign_group_license,
        "groups.assignLicense",
        1,
        True,
    ),
    _route(
        "DELETE",
        rf"/groups/{_ID}/members/(?P<member>[^/]+)/\$ref",
        GraphApi.remove_member,
        "groups.members.write",
        1,
        True,
    ),
    _route("GET", r"/users", GraphApi.list_users, "users.read", 2),
    _route("GET", r"/users/\$count", GraphApi.count_users, "users.read", 1),
    _route("GET", rf"/users/{_ID}", GraphApi.get_user, "users.read", 2),
    _route("GET", rf"/users/{_ID}/licenseDetails", GraphApi.license_details, "users.read", 1),
    _route(
        "POST",
        rf"/users/{_ID}/assignLicense",
        GraphApi.assign_user_license,
        "users.assignLicense",
        1,
        True,
    ),
    _route(
        "POST",
        rf"/users/{_ID}/reprocessLicenseAssignment",
        GraphApi.reprocess,
        "users.reprocess",
        1,
        True,
    ),
    _route("POST", rf"/users/{_ID}/sendMail", GraphApi.send_mail, "mail.send", 1, True),
]
