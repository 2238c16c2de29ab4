"""The simulated tenant: SKUs, users, groups, and Entra's group-based licensing processing.

All mutation goes through `Tenant` methods that hold `Tenant.lock`, so the HTTP threads and the
background processing timers never see a half-updated tenant. Licensing follows docs/graph-facts.md
"What happens after": one seat per user per SKU whatever the number of sources, all-or-nothing
per user per group, and users in error stay in error until `reprocess_user`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.common import GUID_RE
from simulator import schema
from simulator.errors import GraphError, bad_request, not_found

EXTENSION_RE = re.compile(r"^extension_[0-9a-f]{32}_[A-Za-z0-9_]+$")

# licenseAssignmentState.state values ([licenseAssignmentState resource type]).
ACTIVE = "Active"
ACTIVE_WITH_ERROR = "ActiveWithError"
DISABLED = "Disabled"
ERROR = "Error"
# A successful assignment's `error` is null, as the resource page documents.
NO_ERROR: str | None = None
COUNT_VIOLATION = "CountViolation"
MUTUALLY_EXCLUSIVE = "MutuallyExclusiveViolation"
DEPENDENCY_VIOLATION = "DependencyViolation"
PROHIBITED_LOCATION = "ProhibitedInUsageLocationViolation"
OTHER = "Other"
# States whose service plans work (rules are checked against these).
SERVING = frozenset({ACTIVE, ACTIVE_WITH_ERROR})
# States that take a seat: a Disabled assignment (suspended subscription) still counts in
# consumedUnits, as the suspended SKU of Microsoft's List subscribedSkus example shows.
CONSUMING = frozenset({ACTIVE, ACTIVE_WITH_ERROR, DISABLED})
# Capability statuses under which a SKU's assignments are Disabled rather than Active.
_SUSPENDED = frozenset({"Suspended", "LockedOut", "Deleted"})

MULTI_SKU_ERROR_MODES = ("all", "short-only")
HIDDEN_MEMBERS_MODES = ("forbidden", "empty", "partial")

QUEUED = "QueuedForProcessing"
IN_PROGRESS = "ProcessingInProgress"
COMPLETE = "ProcessingComplete"

# Derived values a state export carries; accepted in a tenant file and recomputed on load.
_DERIVED_USER_KEYS = frozenset({"assignedLicenses", "assignedPlans", "licenseAssignmentStates"})
_DERIVED_GROUP_KEYS = frozenset({"licenseProcessingState", "hasMembersWithLicenseErrors"})
_USER_KEYS = frozenset(schema.USER_DEFAULT + schema.USER_SELECT_ONLY) | {"directLicenses"}
_GROUP_KEYS = frozenset(schema.GROUP_DEFAULT + schema.GROUP_SELECT_ONLY) | {
    "members",
    "extensions",
}
# Simulator-only SKU settings (never returned by /subscribedSkus): licence error rules.
_SKU_RULE_KEYS = frozenset({"mutuallyExclusiveWith", "prohibitedUsageLocations"})
# Simulator-only service plan rules (never returned): conflicting plans and an add-on's
# prerequisite plans ("Identify and resolve license assignment problems for a group").
_PLAN_RULE_KEYS = frozenset({"mutuallyExclusiveWith", "prerequisitePlans"})
_SKU_KEYS = frozenset(schema.SKU_PROPERTIES) | {"enabledAtLoad"} | _SKU_RULE_KEYS
_TENANT_KEYS = {
    "tenantId",
    "displayName",
    "skus",
    "users",
    "groups",
    "defaultUsageLocation",
    "subscriptions",
}
# companySubscription properties (companySubscription resource type); `nextLifecycleInDays` is
# simulator-only: the lifecycle date as days from when the tenant is loaded (demo files stay
# current).
SUBSCRIPTION_STATUSES = ("Enabled", "Warning", "Suspended", "Deleted", "LockedOut")
_SUBSCRIPTION_KEYS = frozenset(schema.SUBSCRIPTION_PROPERTIES)  # what Graph returns, as is
_SUBSCRIPTION_SIM_KEYS = frozenset({"nextLifecycleInDays"})
# A tenant file without subscriptions gets one per SKU, renewing this long after loading.
DERIVED_SUBSCRIPTION_DAYS = 365
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_PREPAID_KEYS = ("enabled", "warning", "suspended", "lockedOut")
# User properties that `Tenant.user_value` derives rather than reads from props.
_DERIVED_USER_VALUES = frozenset(
    {"id", "assignedLicenses", "licenseAssignmentStates", "assignedPlans"}
)
_ABSENT = object()


@dataclass
class Behaviour:
    """Where Microsoft's docs leave a behaviour open, each possibility is a switch
    (docs/simulator.md "Switches" names the page behind each one)."""

    # Does a SKU whose group assignment is in Error appear in the user's assignedLicenses?
    error_sku_in_assigned_licenses: bool = False
    # A multi-SKU group one SKU of which runs short: "all" = every SKU of the group carries
    # CountViolation; "short-only" = the short SKU carries CountViolation, the others Other.
    multi_sku_error: str = "all"
    # Listing a HiddenMembership group's members without Member.Read.Hidden: "forbidden" =
    # 403; "empty" = 200 with no members; "partial" = 200 with some members, silently.
    hidden_members: str = "forbidden"

    def set(self, name: str, value: Any) -> None:
        """Change one switch, checking its value (the admin API and the CLI use this)."""
        if name == "error_sku_in_assigned_licenses":
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
        elif name == "multi_sku_error":
            if value not in MULTI_SKU_ERROR_MODES:
                raise ValueError(f"{name} must be one of {', '.join(MULTI_SKU_ERROR_MODES)}")
        elif name == "hidden_members":
            if value not in HIDDEN_MEMBERS_MODES:
                raise ValueError(f"{name} must be one of {', '.join(HIDDEN_MEMBERS_MODES)}")
        else:
            raise ValueError(f"unknown switch {name!r}")
        setattr(self, name, value)


class TenantError(ValueError):
    """A tenant file that cannot be loaded; the message names the path and the problem."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Sku:
    sku_id: str
    part_number: str
    applies_to: str
    capability_status: str
    prepaid: dict[str, int]
    enabled_at_load: int
    service_plans: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    # Simulator-only service plan rules (never returned): plan id -> plan ids it cannot be
    # held with, and add-on plan id -> prerequisite plan ids (any one of them is enough).
    plan_conflicts: dict[str, list[str]] = field(default_factory=dict)
    plan_prerequisites: dict[str, list[str]] = field(default_factory=dict)
    # SKUs a user cannot hold together with this one (either side may name the other).
    mutually_exclusive_with: list[str] = field(default_factory=list)
    # ISO 3166 alpha-2 usage locations where this SKU's services are not available.
    prohibited_usage_locations: list[str] = field(default_factory=list)

    def plan_ids(self) -> set[str]:
        return {str(p["servicePlanId"]) for p in self.service_plans}

    def enabled_plans(self, disabled: Sequence[str]) -> set[str]:
        return self.plan_ids() - set(disabled)

    def plan_name(self, plan_id: str) -> str:
        return next(
            (
                str(p["servicePlanName"])
                for p in self.service_plans
                if p["servicePlanId"] == plan_id
            ),
            plan_id,
        )


@dataclass(slots=True, frozen=True)  # replaced, never changed: User.version sees every change
class LicenseState:
    sku_id: str
    assigned_by_group: str | None
    disabled_plans: list[str]
    state: str
    error: str | None
    last_updated: str

    def to_json(self) -> dict[str, Any]:
        return {
            "assignedByGroup": self.assigned_by_group,
            "disabledPlans": list(self.disabled_plans),
            "error": self.error,
            "lastUpdatedDateTime": self.last_updated,
            "skuId": self.sku_id,
            "state": self.state,
        }


class PropsSource:
    """Where a generated user's properties come from (see `simulator.generate`): computed on
    demand from compact arrays instead of a dict per user, so a million users fit in memory."""

    def props(self, index: int) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def upn(self, index: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def find_upn(self, upn_lower: str) -> str | None:  # pragma: no cover - interface
        """The object id of the generated user with this UPN (lower-cased), if any."""
        raise NotImplementedError


_NO_DIRECT: dict[str, list[str]] = {}  # shared by users without direct licences: never mutated


class User:
    """A user. `props` are plain data; generated users compute them on demand (read-only).

    `version` counts replacements of `states`, the only part of a user that changes after it is
    loaded: the members pages' cache of rendered users (simulator.graph) checks it."""

    __slots__ = ("_index", "_props", "_source", "_states", "direct", "id", "version")

    def __init__(
        self,
        id: str,
        props: dict[str, Any] | None = None,
        direct: dict[str, list[str]] | None = None,
        states: Sequence[LicenseState] = (),
        *,
        source: PropsSource | None = None,
        index: int = -1,
    ) -> None:
        self.id = id
        self._props = props
        self._source = source
        self._index = index
        self.direct: dict[str, list[str]] = _NO_DIRECT if direct is None else direct
        self.version = 0
        self._states: Sequence[LicenseState] = states

    @property
    def states(self) -> Sequence[LicenseState]:
        return self._states

    @states.setter
    def states(self, states: Sequence[LicenseState]) -> None:
        self._states = states
        self.version += 1

    @property
    def props(self) -> dict[str, Any]:
        if self._props is not None:
            return self._props
        assert self._source is not None
        return self._source.props(self._index)

    @property
    def upn(self) -> str:
        if self._props is None and self._source is not None:
            return self._source.upn(self._index)
        return str(self.props["userPrincipalName"])

    def active_skus(self) -> set[str]:
        """SKUs that take a seat (Active, ActiveWithError, Disabled): one per SKU."""
        return {s.sku_id for s in self.states if s.state in CONSUMING}

    def assigned_licenses(self, with_errors: bool = False) -> list[dict[str, Any]]:
        """SKUs with an assignment that takes a seat (`with_errors`: Error ones too, see
        Behaviour); disabledPlans = plans disabled by every such source."""
        result: dict[str, set[str] | None] = {}
        for s in self.states:
            if s.state not in CONSUMING and not (with_errors and s.state == ERROR):
                continue
            plans = set(s.disabled_plans)
            seen = result.get(s.sku_id)
            # A plan stays disabled only if no active source enables it.
            result[s.sku_id] = plans if seen is None else seen & plans
        return [{"disabledPlans": sorted(p or ()), "skuId": k} for k, p in result.items()]


@dataclass
class Group:
    id: str
    props: dict[str, Any]
    extensions: dict[str, Any] = field(default_factory=dict)
    licenses: dict[str, list[str]] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    processing_state: str = COMPLETE
    # The same ids as `members`, for O(1) membership tests on groups of 20k members.
    member_set: set[str] = field(default_factory=set)

    def add(self, member_id: str) -> None:
        self.members.append(member_id)
        self.member_set.add(member_id)

    def discard(self, member_id: str) -> None:
        if member_id in self.member_set:
            self.member_set.discard(member_id)
            self.members.remove(member_id)

    @property
    def security_enabled(self) -> bool:
        return bool(self.props.get("securityEnabled"))

    def assigned_licenses(self) -> list[dict[str, Any]]:
        return [{"disabledPlans": list(p), "skuId": k} for k, p in self.licenses.items()]


class Tenant:
    """The whole directory. Build with `from_file` / `from_dict`."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        # The organization's name (a simulator that serves several tenants lists them by it).
        self.display_name: str | None = None
        self.skus: dict[str, Sku] = {}
        self.users: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        self.lock = threading.RLock()
        self.processing_delay_s = 0.0
        # Group licensing uses this for users without a usageLocation (docs/graph-facts.md);
        # None = no location rules for them.
        self.default_usage_location: str | None = None
        # Generated tenants: computes users' properties and finds them by UPN.
        self.props_source: PropsSource | None = None
        self._by_upn: dict[str, str] = {}
        self._consumed: dict[str, int] = {}
        self._loading = False
        self._timers: set[threading.Timer] = set()
        self.behaviour = Behaviour()
        # Service plan rules of every SKU: plan -> conflicting plans (both ways), and add-on
        # plan -> prerequisite plans (one enabled is enough).
        self._plan_conflicts: dict[str, set[str]] = {}
        self._prerequisites: dict[str, set[str]] = {}
        # companySubscription objects by id; None: derived from the SKUs (one each) when read.
        self.subscriptions: dict[str, dict[str, Any]] | None = None
        self.loaded_at = datetime.now(UTC).replace(microsecond=0)

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> Tenant:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TenantError(f"{p}: cannot read tenant file: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise TenantError(f"{p}: not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(data)
        except TenantError as exc:
            raise TenantError(f"{p}: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Any) -> Tenant:
        if not isinstance(data, dict):
            raise TenantError("$: a tenant must be a JSON object")
        _check_keys(data, _TENANT_KEYS, "$")
        tenant = cls(_guid(data.get("tenantId"), "$.tenantId"))
        if data.get("displayName") is not None:
            tenant.display_name = _str(data["displayName"], "$.displayName")
        if data.get("defaultUsageLocation") is not None:
            tenant.default_usage_location = _country(
                data["defaultUsageLocation"], "$.defaultUsageLocation"
            )
        for i, raw in enumerate(_list(data.get("skus", []), "$.skus")):
            tenant._load_sku(raw, f"$.skus[{i}]")
        tenant._check_sku_rules()
        if "subscriptions" in data:
            tenant.subscriptions = {}
            for i, raw in enumerate(_list(data["subscriptions"], "$.subscriptions")):
                sub = tenant._subscription(raw, f"$.subscriptions[{i}]")
                if sub["id"] in tenant.subscriptions:
                    raise TenantError(f"$.subscriptions[{i}].id: duplicate id '{sub['id']}'")
                tenant.subscriptions[sub["id"]] = sub
        for i, raw in enumerate(_list(data.get("users", []), "$.users")):
            tenant._load_user(raw, f"$.users[{i}]")
        raw_groups = _list(data.get("groups", []), "$.groups")
        for i, raw in enumerate(raw_groups):
            tenant._load_group(raw, f"$.groups[{i}]")
        for i, raw in enumerate(raw_groups):
            tenant._load_members(raw, f"$.groups[{i}]")
        tenant._initial_processing()
        return tenant

    def _load_sku(self, raw: Any, where: str) -> None:
        raw = _obj(raw, where)
        _check_keys(raw, _SKU_KEYS, where)
        sku_id = _guid(raw.get("skuId"), f"{where}.skuId")
        if sku_id in self.skus:
            raise TenantError(f"{where}.skuId: duplicate skuId '{sku_id}'")
        part = _str(raw.get("skuPartNumber"), f"{where}.skuPartNumber")
        if any(s.part_number.lower() == part.lower() for s in self.skus.values()):
            raise TenantError(f"{where}.skuPartNumber: duplicate skuPartNumber '{part}'")
        prepaid_raw = _obj(raw.get("prepaidUnits", {}), f"{where}.prepaidUnits")
        _check_keys(prepaid_raw, set(_PREPAID_KEYS), f"{where}.prepaidUnits")
        prepaid = {
            k: _count(prepaid_raw.get(k, 0), f"{where}.prepaidUnits.{k}") for k in _PREPAID_KEYS
        }
        at_load = _count(raw.get("enabledAtLoad", prepaid["enabled"]), f"{where}.enabledAtLoad")
        plans: list[dict[str, Any]] = []
        conflicts: dict[str, list[str]] = {}
        prerequisites: dict[str, list[str]] = {}
        for j, p in enumerate(_list(raw.get("servicePlans", []), f"{where}.servicePlans")):
            pw = f"{where}.servicePlans[{j}]"
            p = _obj(p, pw)
            _check_keys(
                p,
                {"servicePlanId", "servicePlanName", "appliesTo", "provisioningStatus"}
                | _PLAN_RULE_KEYS,
                pw,
            )
            plan_id = _guid(p.get("servicePlanId"), f"{pw}.servicePlanId")
            plans.append(
                {
                    "servicePlanId": plan_id,
                    "servicePlanName": _str(p.get("servicePlanName"), f"{pw}.servicePlanName"),
                    "provisioningStatus": str(p.get("provisioningStatus", "Success")),
                    "appliesTo": str(p.get("appliesTo", "User")),
                }
            )
            for key, rules in (
                ("mutuallyExclusiveWith", conflicts),
                ("prerequisitePlans", prerequisites),
            ):
                if key in p:
                    rules[plan_id] = [
                        _guid(x, f"{pw}.{key}[{k}]")
                        for k, x in enumerate(_list(p[key], f"{pw}.{key}"))
                    ]
        extra = {k: raw[k] for k in ("accountName", "accountId", "subscriptionIds") if k in raw}
        exclusive = [
            _guid(x, f"{where}.mutuallyExclusiveWith[{j}]")
            for j, x in enumerate(
                _list(raw.get("mutuallyExclusiveWith", []), f"{where}.mutuallyExclusiveWith")
            )
        ]
        prohibited = [
            _country(x, f"{where}.prohibitedUsageLocations[{j}]")
            for j, x in enumerate(
                _list(raw.get("prohibitedUsageLocations", []), f"{where}.prohibitedUsageLocations")
            )
        ]
        self.skus[sku_id] = Sku(
            sku_id=sku_id,
            part_number=part,
            applies_to=_choice(raw.get("appliesTo", "User"), ("User", "Company"), where),
            capability_status=_choice(
                raw.get("capabilityStatus", "Enabled"),
                ("Enabled", "Warning", "Suspended", "Deleted", "LockedOut"),
                f"{where}.capabilityStatus",
            ),
            prepaid=prepaid,
            enabled_at_load=at_load,
            service_plans=plans,
            extra=extra,
            mutually_exclusive_with=exclusive,
            prohibited_usage_locations=prohibited,
            plan_conflicts=conflicts,
            plan_prerequisites=prerequisites,
        )
        self._consumed[sku_id] = 0

    def _check_sku_rules(self) -> None:
        all_plans = {p for sku in self.skus.values() for p in sku.plan_ids()}
        for i, sku in enumerate(self.skus.values()):
            for j, other in enumerate(sku.mutually_exclusive_with):
                if other not in self.skus or other == sku.sku_id:
                    raise TenantError(
                        f"$.skus[{i}].mutuallyExclusiveWith[{j}]: '{other}' is not another "
                        "skuId in $.skus"
                    )
            for key, rules in (
                ("mutuallyExclusiveWith", sku.plan_conflicts),
                ("prerequisitePlans", sku.plan_prerequisites),
            ):
                for plan_id, others in rules.items():
                    k = next(
                        n for n, p in enumerate(sku.service_plans) if p["servicePlanId"] == plan_id
                    )
                    for m, other in enumerate(others):
                        if other not in all_plans or other == plan_id:
                            raise TenantError(
                                f"$.skus[{i}].servicePlans[{k}].{key}[{m}]: '{other}' is not "
                                "another servicePlanId of a SKU in $.skus"
                            )
            for plan_id, others in sku.plan_conflicts.items():
                for other in others:  # the rule applies both ways
                    self._plan_conflicts.setdefault(plan_id, set()).add(other)
                    self._plan_conflicts.setdefault(other, set()).add(plan_id)
            for plan_id, others in sku.plan_prerequisites.items():
                self._prerequisites[plan_id] = set(others)

    def exclusive_pairs(self, sku_id: str) -> set[str]:
        """SKUs that cannot be held with `sku_id` (the rule applies both ways)."""
        sku = self.skus[sku_id]
        out = set(sku.mutually_exclusive_with)
        out |= {s.sku_id for s in self.skus.values() if sku_id in s.mutually_exclusive_with}
        return out

    def usage_location(self, user: User) -> str | None:
        """The location licensing uses: the user's own, else the tenant's (never written)."""
        own = user.props.get("usageLocation")
        return str(own) if own else self.default_usage_location

    def _load_user(self, raw: Any, where: str) -> None:
        raw = _obj(raw, where)
        _check_keys(raw, _USER_KEYS | _DERIVED_USER_KEYS, where, allow_extensions=True)
        uid = _guid(raw.get("id"), f"{where}.id")
        self._check_new_id(uid, f"{where}.id")
        upn = _str(raw.get("userPrincipalName"), f"{where}.userPrincipalName")
        if self.find_user(upn) is not None:
            raise TenantError(f"{where}.userPrincipalName: duplicate userPrincipalName '{upn}'")
        props = {
            k: v
            for k, v in raw.items()
            if k in _USER_KEYS and k not in ("id", "directLicenses") and k not in _DERIVED_USER_KEYS
        }
        props.update({k: v for k, v in raw.items() if k.startswith(schema.EXTENSION_PREFIX)})
        props.setdefault("displayName", upn.split("@")[0])
        props.setdefault("mail", None)
        props.setdefault("userType", "Member")
        props.setdefault("accountEnabled", True)
        _choice(props["userType"], ("Member", "Guest"), f"{where}.userType")
        _choice(
            props.get("creationType"),
            (None, "Invitation", "LocalAccount", "EmailVerified", "SelfServiceSignUp"),
            f"{where}.creationType",
        )
        _choice(
            props.get("externalUserState"),
            (None, "PendingAcceptance", "Accepted"),
            f"{where}.externalUserState",
        )
        if not isinstance(props["accountEnabled"], bool):
            raise TenantError(f"{where}.accountEnabled: must be true or false")
        user = User(id=uid, props=props, direct={})
        for j, lic in enumerate(_list(raw.get("directLicenses", []), f"{where}.directLicenses")):
            sku_id, plans = self._license(lic, f"{where}.directLicenses[{j}]")
            if sku_id in user.direct:
                raise TenantError(f"{where}.directLicenses[{j}].skuId: duplicate skuId '{sku_id}'")
            user.direct[sku_id] = plans
        self.users[uid] = user
        self._by_upn[upn.lower()] = uid

    def _load_group(self, raw: Any, where: str) -> None:
        raw = _obj(raw, where)
        _check_keys(raw, _GROUP_KEYS | _DERIVED_GROUP_KEYS, where, allow_extensions=True)
        gid = _guid(raw.get("id"), f"{where}.id")
        self._check_new_id(gid, f"{where}.id")
        props = {
            k: v
            for k, v in raw.items()
            if k in _GROUP_KEYS
            and k not in ("id", "members", "extensions", "assignedLicenses")
            and k not in _DERIVED_GROUP_KEYS
        }
        _str(raw.get("displayName"), f"{where}.displayName")
        props.setdefault("description", None)
        props.setdefault("securityEnabled", True)
        props.setdefault("mailEnabled", False)
        props.setdefault("groupTypes", [])
        for key in ("securityEnabled", "mailEnabled"):
            if not isinstance(props[key], bool):
                raise TenantError(f"{where}.{key}: must be true or false")
        _choice(
            props.get("visibility"),
            (None, "Public", "Private", "HiddenMembership"),
            f"{where}.visibility",
        )
        extensions = dict(_obj(raw.get("extensions", {}), f"{where}.extensions"))
        # Extension values may also be written as top-level properties, as Graph returns them.
        extensions.update({k: v for k, v in raw.items() if k.startswith(schema.EXTENSION_PREFIX)})
        for key in extensions:
            if not EXTENSION_RE.match(key):
                raise TenantError(
                    f"{where}.extensions.{key}: not a directory extension name "
                    "(extension_<appIdWithoutDashes>_<name>)"
                )
        group = Group(id=gid, props=props, extensions=extensions)
        lic_where = f"{where}.assignedLicenses"
        for j, lic in enumerate(_list(raw.get("assignedLicenses", []), lic_where)):
            sku_id, plans = self._license(lic, f"{lic_where}[{j}]")
            if sku_id in group.licenses:
                raise TenantError(f"{lic_where}[{j}].skuId: duplicate skuId '{sku_id}'")
            group.licenses[sku_id] = plans
        if group.licenses and not group.security_enabled:
            raise TenantError(
                f"{lic_where}: only security-enabled groups can carry licences "
                "(securityEnabled is false)"
            )
        self.groups[gid] = group

    def _load_members(self, raw: dict[str, Any], where: str) -> None:
        group = self.groups[str(raw["id"]).lower()]
        for j, member in enumerate(_list(raw.get("members", []), f"{where}.members")):
            mw = f"{where}.members[{j}]"
            mid = _guid(member, mw)
            if mid not in self.users and mid not in self.groups:
                raise TenantError(f"{mw}: unknown member id '{mid}' (no such user or group)")
            if mid == group.id:
                raise TenantError(f"{mw}: a group cannot be a member of itself")
            if mid in group.member_set:
                raise TenantError(f"{mw}: duplicate member id '{mid}'")
            group.add(mid)

    def _license(self, raw: Any, where: str) -> tuple[str, list[str]]:
        raw = _obj(raw, where)
        _check_keys(raw, {"skuId", "disabledPlans"}, where)
        sku_id = _guid(raw.get("skuId"), f"{where}.skuId")
        sku = self.skus.get(sku_id)
        if sku is None:
            raise TenantError(f"{where}.skuId: unknown skuId '{sku_id}' (not in $.skus)")
        plans = [
            _guid(p, f"{where}.disabledPlans[{k}]")
            for k, p in enumerate(_list(raw.get("disabledPlans", []), f"{where}.disabledPlans"))
        ]
        for k, plan in enumerate(plans):
            if plan not in sku.plan_ids():
                raise TenantError(
                    f"{where}.disabledPlans[{k}]: '{plan}' is not a service plan of "
                    f"{sku.part_number}"
                )
        return sku_id, plans

    def _check_new_id(self, object_id: str, where: str) -> None:
        if object_id in self.users or object_id in self.groups:
            raise TenantError(f"{where}: duplicate object id '{object_id}'")

    def _initial_processing(self) -> None:
        """Entra's processing as it ran when the seats were `enabledAtLoad`."""
        self._loading = True
        try:
            stamp = now_iso()
            for user in self.users.values():
                if not user.direct:
                    continue  # most users of a generated tenant: no state list at all
                # Direct licences in the file are already assigned: they may over-consume.
                user.states = [
                    LicenseState(sku, None, list(plans), ACTIVE, NO_ERROR, stamp)
                    for sku, plans in user.direct.items()
                ]
                for sku in user.active_skus():
                    self._consumed[sku] += 1
            for group in self.groups.values():
                self._process_group(group)
        finally:
            self._loading = False

    # ---- lookups -------------------------------------------------------------------------

    def find_user(self, key: str) -> User | None:
        """By object id or userPrincipalName (case-insensitive), as /users/{id|upn} does."""
        lowered = key.lower()
        uid = lowered if lowered in self.users else self._by_upn.get(lowered)
        if uid is None and self.props_source is not None:
            uid = self.props_source.find_upn(lowered)
        return self.users.get(uid) if uid else None

    def get_user(self, key: str) -> User:
        user = self.find_user(key)
        if user is None:
            raise not_found(key)
        return user

    def get_group(self, key: str) -> Group:
        group = self.groups.get(key.lower())
        if group is None:
            raise not_found(key)
        return group

    def find_sku(self, key: str) -> Sku | None:
        """By skuId, `<tenantId>_<skuId>` or skuPartNumber."""
        lowered = key.lower()
        if lowered.startswith(self.tenant_id + "_"):
            lowered = lowered[len(self.tenant_id) + 1 :]
        if lowered in self.skus:
            return self.skus[lowered]
        return next((s for s in self.skus.values() if s.part_number.lower() == lowered), None)

    def consumed(self, sku_id: str) -> int:
        return self._consumed.get(sku_id, 0)

    def free(self, sku_id: str) -> int:
        sku = self.skus[sku_id]
        capacity = sku.enabled_at_load if self._loading else sku.prepaid["enabled"]
        return capacity - self.consumed(sku_id)

    def direct_user_members(self, group: Group) -> Iterator[User]:
        for mid in group.members:
            user = self.users.get(mid)
            if user is not None:
                yield user

    def transitive_members(self, group: Group) -> list[str]:
        """Every member id reachable through nested groups, once, in breadth-first order."""
        seen: dict[str, None] = {}
        queue = deque(group.members)
        while queue:
            mid = queue.popleft()
            if mid in seen or mid == group.id:
                continue
            seen[mid] = None
            nested = self.groups.get(mid)
            if nested is not None:
                queue.extend(nested.members)
        return list(seen)

    def members_with_errors(self, group: Group) -> list[User]:
        return [
            u
            for u in self.direct_user_members(group)
            if any(
                s.assigned_by_group == group.id and s.state in (ERROR, ACTIVE_WITH_ERROR)
                for s in u.states
            )
        ]

    # ---- licensing -----------------------------------------------------------------------

    def _set_states(self, user: User, states: list[LicenseState]) -> None:
        """Replace a user's states, keeping consumedUnits (users with a seat) exact."""
        before = user.active_skus()
        user.states = states
        after = user.active_skus()
        for sku in before - after:
            self._consumed[sku] -= 1
        for sku in after - before:
            self._consumed[sku] += 1

    def _group_rules(self, group: Group) -> tuple[frozenset[str], dict[str, set[str]], bool]:
        """Locations where the group's licences are prohibited, each SKU's exclusive SKUs, and
        whether any service plan rule (conflict, prerequisite) exists in the tenant."""
        prohibited: set[str] = set()
        for sku_id in group.licenses:
            prohibited.update(self.skus[sku_id].prohibited_usage_locations)
        exclusive: dict[str, set[str]] = {}
        if any(s.mutually_exclusive_with for s in self.skus.values()):
            exclusive = {k: self.exclusive_pairs(k) for k in group.licenses}
        plan_rules = bool(self._plan_conflicts or self._prerequisites)
        return frozenset(prohibited), exclusive, plan_rules

    def _plans(self, states: Sequence[LicenseState]) -> set[str]:
        """Service plans that work for the user through these states (disabledPlans honoured)."""
        out: set[str] = set()
        for s in states:
            if s.state in SERVING:
                out |= self.skus[s.sku_id].enabled_plans(s.disabled_plans)
        return out

    def _licence_plans(self, licenses: dict[str, list[str]]) -> dict[str, set[str]]:
        return {k: self.skus[k].enabled_plans(p) for k, p in licenses.items()}

    def _plan_conflict(self, wanted: dict[str, set[str]], held: set[str]) -> str | None:
        """A message if a wanted plan conflicts with a held one or with a plan of another
        wanted SKU ("Conflicting service plans": per service plan, disabled plans excluded)."""
        if not self._plan_conflicts:
            return None
        for sku_id, plans in wanted.items():
            others = held.union(*(p for k, p in wanted.items() if k != sku_id))
            for plan in sorted(plans):
                clash = self._plan_conflicts.get(plan, set()) & others
                if clash:
                    sku = self.skus[sku_id]
                    return (
                        f"The service plan {sku.plan_name(plan)} of {sku.part_number} conflicts "
                        f"with {self._any_plan_name(sorted(clash)[0])}"
                    )
        return None

    def _missing_prerequisite(self, wanted: set[str], available: set[str]) -> str | None:
        """A message if an enabled add-on plan has none of its prerequisite plans available."""
        for plan in sorted(wanted):
            needs = self._prerequisites.get(plan)
            if needs and not needs & available:
                return (
                    f"The service {self._any_plan_name(plan)} requires "
                    f"{self._any_plan_name(sorted(needs)[0])} to be enabled as well."
                )
        return None

    def _any_plan_name(self, plan_id: str) -> str:
        for sku in self.skus.values():
            if plan_id in sku.plan_ids():
                return sku.plan_name(plan_id)
        return plan_id

    def _still_needed(self, state: LicenseState, remaining: Sequence[LicenseState]) -> bool:
        """Would removing `state` take away a plan that another held add-on needs?
        ("Other products depend on this license": DependencyViolation.)"""
        if not self._prerequisites or state.state not in SERVING:
            return False
        left = self._plans(remaining)
        gone = self.skus[state.sku_id].enabled_plans(state.disabled_plans) - left
        if not gone:
            return False
        for plan in left:
            needs = self._prerequisites.get(plan)
            if needs and needs & gone and not needs & left:
                return True
        return False

    def _removed(
        self, user: User, removing: Sequence[LicenseState], keep: Sequence[LicenseState]
    ) -> list[LicenseState]:
        """States of `removing` that cannot go because another licence depends on them: they
        stay as ActiveWithError / DependencyViolation (the seat stays taken)."""
        stuck: list[LicenseState] = []
        for s in removing:
            if self._still_needed(s, [*keep, *stuck]):
                if s.state == ACTIVE_WITH_ERROR and s.error == DEPENDENCY_VIOLATION:
                    stuck.append(s)
                else:
                    stuck.append(
                        LicenseState(
                            s.sku_id,
                            s.assigned_by_group,
                            list(s.disabled_plans),
                            ACTIVE_WITH_ERROR,
                            DEPENDENCY_VIOLATION,
                            now_iso(),
                        )
                    )
        return stuck

    def _group_error(
        self,
        group: Group,
        user: User,
        others: list[LicenseState],
        rules: tuple[frozenset[str], dict[str, set[str]], bool] | None = None,
    ) -> tuple[str | None, set[str]]:
        """Why this group's licences cannot be assigned to the user now (None if they can),
        and which SKUs are short of seats (for a CountViolation).

        Checked in this order (the order Entra uses is **unverified**): usage location, mutually
        exclusive SKUs and service plans, seats. All-or-nothing: one failing SKU fails the whole
        group ("More than one product license assigned to a group").
        """
        prohibited, exclusive, plan_rules = rules or self._group_rules(group)
        if prohibited and self.usage_location(user) in prohibited:
            return PROHIBITED_LOCATION, set()
        held = {s.sku_id for s in others if s.state in SERVING}
        for sku_id, clash in exclusive.items():
            if clash & held or clash & (group.licenses.keys() - {sku_id}):
                return MUTUALLY_EXCLUSIVE, set()
        if plan_rules and self._plan_conflict(
            self._licence_plans(group.licenses), self._plans(others)
        ):
            return MUTUALLY_EXCLUSIVE, set()
        held |= {
            s.sku_id
            for s in user.states
            if s.assigned_by_group == group.id and s.state in CONSUMING
        }
        short = {sku for sku in group.licenses if sku not in held and self.free(sku) <= 0}
        return (COUNT_VIOLATION if short else NO_ERROR), short

    def _sku_errors(
        self, error: str | None, short: set[str], skus: Sequence[str]
    ) -> dict[str, Any]:
        """Each SKU's error for a failed group assignment (Behaviour.multi_sku_error)."""
        if error == COUNT_VIOLATION and self.behaviour.multi_sku_error == "short-only":
            return {k: COUNT_VIOLATION if k in short else OTHER for k in skus}
        return dict.fromkeys(skus, error)

    def _apply_group(
        self,
        group: Group,
        user: User,
        *,
        retry_errors: bool,
        stamp: str | None = None,
        rules: tuple[frozenset[str], dict[str, set[str]], bool] | None = None,
    ) -> None:
        states = user.states
        mine = {s.sku_id: s for s in states if s.assigned_by_group == group.id}
        others = [s for s in states if s.assigned_by_group != group.id] if mine else list(states)
        dropped = [s for k, s in mine.items() if k not in group.licenses]
        if not group.licenses:
            if mine:
                self._set_states(user, others + self._removed(user, dropped, others))
            return
        stuck = {k: s.error for k, s in mine.items() if s.state == ERROR and k in group.licenses}
        if stuck and not retry_errors:
            # Entra does not pick up freed seats for users already in error: reprocess.
            first = (
                COUNT_VIOLATION if COUNT_VIOLATION in stuck.values() else next(iter(stuck.values()))
            )
            errors = {k: stuck.get(k, first) for k in group.licenses}
        else:
            error, short = self._group_error(group, user, others, rules)
            errors = self._sku_errors(error, short, list(group.licenses))
        stamp = stamp or now_iso()
        updated: list[LicenseState] = []
        for sku, plans in group.licenses.items():
            err = errors[sku]
            state = ACTIVE if err is None else ERROR
            if state == ACTIVE and self.skus[sku].capability_status in _SUSPENDED:
                state = DISABLED
            prev = mine.get(sku)
            if prev and (prev.state, prev.error, prev.disabled_plans) == (state, err, plans):
                updated.append(prev)
            else:
                updated.append(LicenseState(sku, group.id, list(plans), state, err, stamp))
        kept = others + updated
        self._set_states(user, kept + self._removed(user, dropped, kept))

    def _process_group(self, group: Group) -> None:
        stamp = now_iso()
        rules = self._group_rules(group)
        licenses = list(group.licenses.items())
        plain = (
            not rules[0]
            and not rules[1]
            and not rules[2]
            and self.behaviour.multi_sku_error == "all"
            and not any(self.skus[k].capability_status in _SUSPENDED for k, _ in licenses)
        )
        capacity = {
            k: (self.skus[k].enabled_at_load if self._loading else self.skus[k].prepaid["enabled"])
            for k in group.licenses
        }
        consumed = self._consumed
        gid = group.id
        all_skus = [k for k, _ in licenses]
        for user in self.direct_user_members(group):
            states = user.states
            if plain and licenses and not any(s.assigned_by_group == gid for s in states):
                # Fast path (first processing of this group for the user, no rules to check):
                # the same outcome as _apply_group, without its general bookkeeping.
                if states:
                    held = {s.sku_id for s in states if s.state in CONSUMING}
                    new = [k for k, _ in licenses if k not in held]
                else:
                    new = all_skus
                ok = all(consumed[k] < capacity[k] for k in new)
                state, error = (ACTIVE, NO_ERROR) if ok else (ERROR, COUNT_VIOLATION)
                user.states = [*states] + [
                    LicenseState(k, gid, list(p), state, error, stamp) for k, p in licenses
                ]
                if ok:
                    for k in new:
                        consumed[k] += 1
                continue
            if licenses or states:
                self._apply_group(group, user, retry_errors=False, stamp=stamp, rules=rules)

    def _schedule_processing(self, group: Group) -> None:
        """Process now (delay 0) or walk Queued -> InProgress -> Complete on background timers."""
        delay = self.processing_delay_s
        if delay <= 0:
            self._process_group(group)
            group.processing_state = COMPLETE
            return
        group.processing_state = QUEUED

        def start() -> None:
            with self.lock:
                group.processing_state = IN_PROGRESS
            self._later(delay / 2, finish)

        def finish() -> None:
            with self.lock:
                self._process_group(group)
                group.processing_state = COMPLETE

        self._later(delay / 2, start)

    def _later(self, seconds: float, fn: Any) -> None:
        timer: threading.Timer

        def run() -> None:
            try:
                fn()
            finally:
                with self.lock:
                    self._timers.discard(timer)

        timer = threading.Timer(seconds, run)
        timer.daemon = True
        with self.lock:
            self._timers.add(timer)
        timer.start()

    def cancel_pending(self) -> None:
        with self.lock:
            for timer in list(self._timers):
                timer.cancel()
            self._timers.clear()

    def _validate_license_change(self, body: Any) -> tuple[dict[str, list[str]], list[str]]:
        """Parse an assignLicense body (both keys required, case-sensitive) against the SKUs."""
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        for key in ("addLicenses", "removeLicenses"):
            if key not in body or not isinstance(body[key], list):
                raise bad_request(f"Required parameter '{key}' is missing or not an array.")
        add: dict[str, list[str]] = {}
        for item in body["addLicenses"]:
            if not isinstance(item, dict) or not isinstance(item.get("skuId"), str):
                raise bad_request("Each addLicenses item needs a skuId.")
            sku = self._company_sku(item["skuId"])
            plans = item.get("disabledPlans") or []
            if not isinstance(plans, list) or not all(isinstance(p, str) for p in plans):
                raise bad_request("disabledPlans must be an array of service plan ids.")
            plans = [p.lower() for p in plans]
            for plan in plans:
                if plan not in sku.plan_ids():
                    raise bad_request(
                        f"Service plan {plan} does not belong to License {sku.sku_id}."
                    )
            add[sku.sku_id] = plans
        remove: list[str] = []
        for sku_id in body["removeLicenses"]:
            if not isinstance(sku_id, str):
                raise bad_request("removeLicenses must be an array of skuIds.")
            remove.append(self._company_sku(sku_id).sku_id)
        return add, remove

    def _company_sku(self, sku_id: str) -> Sku:
        sku = self.skus.get(sku_id.lower())
        if sku is None or sku.applies_to != "User":
            raise bad_request(f"License {sku_id} does not correspond to a valid company License.")
        return sku

    def assign_group_licenses(self, group_id: str, body: Any) -> Group:
        with self.lock:
            group = self.get_group(group_id)
            if not group.security_enabled:
                raise bad_request(
                    f"Group {group.id} is not security enabled: licenses can only be assigned "
                    "to security groups."
                )
            add, remove = self._validate_license_change(body)
            licenses = {k: v for k, v in group.licenses.items() if k not in remove}
            # Re-adding a SKU only changes its disabledPlans (its position stays).
            licenses.update(add)
            # An add-on needs its prerequisite plan in the same group; refused at once, not
            # recorded on users ("Manage licenses for products with prerequisites").
            plans = self._licence_plans(licenses)
            missing = self._missing_prerequisite(
                set().union(*plans.values()), set().union(*plans.values())
            )
            if missing:
                raise bad_request(
                    "License operation failed. Make sure that the group has necessary services "
                    f"before adding or removing a dependent service. {missing}"
                )
            group.licenses.clear()
            group.licenses.update(licenses)
            self._schedule_processing(group)
            return group

    def assign_user_licenses(self, user_key: str, body: Any) -> User:
        with self.lock:
            user = self.get_user(user_key)
            add, remove = self._validate_license_change(body)
            for sku_id in remove:
                if sku_id not in user.direct:
                    raise bad_request(f"User does not have a corresponding license {sku_id}.")
            if add and not user.props.get("usageLocation"):
                raise bad_request(
                    "License assignment cannot be done for user with invalid usage location."
                )
            # Direct assignments report rule violations at once (400), as the "Identify and
            # resolve" page says; group assignments record them on users instead.
            kept_states = [
                s
                for s in user.states
                if not (s.assigned_by_group is None and (s.sku_id in remove or s.sku_id in add))
            ]
            held = {s.sku_id for s in kept_states if s.state in SERVING}
            location = str(user.props.get("usageLocation"))
            for sku_id in add:
                if location in self.skus[sku_id].prohibited_usage_locations:
                    raise bad_request(
                        f"License {sku_id} cannot be assigned to a user with usage location "
                        f"{location}: {PROHIBITED_LOCATION}."
                    )
                clash = self.exclusive_pairs(sku_id) & (held | set(add))
                if clash:
                    raise bad_request(
                        f"License {sku_id} conflicts with {sorted(clash)[0]}: {MUTUALLY_EXCLUSIVE}."
                    )
            kept_plans = self._plans(kept_states)
            added_plans = self._licence_plans(add)
            conflict = self._plan_conflict(added_plans, kept_plans)
            if conflict:
                raise bad_request(f"{conflict}: {MUTUALLY_EXCLUSIVE}.")
            all_plans = kept_plans.union(*added_plans.values())
            missing = self._missing_prerequisite(all_plans, all_plans)
            if missing:
                raise bad_request(
                    "License operation failed. Make sure that the user has necessary services "
                    f"before adding or removing a dependent service. {missing} "
                    f"({DEPENDENCY_VIOLATION})"
                )
            seated = user.active_skus()
            for sku_id in add:
                if sku_id not in seated and self.free(sku_id) <= 0:
                    raise bad_request(
                        f"Subscription with SKU {sku_id} does not have any available licenses."
                    )
            user.direct = {k: v for k, v in user.direct.items() if k not in remove}
            user.direct = {**user.direct, **add}
            stamp = now_iso()
            old = {s.sku_id: s for s in user.states if s.assigned_by_group is None}
            direct_states = []
            for sku, plans in user.direct.items():
                prev = old.get(sku)
                if prev and prev.disabled_plans == plans:
                    direct_states.append(prev)
                else:
                    direct_states.append(
                        LicenseState(sku, None, list(plans), ACTIVE, NO_ERROR, stamp)
                    )
            groups = [s for s in user.states if s.assigned_by_group is not None]
            self._set_states(user, direct_states + groups)
            return user

    def reprocess_user(self, user_key: str) -> User:
        """Re-evaluate every group licence of the user, errors included (seats freed since)."""
        with self.lock:
            user = self.get_user(user_key)
            member_of = [g for g in self.groups.values() if user.id in g.member_set]
            live = {g.id for g in member_of}
            kept = [
                s for s in user.states if s.assigned_by_group in live or s.assigned_by_group is None
            ]
            gone = [s for s in user.states if s not in kept]
            self._set_states(user, kept + self._removed(user, gone, kept))
            for group in member_of:
                self._apply_group(group, user, retry_errors=True)
            return user

    # ---- admin mutations -----------------------------------------------------------------

    def add_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            group = self.get_group(group_id)
            mid = member_id.lower()
            if mid not in self.users and mid not in self.groups:
                raise not_found(member_id)
            if mid == group.id:
                raise bad_request("A group cannot be a member of itself.")
            if mid in group.member_set:
                raise bad_request(
                    "One or more added object references already exist for the following "
                    f"modified properties: 'members'. ({mid})"
                )
            group.add(mid)
            if mid in self.users and group.licenses:
                self._schedule_processing(group)

    def remove_member(self, group_id: str, member_id: str, processed: bool = False) -> None:
        """`processed` (Graph's DELETE .../members/{id}/$ref): the group's licences leave the user
        when Entra processes the change, after the processing delay, as an assignLicense's do;
        the admin route applies it at once."""
        with self.lock:
            group = self.get_group(group_id)
            mid = member_id.lower()
            if mid not in group.member_set:
                raise not_found(member_id)
            group.discard(mid)
            user = self.users.get(mid)
            if user is None or not any(s.assigned_by_group == group.id for s in user.states):
                return
            if not processed or self.processing_delay_s <= 0:
                self._drop_group_states(group, user)
                return
            group.processing_state = QUEUED

            def finish() -> None:
                with self.lock:
                    if mid not in group.member_set:  # not added back meanwhile
                        self._drop_group_states(group, user)
                    group.processing_state = COMPLETE

            self._later(self.processing_delay_s, finish)

    def _drop_group_states(self, group: Group, user: User) -> None:
        # The user loses this group's states (seats free up if no other source holds the SKU),
        # except those another licence depends on: DependencyViolation.
        kept = [s for s in user.states if s.assigned_by_group != group.id]
        gone = [s for s in user.states if s.assigned_by_group == group.id]
        self._set_states(user, kept + self._removed(user, gone, kept))

    def add_user(self, raw: Any) -> User:
        with self.lock:
            try:
                self._load_user(raw, "$")
            except TenantError as exc:
                raise bad_request(str(exc)) from exc
            user = self.users[str(raw["id"]).lower()]
            stamp = now_iso()
            for sku in user.direct:
                if self.free(sku) <= 0:
                    del self.users[user.id]
                    del self._by_upn[user.upn.lower()]
                    raise bad_request(
                        f"Subscription with SKU {sku} does not have any available licenses."
                    )
            self._set_states(
                user,
                [
                    LicenseState(s, None, list(p), ACTIVE, NO_ERROR, stamp)
                    for s, p in user.direct.items()
                ],
            )
            return user

    def set_seats(self, sku_key: str, enabled: Any) -> Sku:
        with self.lock:
            sku = self.find_sku(sku_key)
            if sku is None:
                raise not_found(sku_key)
            if not isinstance(enabled, int) or isinstance(enabled, bool) or enabled < 0:
                raise bad_request("'enabled' must be a non-negative integer.")
            sku.prepaid["enabled"] = enabled
            return sku

    def set_capability(self, sku_key: str, status: Any) -> Sku:
        """A subscription's capabilityStatus changes: under Suspended, LockedOut or Deleted its
        assignments are Disabled (they still count in consumedUnits); back to Enabled or Warning
        they are Active again. The mapping to Disabled is **unverified**."""
        allowed = ("Enabled", "Warning", "Suspended", "Deleted", "LockedOut")
        with self.lock:
            sku = self.find_sku(sku_key)
            if sku is None:
                raise not_found(sku_key)
            if status not in allowed:
                raise bad_request(f"'capabilityStatus' must be one of {', '.join(allowed)}.")
            sku.capability_status = status
            off = status in _SUSPENDED
            before, after = (ACTIVE, DISABLED) if off else (DISABLED, ACTIVE)
            stamp = now_iso()
            for user in self.users.values():
                if not any(s.sku_id == sku.sku_id and s.state == before for s in user.states):
                    continue
                self._set_states(
                    user,
                    [
                        LicenseState(
                            s.sku_id,
                            s.assigned_by_group,
                            list(s.disabled_plans),
                            after,
                            None,
                            stamp,
                        )
                        if s.sku_id == sku.sku_id and s.state == before
                        else s
                        for s in user.states
                    ],
                )
            return sku

    # ---- subscriptions (GET /directory/subscriptions) --------------------------------------

    def _subscription(
        self, raw: Any, where: str, base: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One companySubscription from a tenant file or the admin API, checked; `base` is the
        subscription being changed (then every key is optional)."""
        raw = _obj(raw, where)
        _check_keys(raw, _SUBSCRIPTION_KEYS | _SUBSCRIPTION_SIM_KEYS, where)
        sub = dict(base or {})
        if base is None:
            sku = self.skus.get(_guid(raw.get("skuId"), f"{where}.skuId"))
            if sku is None:
                raise TenantError(
                    f"{where}.skuId: unknown skuId '{raw.get('skuId')}' (not in $.skus)"
                )
            sub_id = _guid(raw.get("id", str(uuid.uuid4())), f"{where}.id")
            sub = {
                "commerceSubscriptionId": str(uuid.uuid5(uuid.NAMESPACE_URL, sub_id)),
                "createdDateTime": _stamp(self.loaded_at - timedelta(days=30)),
                "id": sub_id,
                "isTrial": False,
                "nextLifecycleDateTime": _stamp(
                    self.loaded_at + timedelta(days=DERIVED_SUBSCRIPTION_DAYS)
                ),
                "ownerId": None,
                "ownerTenantId": None,
                "ownerType": None,
                "serviceStatus": [
                    {
                        k: p[k]
                        for k in (
                            "appliesTo",
                            "provisioningStatus",
                            "servicePlanId",
                            "servicePlanName",
                        )
                    }
                    for p in sku.service_plans
                ],
                "skuId": sku.sku_id,
                "skuPartNumber": sku.part_number,
                "status": "Enabled",
                "totalLicenses": 0,
            }
        elif "skuId" in raw or "id" in raw:
            raise TenantError(f"{where}: 'id' and 'skuId' of a subscription cannot change")
        if "skuPartNumber" in raw and raw["skuPartNumber"] != sub["skuPartNumber"]:
            raise TenantError(f"{where}.skuPartNumber: not the part number of skuId {sub['skuId']}")
        if "status" in raw:
            sub["status"] = _choice(raw["status"], SUBSCRIPTION_STATUSES, f"{where}.status")
        if "totalLicenses" in raw:
            sub["totalLicenses"] = _count(raw["totalLicenses"], f"{where}.totalLicenses")
        if "isTrial" in raw:
            if not isinstance(raw["isTrial"], bool):
                raise TenantError(f"{where}.isTrial: must be true or false")
            sub["isTrial"] = raw["isTrial"]
        if "nextLifecycleDateTime" in raw and "nextLifecycleInDays" in raw:
            raise TenantError(
                f"{where}: give nextLifecycleDateTime or nextLifecycleInDays, not both"
            )
        if "nextLifecycleInDays" in raw:
            days = raw["nextLifecycleInDays"]
            if not isinstance(days, int | float) or isinstance(days, bool):
                raise TenantError(f"{where}.nextLifecycleInDays: must be a number of days")
            sub["nextLifecycleDateTime"] = _stamp(datetime.now(UTC) + timedelta(days=days))
        for key in ("nextLifecycleDateTime", "createdDateTime"):
            if key in raw:
                sub[key] = None if raw[key] is None else _stamp(_when(raw[key], f"{where}.{key}"))
        for key in ("commerceSubscriptionId", "ownerId", "ownerTenantId", "ownerType"):
            if key in raw:
                if raw[key] is not None and not isinstance(raw[key], str):
                    raise TenantError(f"{where}.{key}: must be a string or null")
                sub[key] = raw[key]
        if "serviceStatus" in raw:
            sub["serviceStatus"] = copy.deepcopy(
                _list(raw["serviceStatus"], f"{where}.serviceStatus")
            )
        return sub

    def subscription_list(self) -> list[dict[str, Any]]:
        """The tenant's companySubscriptions: the file's, or one per SKU holding its seats."""
        with self.lock:
            if self.subscriptions is not None:
                return [copy.deepcopy(s) for s in self.subscriptions.values()]
            return [self._derived_subscription(sku) for sku in self.skus.values()]

    def _derived_subscription(self, sku: Sku) -> dict[str, Any]:
        sub_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.tenant_id}/{sku.sku_id}"))
        sub = self._subscription({"skuId": sku.sku_id, "id": sub_id}, "$.subscriptions")
        sub["status"] = sku.capability_status
        sub["totalLicenses"] = sum(sku.prepaid.values())
        return sub

    def add_subscription(self, raw: Any) -> dict[str, Any]:
        with self.lock:
            self._materialise_subscriptions()
            assert self.subscriptions is not None
            try:
                sub = self._subscription(raw, "$")
            except TenantError as exc:
                raise bad_request(str(exc)) from exc
            if sub["id"] in self.subscriptions:
                raise bad_request(f"A subscription with id '{sub['id']}' exists.")
            self.subscriptions[sub["id"]] = sub
            return copy.deepcopy(sub)

    def update_subscription(self, sub_id: str, raw: Any) -> dict[str, Any]:
        """A renewal, an expiry, a change of seats: PATCH /_sim/subscriptions/{id}. The SKU's
        prepaidUnits are not changed with it (set them with PATCH /_sim/skus/{id})."""
        with self.lock:
            self._materialise_subscriptions()
            assert self.subscriptions is not None
            sub = self.subscriptions.get(sub_id.lower())
            if sub is None:
                raise not_found(sub_id)
            try:
                self.subscriptions[sub["id"]] = self._subscription(raw, "$", base=sub)
            except TenantError as exc:
                raise bad_request(str(exc)) from exc
            return copy.deepcopy(self.subscriptions[sub["id"]])

    def _materialise_subscriptions(self) -> None:
        if self.subscriptions is None:
            self.subscriptions = {
                s["id"]: s for s in (self._derived_subscription(k) for k in self.skus.values())
            }

    # ---- JSON views ----------------------------------------------------------------------

    def sku_json(self, sku: Sku) -> dict[str, Any]:
        return {
            "accountName": sku.extra.get("accountName", "Simulated tenant"),
            "accountId": sku.extra.get("accountId", self.tenant_id),
            "appliesTo": sku.applies_to,
            "capabilityStatus": sku.capability_status,
            "consumedUnits": self.consumed(sku.sku_id),
            "id": f"{self.tenant_id}_{sku.sku_id}",
            "prepaidUnits": dict(sku.prepaid),
            "servicePlans": copy.deepcopy(sku.service_plans),
            "skuId": sku.sku_id,
            "skuPartNumber": sku.part_number,
            "subscriptionIds": list(sku.extra.get("subscriptionIds", [sku.sku_id])),
        }

    def assigned_plans(self, user: User) -> list[dict[str, Any]]:
        plans: list[dict[str, Any]] = []
        for lic in user.assigned_licenses():
            sku = self.skus[lic["skuId"]]
            stamp = min(s.last_updated for s in user.states if s.sku_id == sku.sku_id)
            for plan in sku.service_plans:
                if plan["servicePlanId"] in lic["disabledPlans"]:
                    continue
                plans.append(
                    {
                        "assignedDateTime": stamp,
                        "capabilityStatus": "Enabled",
                        "service": plan["servicePlanName"],
                        "servicePlanId": plan["servicePlanId"],
                    }
                )
        return plans

    def user_values(self, user: User, names: Sequence[str]) -> dict[str, Any]:
        """`{name: user_value(user, name) for name in names}`, with the user's props read once
        (a generated user's are computed): the members pages' hot path."""
        props = user.props
        out: dict[str, Any] = {}
        for name in names:
            if name in _DERIVED_USER_VALUES:
                out[name] = self.user_value(user, name)
                continue
            value = props.get(name, _ABSENT)
            if value is _ABSENT:
                out[name] = schema.empty_value(name)
            elif isinstance(value, list | dict):
                out[name] = copy.deepcopy(value)
            else:
                out[name] = value
        return out

    def user_value(self, user: User, name: str) -> Any:
        """One property of a user as Graph returns it (derived licence fields included)."""
        if name == "id":
            return user.id
        if name == "assignedLicenses":
            return user.assigned_licenses(self.behaviour.error_sku_in_assigned_licenses)
        if name == "licenseAssignmentStates":
            return [s.to_json() for s in user.states]
        if name == "assignedPlans":
            return self.assigned_plans(user)
        value = user.props.get(name, schema.empty_value(name))
        return copy.deepcopy(value) if isinstance(value, list | dict) else value

    def group_value(self, group: Group, name: str) -> Any:
        if name == "id":
            return group.id
        if name == "assignedLicenses":
            return group.assigned_licenses()
        if name == "licenseProcessingState":
            return {"state": group.processing_state}
        if name == "hasMembersWithLicenseErrors":
            return bool(self.members_with_errors(group))
        if name in group.extensions:
            return copy.deepcopy(group.extensions[name])
        return copy.deepcopy(group.props.get(name, schema.empty_value(name)))

    def to_dict(self, *, derived: bool = True) -> dict[str, Any]:
        """The tenant in tenant-file format; `derived` adds consumedUnits and licence states."""
        with self.lock:
            skus = []
            for sku in self.skus.values():
                item: dict[str, Any] = {
                    "skuId": sku.sku_id,
                    "skuPartNumber": sku.part_number,
                    "appliesTo": sku.applies_to,
                    "capabilityStatus": sku.capability_status,
                    "prepaidUnits": dict(sku.prepaid),
                    "enabledAtLoad": sku.enabled_at_load,
                    "servicePlans": [
                        {
                            **plan,
                            **(
                                {"mutuallyExclusiveWith": list(sku.plan_conflicts[pid])}
                                if (pid := plan["servicePlanId"]) in sku.plan_conflicts
                                else {}
                            ),
                            **(
                                {"prerequisitePlans": list(sku.plan_prerequisites[pid])}
                                if pid in sku.plan_prerequisites
                                else {}
                            ),
                        }
                        for plan in copy.deepcopy(sku.service_plans)
                    ],
                    **copy.deepcopy(sku.extra),
                }
                if sku.mutually_exclusive_with:
                    item["mutuallyExclusiveWith"] = list(sku.mutually_exclusive_with)
                if sku.prohibited_usage_locations:
                    item["prohibitedUsageLocations"] = list(sku.prohibited_usage_locations)
                if derived:
                    item["consumedUnits"] = self.consumed(sku.sku_id)
                skus.append(item)
            users = []
            for user in self.users.values():
                u: dict[str, Any] = {"id": user.id, **copy.deepcopy(user.props)}
                u["directLicenses"] = [
                    {"skuId": k, "disabledPlans": list(p)} for k, p in user.direct.items()
                ]
                if derived:
                    u["assignedLicenses"] = user.assigned_licenses()
                    u["licenseAssignmentStates"] = [s.to_json() for s in user.states]
                users.append(u)
            groups = []
            for group in self.groups.values():
                g: dict[str, Any] = {"id": group.id, **copy.deepcopy(group.props)}
                g["extensions"] = copy.deepcopy(group.extensions)
                g["assignedLicenses"] = group.assigned_licenses()
                g["members"] = list(group.members)
                if derived:
                    g["licenseProcessingState"] = {"state": group.processing_state}
                groups.append(g)
            out: dict[str, Any] = {"tenantId": self.tenant_id}
            if self.display_name:
                out["displayName"] = self.display_name
            if self.default_usage_location:
                out["defaultUsageLocation"] = self.default_usage_location
            out.update({"skus": skus, "users": users, "groups": groups})
            if self.subscriptions is not None:
                out["subscriptions"] = [copy.deepcopy(s) for s in self.subscriptions.values()]
            return out

    def state_digest(self) -> str:
        """A SHA-256 of everything observable except timestamps: equal for equal tenants."""
        h = hashlib.sha256()

        def put(value: Any) -> None:
            h.update(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())
            h.update(b"\n")

        with self.lock:
            put([self.tenant_id, self.default_usage_location])
            for sku in self.skus.values():
                put([self.to_dict_sku(sku), self.consumed(sku.sku_id)])
            for user in self.users.values():
                put([user.id, user.props, user.direct])
                put(
                    [
                        [s.sku_id, s.assigned_by_group, s.disabled_plans, s.state, s.error]
                        for s in user.states
                    ]
                )
            for group in self.groups.values():
                put([group.id, group.props, group.extensions, group.licenses, group.members])
                put(group.processing_state)
            if self.subscriptions is not None:
                for sub in self.subscriptions.values():
                    put({k: v for k, v in sub.items() if k != "createdDateTime"})
        return h.hexdigest()

    def to_dict_sku(self, sku: Sku) -> dict[str, Any]:
        return {
            "skuId": sku.sku_id,
            "skuPartNumber": sku.part_number,
            "prepaid": sku.prepaid,
            "enabledAtLoad": sku.enabled_at_load,
            "servicePlans": sku.service_plans,
            "rules": [
                sku.mutually_exclusive_with,
                sku.prohibited_usage_locations,
                sku.plan_conflicts,
                sku.plan_prerequisites,
            ],
        }

    @classmethod
    def generate(cls, **spec: Any) -> Tenant:
        """A deterministic synthetic tenant: `Tenant.generate(users=20000, groups=100, skus=5,
        seed=7)`; every option of `simulator.generate.GenerateSpec` is accepted."""
        from simulator.generate import GenerateSpec, generate_tenant

        seed = int(spec.pop("seed", 0))
        return generate_tenant(GenerateSpec(**spec), seed)


# ---- validation helpers ------------------------------------------------------------------


def _check_keys(
    raw: dict[str, Any],
    allowed: set[str] | frozenset[str],
    where: str,
    *,
    allow_extensions: bool = False,
) -> None:
    for key in raw:
        if key.startswith("_"):
            continue  # "_comment"-style keys keep hand-written tenant files readable.
        if allow_extensions and key.startswith(schema.EXTENSION_PREFIX):
            continue
        if key not in allowed:
            raise TenantError(f"{where}.{key}: unknown property")


def _obj(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TenantError(f"{where}: must be a JSON object")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise TenantError(f"{where}: must be a JSON array")
    return raw


def _str(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise TenantError(f"{where}: must be a non-empty string")
    return raw


def _guid(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not GUID_RE.match(raw.lower()):
        raise TenantError(f"{where}: not a GUID: {raw!r}")
    return raw.lower()


def _count(raw: Any, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise TenantError(f"{where}: must be a non-negative integer, got {raw!r}")
    return raw


def _country(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not _COUNTRY_RE.match(raw):
        raise TenantError(f"{where}: not an ISO 3166 alpha-2 country code: {raw!r}")
    return raw


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(raw: Any, where: str) -> datetime:
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise TenantError(f"{where}: not an ISO 8601 date and time with a zone: {raw!r}")


def _choice(raw: Any, allowed: tuple[Any, ...], where: str) -> Any:
    if raw not in allowed:
        raise TenantError(f"{where}: {raw!r} is not one of {', '.join(map(repr, allowed))}")
    return raw


__all__ = ["GraphError", "Group", "LicenseState", "Sku", "Tenant", "TenantError", "User"]
