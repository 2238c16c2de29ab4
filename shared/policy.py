"""The licensing policy file: profiles, selectors, per-SKU reserves, change budget.

Validated strictly before any Graph call: a key given twice is refused (naming both lines), the
shape is checked against policy/licensing-policy.schema.json (unknown keys rejected), then the rules
across fields in code; every error names the file, the key and the problem. `resolve()` then checks
the SKU and plan names against the tenant.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from shared.errors import PolicyError
from shared.model import Sku

if TYPE_CHECKING:
    import jsonschema

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
    "group-shrank",  # a tagged group lost more direct members than suddenLoss allows
    "sku-dropped",  # a SKU's consumed seats fell more than suddenLoss allows
    # Supply (GET /directory/subscriptions), within subscriptionDays:
    "subscription-ending",  # an Enabled subscription's seats leave at nextLifecycleDateTime
    "subscription-status",  # a subscription in Warning, Suspended or LockedOut
    "subscription-reduced",  # a subscription now holds fewer licences than it did
    "subscription-trial",  # a trial subscription whose seats users hold
)


@dataclass(frozen=True)
class AlertSettings:
    cooldown_hours: int = 72  # a continuing condition is mailed again after this long
    forecast_days: int = 30  # warn when a SKU runs out within this many days at its growth
    stuck_processing_hours: int = 24
    subscription_days: int = 30  # warn of subscription ends and cuts this many days ahead
    recipients: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> addresses


@dataclass(frozen=True)
class ChangeBudget:
    max_groups_changed: int = 50
    max_users_affected: int = 5000
    max_direct_removals: int = 500  # direct assignments removed (migration opt-in)
    max_members_removed: int = 50  # members removed from licensing groups (reclaim opt-in)


# Opt-ins that remove something (off by default; docs/runbook.md "Removals").
@dataclass(frozen=True)
class MigrationSettings:
    # remove a direct assignment when the group's own one is Active and enables every plan it does
    remove_redundant_direct: bool = False
    # list users who hold a profile SKU only directly, outside every tagged group: a tenant-wide
    # read of the SKU's holders (GET /users with an advanced query), so opt-in
    report_outside_groups: bool = False


@dataclass(frozen=True)
class ReclaimSettings:
    # remove disabled accounts from licensing groups once seen disabled this many days; None: off
    remove_disabled_members_after_days: int | None = None


@dataclass(frozen=True)
class SuddenLossSettings:
    """A drop since the last successful run larger than both opens an alert and stops removals."""

    percent: int = 20
    min_users: int = 50


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
    migration: MigrationSettings = MigrationSettings()
    reclaim: ReclaimSettings = ReclaimSettings()
    sudden_loss: SuddenLossSettings = SuddenLossSettings()

    def opt_in_keys(self) -> frozenset[str]:
        """The removal opt-ins this policy turns on (keys of graph.OPT_IN_PERMISSIONS)."""
        on = set()
        if self.migration.remove_redundant_direct:
            on.add("migration.removeRedundantDirect")
        if self.reclaim.remove_disabled_members_after_days is not None:
            on.add("reclaim.removeDisabledMembersAfterDays")
        return frozenset(on)


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

# The policy's shape (keys, types, ranges, patterns) lives in this JSON Schema, shipped with the app
# and referenced from the annotated example so editors validate and complete it. Rules across fields
# and against the tenant stay in code below.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "policy" / "licensing-policy.schema.json"


def _strict_integer(_checker: Any, value: Any) -> bool:
    # JSON Schema counts 1.0 as an integer; a seat count written as 1.0 is more likely a mistake.
    return isinstance(value, int) and not isinstance(value, bool)


@functools.cache
def policy_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@functools.cache
def _schema_validator(path: Path = SCHEMA_PATH) -> Any:
    # Imported here: jsonschema (with referencing, rpds) takes 0.1-0.5 s to import, which only
    # code that reads a policy needs to pay, not the HTTP status and run-listing endpoints.
    import jsonschema

    draft7 = jsonschema.Draft7Validator
    validator = jsonschema.validators.extend(
        draft7, type_checker=draft7.TYPE_CHECKER.redefine("integer", _strict_integer)
    )
    schema = policy_schema() if path == SCHEMA_PATH else json.loads(path.read_text("utf-8"))
    validator.check_schema(schema)
    return validator(schema)


def schema_problem(data: Any, schema_path: Path) -> tuple[str, str] | None:
    """The first problem (dotted key, problem) of `data` against a JSON Schema shipped with the
    app, in the words the policy's errors use; None when it conforms. Also for the tenants file."""
    errors = list(_schema_validator(schema_path).iter_errors(data))
    if not errors:
        return None
    first = min(errors, key=lambda e: [(str(type(s)), s) for s in e.absolute_path])
    return _schema_problem(first)


class _Checker:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, problem: str) -> PolicyError:
        return PolicyError(self.file, key, problem)

    def unique(self, items: list[str], key: str) -> tuple[str, ...]:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.lower() in seen:
                raise self.fail(f"{key}[{i}]", f"{item!r} is listed twice")
            seen.add(item.lower())
        return tuple(items)


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


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _dotted(path: Any) -> str:
    key = ""
    for step in path:
        key = _join(key, step)
    return key


_EXPECTED = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
}


def _schema_problem(error: jsonschema.ValidationError) -> tuple[str, str]:
    """A jsonschema error as (dotted key, problem) in the words the rest of the app uses."""
    key = _dotted(error.absolute_path)
    value = error.instance
    message = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    kind = error.validator
    if kind == "type":
        return (
            key,
            f"must be {_EXPECTED.get(str(error.validator_value), 'valid')}, got {_kind(value)}",
        )
    if kind == "required":
        missing = sorted(k for k in error.validator_value if k not in value)
        return _join(key, missing[0]), "is required"
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(str(k) for k in value if k not in allowed)
        return _join(key, unknown[0]), f"unknown key (allowed here: {', '.join(allowed)})"
    if kind in ("minimum", "maximum"):
        low, high = error.schema.get("minimum"), error.schema.get("maximum")
        return key, f"must be between {low} and {high}, got {value}"
    if kind == "const":
        return key, f"{message or f'must be {error.validator_value!r}'}, got {value!r}"
    if "propertyNames" in error.schema_path:
        # The error is on the name itself, reported at the mapping that holds it.
        return _join(key, str(value)), message or f"{value!r} is not a valid name"
    if kind == "pattern" and message and message.startswith("is "):
        return key, f"{value!r} {message}"
    return key, message or error.message


def _schema_check(data: Any, c: _Checker) -> None:
    errors = list(_schema_validator().iter_errors(data))
    if not errors:
        return
    # The first problem in document order: the one a reader meets first.
    first = min(errors, key=lambda e: [(str(type(s)), s) for s in e.absolute_path])
    key, problem = _schema_problem(first)
    raise c.fail(key, problem)


def _string_keys(data: Any, c: _Checker, key: str = "") -> None:
    # YAML allows `1: x` or `null: x`; every key the policy knows is a string.
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(k, str):
                raise c.fail(key, f"keys must be strings, got {k!r}")
            _string_keys(v, c, _join(key, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _string_keys(v, c, _join(key, i))


# ---- reading the text: YAML or JSON, a key given twice is an error, not "the last one wins"


class _DuplicateKey(Exception):
    def __init__(self, key: str, lines: tuple[int, int]) -> None:
        self.key = key
        self.lines = lines


def _duplicate_problem(dup: _DuplicateKey) -> str:
    first, second = dup.lines
    return f"given twice (line {first} and line {second}); say it once"


class _PolicyYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice, naming its path and both lines."""

    def check_duplicates(self, node: yaml.Node, path: str = "") -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges a mapping in: overriding its keys is its purpose
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                hashable = key if isinstance(key, str | int | float | bool | None) else repr(key)
                child = _join(path, key if isinstance(key, str) else repr(key))
                if hashable in seen:
                    raise _DuplicateKey(child, (seen[hashable], line))
                seen[hashable] = line
                self.check_duplicates(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.check_duplicates(item, _join(path, i))


def _load_yaml(text: str) -> Any:
    loader = _PolicyYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        loader.check_duplicates(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _JsonDuplicate(Exception):
    pass


def _load_json(text: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise _JsonDuplicate
            out[k] = v
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except _JsonDuplicate:
        raise _json_duplicate(text) from None


def _json_duplicate(text: str) -> _DuplicateKey:
    """Walk valid JSON that has a repeated key to find its path and the lines of both."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")

    def skip(pos: int) -> int:
        match = ws.match(text, pos)
        return match.end() if match else pos

    def line(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def value(pos: int, path: str) -> int:
        pos = skip(pos)
        if text[pos] == "{":
            seen: dict[str, int] = {}
            pos = skip(pos + 1)
            while text[pos] != "}":
                key, end = decoder.raw_decode(text, pos)  # a key is a JSON string
                child = _join(path, key)
                if key in seen:
                    raise _DuplicateKey(child, (seen[key], line(pos)))
                seen[key] = line(pos)
                pos = value(skip(end) + 1, child)  # past the ':'
                pos = skip(pos)
                if text[pos] == ",":
                    pos = skip(pos + 1)
            return pos + 1
        if text[pos] == "[":
            pos, i = skip(pos + 1), 0
            while text[pos] != "]":
                pos = skip(value(pos, _join(path, i)))
                i += 1
                if text[pos] == ",":
                    pos = skip(pos + 1)
            return pos + 1
        _, end = decoder.raw_decode(text, pos)
        return end

    try:
        value(0, "")
    except _DuplicateKey as dup:
        return dup
    raise AssertionError("json.loads saw a repeated key that the walk did not find")


def load_policy(path: Path, overrides: Mapping[str, Any] | None = None) -> Policy:
    """Read and validate a policy file (YAML or JSON). Raises PolicyError.

    overrides: a tenant's changes to a shared policy, merged over the file before validation
    (see merge_overrides); the result is validated as a whole, so an override cannot make a
    policy the schema refuses."""
    name = str(path)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(name, "", "file not found (set LICENSING_POLICY_PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(name, "", f"cannot read the file: {exc}") from None
    return parse_policy(raw_text, name, overrides)


def merge_overrides(base: Any, overrides: Mapping[str, Any]) -> Any:
    """`overrides` over `base`: mappings merge key by key, anything else (lists included)
    replaces; `null` removes the key. So a tenant can change one profile or one budget figure
    without restating the policy."""
    if not isinstance(base, dict):
        return {k: v for k, v in overrides.items() if v is not None}
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_policy(
    text: str, source: str = "<policy>", overrides: Mapping[str, Any] | None = None
) -> Policy:
    data = read_document(text, source)
    body = text
    if overrides:
        data = merge_overrides(data, overrides)
        source = f"{source} with the tenant's overrides"
        body += "\n" + json.dumps(overrides, sort_keys=True, default=str)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    return _validate(data, source, digest)


def read_document(text: str, source: str) -> Any:
    """YAML (or JSON, by the file name) into Python data; PolicyError naming the file, the line and
    the problem, including a key given twice."""
    try:
        data = _load_json(text) if source.endswith(".json") else _load_yaml(text)
    except _DuplicateKey as dup:
        raise PolicyError(source, dup.key, _duplicate_problem(dup)) from None
    except json.JSONDecodeError as exc:
        raise PolicyError(
            source, "", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, "", f"not valid YAML: {problem}{where}") from None
    return data


def _validate(data: Any, source: str, digest: str) -> Policy:
    """The schema checks the shape; this builds the Policy and checks the rules across fields."""
    c = _Checker(source)
    _string_keys(data, c)
    _schema_check(data, c)
    top: dict[str, Any] = data

    profiles: dict[str, Profile] = {}
    for pname, body in top["profiles"].items():
        key = f"profiles.{pname}"
        skus: list[ProfileSku] = []
        seen_skus: set[str] = set()
        for i, e in enumerate(body["skus"]):
            ekey = f"{key}.skus[{i}]"
            sku_ref: str = e["sku"]
            if sku_ref.lower() in seen_skus:
                raise c.fail(f"{ekey}.sku", f"{sku_ref!r} appears twice in this profile")
            seen_skus.add(sku_ref.lower())
            if "disabledPlans" in e and "enabledPlans" in e:
                raise c.fail(
                    ekey, "give either disabledPlans or enabledPlans (an allow-list), not both"
                )
            disabled = (
                c.unique(e["disabledPlans"], f"{ekey}.disabledPlans")
                if "disabledPlans" in e
                else None
            )
            enabled = (
                c.unique(e["enabledPlans"], f"{ekey}.enabledPlans") if "enabledPlans" in e else None
            )
            skus.append(ProfileSku(sku_ref, disabled, enabled))
        profiles[pname] = Profile(pname, tuple(skus))

    selectors: list[Selector] = []
    for i, s in enumerate(top["selectors"]):
        skey = f"selectors[{i}]"
        kinds = [k for k in ("extensionProperty", "displayNamePrefix", "groupIds") if k in s]
        if len(kinds) != 1:
            raise c.fail(
                skey, "needs exactly one of extensionProperty, displayNamePrefix, groupIds"
            )
        profile: str | None = s.get("profile")
        if profile is not None and profile not in profiles:
            raise c.fail(
                f"{skey}.profile",
                f"unknown profile {profile!r} (defined: {', '.join(sorted(profiles))})",
            )
        priority: int = s.get("priority", DEFAULT_PRIORITY)
        if kinds[0] == "extensionProperty":
            if profile is not None:
                raise c.fail(
                    f"{skey}.profile",
                    "not allowed with extensionProperty: the property's value names the profile",
                )
            selectors.append(
                Selector(i, extension_property=s["extensionProperty"], priority=priority)
            )
        elif profile is None:
            raise c.fail(f"{skey}.profile", f"is required with {kinds[0]}")
        elif kinds[0] == "displayNamePrefix":
            prefix: str = s["displayNamePrefix"]
            if "'" in prefix:
                # It goes into a Graph $filter string literal.
                raise c.fail(f"{skey}.displayNamePrefix", "must not contain a single quote")
            selectors.append(
                Selector(i, display_name_prefix=prefix, profile=profile, priority=priority)
            )
        else:
            ids = c.unique(s["groupIds"], f"{skey}.groupIds")
            selectors.append(
                Selector(
                    i, group_ids=tuple(x.lower() for x in ids), profile=profile, priority=priority
                )
            )

    sku_settings = {
        ref: SkuSettings(
            reserve=b.get("reserve", 0),
            warn_below_free=b.get("warnBelowFree"),
            warn_below_percent=b.get("warnBelowPercent"),
        )
        for ref, b in top.get("skus", {}).items()
    }

    b = top.get("changeBudget", {})
    default_budget = ChangeBudget()
    budget = ChangeBudget(
        max_groups_changed=b.get("maxGroupsChanged", default_budget.max_groups_changed),
        max_users_affected=b.get("maxUsersAffected", default_budget.max_users_affected),
        max_direct_removals=b.get("maxDirectRemovals", default_budget.max_direct_removals),
        max_members_removed=b.get("maxMembersRemoved", default_budget.max_members_removed),
    )

    remove: bool = top.get("removeUnlistedLicenses", False)

    a = top.get("alerts", {})
    default_alerts = AlertSettings()
    recipients = {
        kind: c.unique(addresses, f"alerts.recipients.{kind}")
        for kind, addresses in a.get("recipients", {}).items()
    }
    alerts = AlertSettings(
        cooldown_hours=a.get("cooldownHours", default_alerts.cooldown_hours),
        forecast_days=a.get("forecastDays", default_alerts.forecast_days),
        stuck_processing_hours=a.get("stuckProcessingHours", default_alerts.stuck_processing_hours),
        subscription_days=a.get("subscriptionDays", default_alerts.subscription_days),
        recipients=recipients,
    )

    m = top.get("migration", {})
    r = top.get("reclaim", {})
    loss = top.get("suddenLoss", {})
    default_loss = SuddenLossSettings()
    return Policy(
        source,
        digest,
        profiles,
        tuple(selectors),
        sku_settings,
        budget,
        remove,
        alerts,
        MigrationSettings(
            remove_redundant_direct=m.get("removeRedundantDirect", False),
            report_outside_groups=m.get("reportOutsideGroups", False),
        ),
        ReclaimSettings(r.get("removeDisabledMembersAfterDays")),
        SuddenLossSettings(
            percent=loss.get("percent", default_loss.percent),
            min_users=loss.get("minUsers", default_loss.min_users),
        ),
    )


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
