"""The licensing policy file: profiles, selectors, per-SKU reserves, change budget.

Validated strictly (unknown keys rejected) before any Graph call; every error names the file,
the key and the problem. `resolve()` then checks the SKU and plan names against the tenant.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.errors import PolicyError
from shared.model import Sku

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
EXTENSION_RE = re.compile(r"^extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_PRIORITY = 100


@dataclass(frozen=True)
class ProfileSku:
    sku: str  # skuPartNumber or skuId, as written
    disabled_plans: tuple[str, ...] | None = None  # names or ids to disable
    enabled_plans: tuple[str, ...] | None = None  # allow-list: every other plan disabled


@dataclass(frozen=True)
class Profile:
    name: str
    skus: tuple[ProfileSku, ...]


@dataclass(frozen=True)
class Selector:
    """One way of tagging groups. Exactly one of the match fields is set."""

    index: int
    extension_property: str | None = None  # the value on the group names the profile
    display_name_prefix: str | None = None
    group_ids: tuple[str, ...] = ()
    profile: str | None = None  # required for prefix and ids
    priority: int = DEFAULT_PRIORITY

    @property
    def kind(self) -> str:
        if self.extension_property:
            return "extensionProperty"
        if self.display_name_prefix is not None:
            return "displayNamePrefix"
        return "groupIds"


@dataclass(frozen=True)
class SkuSettings:
    reserve: int = 0
    warn_below_free: int | None = None  # absolute free seats
    warn_below_percent: int | None = None  # free seats as a percentage of enabled


ALERT_KINDS = (
    "sku-exhausted",  # demand above free seats (users in CountViolation included)
    "sku-low",  # under the warning threshold, or will run out within forecastDays
    "group-guests",  # a group blocked by B2B guests
    "group-errors",  # members in licence errors that more seats will not fix
    "group-stuck",  # licence processing not complete for longer than stuckProcessingHours
    "run-problem",  # a run failed or was partial
)


@dataclass(frozen=True)
class AlertSettings:
    cooldown_hours: int = 72  # a continuing condition is mailed again after this long
    forecast_days: int = 30  # warn when a SKU runs out within this many days at its growth
    stuck_processing_hours: int = 24
    recipients: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> addresses


@dataclass(frozen=True)
class ChangeBudget:
    max_groups_changed: int = 50
    max_users_affected: int = 5000


@dataclass(frozen=True)
class Policy:
    source: str
    digest: str
    profiles: dict[str, Profile]
    selectors: tuple[Selector, ...]
    sku_settings: dict[str, SkuSettings] = field(default_factory=dict)
    change_budget: ChangeBudget = ChangeBudget()
    remove_unlisted_licenses: bool = False
    alerts: AlertSettings = AlertSettings()


@dataclass(frozen=True)
class ResolvedSku:
    sku_id: str
    part_number: str
    disabled_plan_ids: frozenset[str]
    # Plans disabled only because an allow-list leaves them out (reported: new Microsoft plans).
    implicitly_disabled: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedProfile:
    name: str
    skus: tuple[ResolvedSku, ...]


@dataclass(frozen=True)
class ResolvedPolicy:
    policy: Policy
    profiles: dict[str, ResolvedProfile]
    reserves: dict[str, int]  # sku_id -> seats kept back
    warn_below_free: dict[str, int]  # sku_id -> warning threshold (absolute)
    warn_below_percent: dict[str, int] = field(default_factory=dict)  # sku_id -> percent


# ---------------------------------------------------------------------------------------------
# Loading and schema validation


class _Checker:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, problem: str) -> PolicyError:
        return PolicyError(self.file, key, problem)

    def mapping(
        self,
        value: Any,
        key: str,
        allowed: set[str],
        required: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if k not in allowed:
                raise self.fail(
                    _join(key, k), f"unknown key (allowed here: {', '.join(sorted(allowed))})"
                )
        for k in sorted(required):
            if k not in value:
                raise self.fail(_join(key, k), "is required")
        return value

    def string(
        self, value: Any, key: str, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {_kind(value)}")
        if pattern and not pattern.match(value):
            raise self.fail(key, f"{value!r} is not {what or 'valid'}")
        return value

    def integer(self, value: Any, key: str, minimum: int, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_kind(value)}")
        if not minimum <= value <= maximum:
            raise self.fail(key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def string_list(
        self, value: Any, key: str, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {_kind(value)}")
        items = tuple(self.string(v, f"{key}[{i}]", pattern, what) for i, v in enumerate(value))
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.lower() in seen:
                raise self.fail(f"{key}[{i}]", f"{item!r} is listed twice")
            seen.add(item.lower())
        return items


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file (YAML or JSON). Raises PolicyError."""
    name = str(path)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(name, "", "file not found (set LICENSING_POLICY_PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(name, "", f"cannot read the file: {exc}") from None
    return parse_policy(raw_text, name)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            source, "", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, "", f"not valid YAML: {problem}{where}") from None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return _validate(data, source, digest)


def _validate(data: Any, source: str, digest: str) -> Policy:
    c = _Checker(source)
    top = c.mapping(
        data,
        "",
        {
            "version",
            "profiles",
            "selectors",
            "skus",
            "changeBudget",
            "removeUnlistedLicenses",
            "alerts",
        },
        {"version", "profiles", "selectors"},
    )
    if top["version"] != 1:
        raise c.fail(
            "version", f"must be 1 (the only policy version this app reads), got {top['version']!r}"
        )

    profiles: dict[str, Profile] = {}
    raw_profiles = c.mapping(
        top["profiles"],
        "profiles",
        set(top["profiles"] or {}) if isinstance(top["profiles"], dict) else set(),
    )
    if not raw_profiles:
        raise c.fail("profiles", "must define at least one profile")
    for pname, pbody in raw_profiles.items():
        key = f"profiles.{pname}"
        if not PROFILE_NAME_RE.match(pname):
            raise c.fail(key, "profile names use letters, digits, '-', '_' and '.' (at most 64)")
        body = c.mapping(pbody, key, {"skus", "description"}, {"skus"})
        if "description" in body:
            c.string(body["description"], f"{key}.description")
        if not isinstance(body["skus"], list) or not body["skus"]:
            raise c.fail(f"{key}.skus", "must be a non-empty list")
        skus: list[ProfileSku] = []
        seen_skus: set[str] = set()
        for i, entry in enumerate(body["skus"]):
            ekey = f"{key}.skus[{i}]"
            e = c.mapping(entry, ekey, {"sku", "disabledPlans", "enabledPlans"}, {"sku"})
            sku_ref = c.string(e["sku"], f"{ekey}.sku")
            if sku_ref.lower() in seen_skus:
                raise c.fail(f"{ekey}.sku", f"{sku_ref!r} appears twice in this profile")
            seen_skus.add(sku_ref.lower())
            if "disabledPlans" in e and "enabledPlans" in e:
                raise c.fail(
                    ekey, "give either disabledPlans or enabledPlans (an allow-list), not both"
                )
            disabled = (
                c.string_list(e["disabledPlans"], f"{ekey}.disabledPlans")
                if "disabledPlans" in e
                else None
            )
            enabled = (
                c.string_list(e["enabledPlans"], f"{ekey}.enabledPlans")
                if "enabledPlans" in e
                else None
            )
            skus.append(ProfileSku(sku_ref, disabled, enabled))
        profiles[pname] = Profile(pname, tuple(skus))

    if not isinstance(top["selectors"], list) or not top["selectors"]:
        raise c.fail("selectors", "must be a non-empty list")
    selectors: list[Selector] = []
    for i, entry in enumerate(top["selectors"]):
        skey = f"selectors[{i}]"
        s = c.mapping(
            entry,
            skey,
            {"extensionProperty", "displayNamePrefix", "groupIds", "profile", "priority"},
        )
        kinds = [k for k in ("extensionProperty", "displayNamePrefix", "groupIds") if k in s]
        if len(kinds) != 1:
            raise c.fail(
                skey, "needs exactly one of extensionProperty, displayNamePrefix, groupIds"
            )
        profile = c.string(s["profile"], f"{skey}.profile") if "profile" in s else None
        if profile is not None and profile not in profiles:
            raise c.fail(
                f"{skey}.profile",
                f"unknown profile {profile!r} (defined: {', '.join(sorted(profiles))})",
            )
        priority = (
            c.integer(s["priority"], f"{skey}.priority", 0, 10_000)
            if "priority" in s
            else DEFAULT_PRIORITY
        )
        if kinds[0] == "extensionProperty":
            ext = c.string(
                s["extensionProperty"],
                f"{skey}.extensionProperty",
                EXTENSION_RE,
                "a directory extension name (extension_<appId without dashes>_<name>)",
            )
            if profile is not None:
                raise c.fail(
                    f"{skey}.profile",
                    "not allowed with extensionProperty: the property's value names the profile",
                )
            selectors.append(Selector(i, extension_property=ext, priority=priority))
        else:
            if profile is None:
                raise c.fail(f"{skey}.profile", f"is required with {kinds[0]}")
            if kinds[0] == "displayNamePrefix":
                prefix = c.string(s["displayNamePrefix"], f"{skey}.displayNamePrefix")
                if "'" in prefix:
                    raise c.fail(f"{skey}.displayNamePrefix", "must not contain a single quote")
                selectors.append(
                    Selector(i, display_name_prefix=prefix, profile=profile, priority=priority)
                )
            else:
                ids = c.string_list(s["groupIds"], f"{skey}.groupIds", GUID_RE, "a group id (GUID)")
                if not ids:
                    raise c.fail(f"{skey}.groupIds", "must list at least one group id")
                selectors.append(
                    Selector(
                        i,
                        group_ids=tuple(x.lower() for x in ids),
                        profile=profile,
                        priority=priority,
                    )
                )

    sku_settings: dict[str, SkuSettings] = {}
    if "skus" in top:
        raw = c.mapping(
            top["skus"], "skus", set(top["skus"]) if isinstance(top["skus"], dict) else set()
        )
        for ref, body in raw.items():
            key = f"skus.{ref}"
            b = c.mapping(body, key, {"reserve", "warnBelowFree", "warnBelowPercent"})
            sku_settings[ref] = SkuSettings(
                warn_below_percent=c.integer(
                    b["warnBelowPercent"], f"{key}.warnBelowPercent", 0, 100
                )
                if "warnBelowPercent" in b
                else None,
                reserve=c.integer(b["reserve"], f"{key}.reserve", 0, 10_000_000)
                if "reserve" in b
                else 0,
                warn_below_free=c.integer(b["warnBelowFree"], f"{key}.warnBelowFree", 0, 10_000_000)
                if "warnBelowFree" in b
                else None,
            )

    budget = ChangeBudget()
    if "changeBudget" in top:
        b = c.mapping(top["changeBudget"], "changeBudget", {"maxGroupsChanged", "maxUsersAffected"})
        budget = ChangeBudget(
            max_groups_changed=c.integer(
                b.get("maxGroupsChanged", budget.max_groups_changed),
                "changeBudget.maxGroupsChanged",
                0,
                100_000,
            ),
            max_users_affected=c.integer(
                b.get("maxUsersAffected", budget.max_users_affected),
                "changeBudget.maxUsersAffected",
                0,
                10_000_000,
            ),
        )

    remove = top.get("removeUnlistedLicenses", False)
    if not isinstance(remove, bool):
        raise c.fail("removeUnlistedLicenses", f"must be true or false, got {_kind(remove)}")

    alerts = AlertSettings()
    if "alerts" in top:
        a = c.mapping(
            top["alerts"],
            "alerts",
            {"cooldownHours", "forecastDays", "stuckProcessingHours", "recipients"},
        )
        recipients: dict[str, tuple[str, ...]] = {}
        if "recipients" in a:
            r = c.mapping(a["recipients"], "alerts.recipients", set(ALERT_KINDS))
            for kind, addresses in r.items():
                recipients[kind] = c.string_list(
                    addresses, f"alerts.recipients.{kind}", EMAIL_RE, "an email address"
                )
        alerts = AlertSettings(
            cooldown_hours=c.integer(
                a.get("cooldownHours", alerts.cooldown_hours), "alerts.cooldownHours", 1, 24 * 365
            ),
            forecast_days=c.integer(
                a.get("forecastDays", alerts.forecast_days), "alerts.forecastDays", 0, 3650
            ),
            stuck_processing_hours=c.integer(
                a.get("stuckProcessingHours", alerts.stuck_processing_hours),
                "alerts.stuckProcessingHours",
                1,
                24 * 90,
            ),
            recipients=recipients,
        )

    return Policy(source, digest, profiles, tuple(selectors), sku_settings, budget, remove, alerts)


# ---------------------------------------------------------------------------------------------
# Resolution against the tenant


def resolve(policy: Policy, skus: tuple[Sku, ...] | list[Sku]) -> ResolvedPolicy:
    """Resolve SKU and plan references; an unknown name is a PolicyError that names it."""

    def find_sku(ref: str, key: str) -> Sku:
        low = ref.lower()
        for s in skus:
            if s.sku_id.lower() == low or s.part_number.lower() == low:
                return s
        known = ", ".join(sorted(s.part_number for s in skus)) or "none"
        raise PolicyError(
            policy.source,
            key,
            f"SKU {ref!r} is not subscribed in this tenant (subscribed: {known})",
        )

    profiles: dict[str, ResolvedProfile] = {}
    for pname, profile in policy.profiles.items():
        resolved: list[ResolvedSku] = []
        for i, ps in enumerate(profile.skus):
            key = f"profiles.{pname}.skus[{i}]"
            sku = find_sku(ps.sku, f"{key}.sku")
            implicit: tuple[str, ...] = ()
            if ps.enabled_plans is not None:
                keep = {
                    _plan_id(sku, ref, f"{key}.enabledPlans", policy.source)
                    for ref in ps.enabled_plans
                }
                disabled = frozenset(p.id for p in sku.service_plans if p.id not in keep)
                implicit = tuple(sorted(p.name for p in sku.service_plans if p.id not in keep))
            else:
                disabled = frozenset(
                    _plan_id(sku, ref, f"{key}.disabledPlans", policy.source)
                    for ref in ps.disabled_plans or ()
                )
            resolved.append(ResolvedSku(sku.sku_id, sku.part_number, disabled, implicit))
        profiles[pname] = ResolvedProfile(pname, tuple(resolved))

    reserves: dict[str, int] = {}
    warn: dict[str, int] = {}
    warn_percent: dict[str, int] = {}
    for ref, ss in policy.sku_settings.items():
        sku = find_sku(ref, f"skus.{ref}")
        reserves[sku.sku_id] = ss.reserve
        if ss.warn_below_free is not None:
            warn[sku.sku_id] = ss.warn_below_free
        if ss.warn_below_percent is not None:
            warn_percent[sku.sku_id] = ss.warn_below_percent
    return ResolvedPolicy(policy, profiles, reserves, warn, warn_percent)


def _plan_id(sku: Sku, ref: str, key: str, source: str) -> str:
    plan = sku.plan_by_name_or_id(ref)
    if plan is None:
        known = ", ".join(sorted(p.name for p in sku.service_plans)) or "none"
        raise PolicyError(
            source,
            key,
            f"service plan {ref!r} is not part of {sku.part_number} (its plans: {known})",
        )
    return plan.id
