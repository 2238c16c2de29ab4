"""Deterministic synthetic tenants for benchmarks and scale tests.

`python -m simulator serve --generate users=100000,groups=500,skus=20 --seed 7` or
`Tenant.generate(users=..., groups=..., skus=..., seed=7)`. The same spec and seed always give the
same tenant (`Tenant.state_digest()`); `policy_for(spec)` writes a licensing policy (YAML, the
project's format) whose profiles are the ones the generated groups are tagged with.

Shape (see docs/simulator.md "Generated tenants"):
- users: members first, then guests (`#EXT#` UPNs, `userType` Guest, `creationType` Invitation);
  names from fixed lists, UPN `given.surname<index>@<domain>`, usage locations from ten countries
  (3 % have none: the tenant's `defaultUsageLocation` US applies), 1 % disabled, 2 % of members
  with a direct licence of the first SKU. Properties are computed on demand from compact arrays.
- groups: heavy-tailed sizes (Pareto, 5 .. 20,000 direct members; about 1.5 memberships per
  member user), each a contiguous run of members (departments overlap); `tagged` of them carry the
  licensing-profile extension: half compliant, 20 % drifted, 30 % unlicensed. A share of groups
  contain guests (about guests x 5) or a nested group (`nested`); 5 % of untagged groups carry an
  unmanaged licence and 5 % are mail-enabled distribution lists.
- seats: initial processing ran with `errors` x demand fewer seats than needed (those users are in
  CountViolation); seats were bought since so that most unlicensed tagged groups fit, and about a
  quarter of the SKUs needed by unlicensed groups are about 15 % short.
"""

from __future__ import annotations

import gc
import math
import random
import re
import uuid
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from simulator.tenant import (
    COMPLETE,
    Group,
    PropsSource,
    Sku,
    Tenant,
    User,
)

EXTENSION = "extension_0f5e1b7a9c2d4e6f8a1b3c5d7e9f0a2b_licensingProfile"
DOMAIN = "contoso-sim.onmicrosoft.com"
GUEST_DOMAIN = "fabrikam.com"
DEFAULT_LOCATION = "US"
MIN_GROUP = 5
MAX_GROUP = 20_000
MEMBERSHIPS_PER_USER = 1.5
_NAMESPACE = uuid.UUID("6f1c2a4e-7b3d-4c59-9e8a-0d2f4b6a8c1e")  # stable ids for SKUs and plans

# Real part numbers and service plan names (ids are derived, not Microsoft's).
CATALOG: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "ENTERPRISEPREMIUM",
        (
            "EXCHANGE_S_ENTERPRISE",
            "SHAREPOINTENTERPRISE",
            "TEAMS1",
            "YAMMER_ENTERPRISE",
            "MCOSTANDARD",
            "OFFICESUBSCRIPTION",
        ),
    ),
    ("EMSPREMIUM", ("AAD_PREMIUM", "AAD_PREMIUM_P2", "INTUNE_A", "RMS_S_PREMIUM")),
    ("POWER_BI_PRO", ("BI_AZURE_P2",)),
    (
        "ENTERPRISEPACK",
        (
            "EXCHANGE_S_ENTERPRISE",
            "SHAREPOINTENTERPRISE",
            "TEAMS1",
            "YAMMER_ENTERPRISE",
            "OFFICESUBSCRIPTION",
        ),
    ),
    ("SPE_E3", ("EXCHANGE_S_ENTERPRISE", "TEAMS1", "INTUNE_A", "AAD_PREMIUM", "WIN10_PRO_ENT_SUB")),
    ("SPE_E5", ("EXCHANGE_S_ENTERPRISE", "TEAMS1", "INTUNE_A", "AAD_PREMIUM_P2", "MCOEV")),
    (
        "PROJECTPREMIUM",
        ("PROJECT_CLIENT_SUBSCRIPTION", "SHAREPOINT_PROJECT", "PROJECT_PROFESSIONAL"),
    ),
    ("VISIOCLIENT", ("VISIO_CLIENT_SUBSCRIPTION", "VISIOONLINE")),
    ("STANDARDPACK", ("EXCHANGE_S_STANDARD", "SHAREPOINTSTANDARD", "TEAMS1")),
    ("DESKLESSPACK", ("EXCHANGE_S_DESKLESS", "SHAREPOINTDESKLESS", "TEAMS1")),
    ("EMS", ("AAD_PREMIUM", "INTUNE_A", "RMS_S_ENTERPRISE")),
    ("MCOEV", ("MCOEV",)),
    ("ATP_ENTERPRISE", ("ATP_ENTERPRISE",)),
    ("POWER_BI_PREMIUM_PER_USER", ("BI_AZURE_P3",)),
    ("FLOW_PER_USER", ("FLOW_PER_USER",)),
    ("POWERAPPS_PER_USER", ("POWERAPPS_PER_USER", "DYN365_CDS_P2")),
)

GIVEN = [
    "Amelia",
    "Oliver",
    "Isla",
    "George",
    "Ava",
    "Noah",
    "Mia",
    "Arthur",
    "Ivy",
    "Leo",
    "Freya",
    "Oscar",
    "Lily",
    "Harry",
    "Grace",
    "Jack",
    "Sophia",
    "Charlie",
    "Ella",
    "Muhammad",
    "Aisha",
    "Ravi",
    "Priya",
    "Wei",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Lucas",
    "Sofia",
    "Mateo",
    "Chloe",
    "Ethan",
    "Zara",
    "Liam",
    "Nora",
    "Felix",
    "Elena",
    "Hugo",
    "Clara",
    "Omar",
    "Leila",
    "Diego",
    "Lucia",
    "Sven",
    "Astrid",
    "Pavel",
    "Anna",
    "Tomasz",
    "Olga",
]
SURNAMES = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Wright",
    "Robinson",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Hughes",
    "Edwards",
    "Turner",
    "Hill",
    "Moore",
    "Khan",
    "Chen",
    "Wang",
    "Tanaka",
    "Sato",
    "Silva",
    "Santos",
    "Garcia",
    "Martinez",
    "Rossi",
    "Muller",
    "Schmidt",
    "Novak",
    "Kowalski",
    "Jensen",
    "Hansen",
    "Larsen",
    "Dubois",
    "Laurent",
    "Costa",
    "Ferreira",
    "Ivanova",
    "Okafor",
    "Mensah",
]
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "IN", "JP", "BR", "CA", "AU")
DEPARTMENTS = [
    "Finance",
    "Sales",
    "Engineering",
    "Legal",
    "Support",
    "Marketing",
    "HR",
    "Analytics",
    "Operations",
    "Research",
    "Facilities",
    "Procurement",
    "Security",
    "Design",
    "Product",
    "Data",
]
_UPN_RE = re.compile(r"^[a-z]+\.[a-z]+(\d+)(?:_" + re.escape(GUEST_DOMAIN) + r"#ext#)?@")


@dataclass(frozen=True)
class GenerateSpec:
    """Sizes and shares of a generated tenant (`users=N,groups=G,skus=S,...` on the CLI)."""

    users: int = 1000
    groups: int = 50
    skus: int = 5
    guests: float = 0.01  # share of users that are B2B guests
    nested: float = 0.05  # share of groups with a nested group among their members
    errors: float = 0.01  # share of licensed users left in CountViolation by the last processing
    tagged: int | None = None  # groups with the licensing-profile extension (default groups // 4)

    def __post_init__(self) -> None:
        if self.users < 1 or self.groups < 1 or self.skus < 1:
            raise ValueError("users, groups and skus must be at least 1")
        for name in ("guests", "nested", "errors"):
            value = getattr(self, name)
            if not 0 <= value <= 0.5:
                raise ValueError(f"{name} must be a share between 0 and 0.5, got {value}")
        if self.tagged is not None and not 0 <= self.tagged <= self.groups:
            raise ValueError(f"tagged must be between 0 and groups ({self.groups})")

    @property
    def tagged_groups(self) -> int:
        return self.groups // 4 if self.tagged is None else self.tagged


def parse_spec(text: str) -> GenerateSpec:
    """`users=100000,groups=500,skus=20[,guests=0.01,nested=0.05,errors=0.01,tagged=100]`."""
    known = {f.name: f for f in fields(GenerateSpec)}
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in known:
            raise ValueError(f"unknown or malformed option {part!r} (known: {', '.join(known)})")
        try:
            values[key] = (
                float(raw) if key in ("guests", "nested", "errors") else int(raw.replace("_", ""))
            )
        except ValueError:
            raise ValueError(f"{key}: not a number: {raw!r}") from None
    return GenerateSpec(**values)


# ---- SKUs and profiles (depend on the spec only, not on the seed) --------------------------


@dataclass(frozen=True)
class _SkuDef:
    part: str
    sku_id: str
    plans: tuple[tuple[str, str], ...]  # (servicePlanId, servicePlanName)


@dataclass(frozen=True)
class _Profile:
    name: str
    skus: tuple[tuple[int, tuple[str, ...]], ...]  # (sku index, disabled plan names)


def _stable_id(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def _sku_defs(count: int) -> list[_SkuDef]:
    out = []
    for k in range(count):
        if k < len(CATALOG):
            part, plan_names = CATALOG[k]
        else:
            part = f"SIMSKU_{k:03d}"
            plan_names = tuple(f"{part}_PLAN_{j}" for j in range(1 + k % 4))
        plans = tuple((_stable_id("plan:" + p), p) for p in plan_names)
        out.append(_SkuDef(part, _stable_id("sku:" + part), plans))
    return out


def _profiles(skus: list[_SkuDef]) -> list[_Profile]:
    """One profile per SKU (named by its part number, every plan on), a variant without the
    last plan for up to four multi-plan SKUs, and up to three two-SKU bundles."""
    out = [_Profile(s.part, ((k, ()),)) for k, s in enumerate(skus)]
    multi = [k for k, s in enumerate(skus) if len(s.plans) > 1][:4]
    for k in multi:
        last = skus[k].plans[-1][1]
        out.append(_Profile(f"{skus[k].part}-no-{last}", ((k, (last,)),)))
    for k in range(min(len(skus) - 1, 3)):
        out.append(_Profile(f"bundle-{k + 1}", ((k, ()), (k + 1, ()))))
    return out


def policy_for(spec: GenerateSpec | str) -> str:
    """A licensing policy (YAML) for a tenant generated from `spec` (any seed)."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    skus = _sku_defs(spec.skus)
    lines = [
        "# Licensing policy for a generated simulator tenant "
        f"(users={spec.users},groups={spec.groups},skus={spec.skus}).",
        "# Written by simulator.generate.policy_for: profiles match the groups' extension values.",
        "version: 1",
        "profiles:",
    ]
    for p in _profiles(skus):
        lines += [f"  {p.name}:", "    skus:"]
        for k, disabled in p.skus:
            lines.append(f"      - sku: {skus[k].part}")
            if disabled:
                lines.append(f"        disabledPlans: [{', '.join(disabled)}]")
    lines += [
        "selectors:",
        f"  - extensionProperty: {EXTENSION}",
        "changeBudget:",
        f"  maxGroupsChanged: {min(max(spec.tagged_groups, 1), 100_000)}",
        f"  maxUsersAffected: {min(spec.users, 10_000_000)}",
        "removeUnlistedLicenses: false",
    ]
    return "\n".join(lines) + "\n"


# ---- users ---------------------------------------------------------------------------------


class GeneratedUsers(PropsSource):
    """Users' properties computed from their index and two byte arrays (no dict per user)."""

    def __init__(
        self,
        ids: list[str],
        members: int,
        locations: bytes,
        flags: bytes,
        salt: tuple[int, int],
    ) -> None:
        self.ids = ids
        self.members = members  # indices >= members are guests
        self.locations = locations  # 0 = no usageLocation, k = COUNTRIES[k - 1]
        self.flags = flags  # bit 0: account disabled, bit 1: guest not yet accepted
        self.salt = salt
        self.props = lru_cache(maxsize=4096)(self._props)  # type: ignore[method-assign]

    def _names(self, i: int) -> tuple[str, str]:
        a, b = self.salt
        return GIVEN[(i * 7919 + a) % len(GIVEN)], SURNAMES[(i * 104_729 + b) % len(SURNAMES)]

    def upn(self, index: int) -> str:
        given, surname = self._names(index)
        local = f"{given.lower()}.{surname.lower()}{index}"
        if index >= self.members:
            return f"{local}_{GUEST_DOMAIN}#EXT#@{DOMAIN}"
        return f"{local}@{DOMAIN}"

    def _props(self, index: int) -> dict[str, Any]:
        given, surname = self._names(index)
        loc = self.locations[index]
        flags = self.flags[index]
        upn = self.upn(index)
        props: dict[str, Any] = {
            "displayName": f"{given} {surname}",
            "givenName": given,
            "surname": surname,
            "userPrincipalName": upn,
            "usageLocation": COUNTRIES[loc - 1] if loc else None,
            "accountEnabled": not flags & 1,
            "department": DEPARTMENTS[index * 31 % len(DEPARTMENTS)],
        }
        if index >= self.members:
            props.update(
                mail=f"{given.lower()}.{surname.lower()}{index}@{GUEST_DOMAIN}",
                userType="Guest",
                creationType="Invitation",
                externalUserState="PendingAcceptance" if flags & 2 else "Accepted",
            )
        else:
            props.update(mail=upn, userType="Member")
        return props

    def find_upn(self, upn_lower: str) -> str | None:
        m = _UPN_RE.match(upn_lower)
        if m is None:
            return None
        index = int(m[1])
        if index >= len(self.ids) or self.upn(index).lower() != upn_lower:
            return None
        return self.ids[index]


def _guids(rng: random.Random, count: int) -> list[str]:
    """`count` random version-4 GUIDs from one call to the seeded generator (fast)."""
    raw = rng.randbytes(16 * count).hex()
    return [
        f"{raw[i : i + 8]}-{raw[i + 8 : i + 12]}-4{raw[i + 13 : i + 16]}-"
        f"{'89ab'[(i >> 5) & 3]}{raw[i + 17 : i + 20]}-{raw[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def _byte_table(shares: list[tuple[int, float]]) -> bytes:
    """A 256-entry translation table: random bytes -> values with the given shares."""
    table = bytearray()
    for value, share in shares:
        table += bytes([value]) * round(256 * share)
    return bytes((table + bytes([shares[-1][0]]) * 256)[:256])


# ---- the tenant ----------------------------------------------------------------------------


def _group_sizes(rng: random.Random, count: int, members: int) -> list[int]:
    """Heavy-tailed (log-normal, sigma 1.8) sizes between 5 and 20,000 (or less in a small
    tenant), scaled so the groups hold about 1.5 memberships per member user: most groups have
    tens of members, a few thousands. The first group is the largest, the second the smallest."""
    target = min(MEMBERSHIPS_PER_USER * members, count * min(MAX_GROUP, members))
    cap = max(1, min(MAX_GROUP, members, max(MIN_GROUP, round(target / 3))))
    low = min(MIN_GROUP, cap)
    draws = [rng.gauss(0.0, 1.8) for _ in range(count)]

    def sizes(mu: float) -> list[int]:
        return [max(low, min(cap, round(math.exp(mu + z)))) for z in draws]

    lo, hi = -10.0, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if sum(sizes(mid)) < target:
            lo = mid
        else:
            hi = mid
    out = sizes(lo)
    if count >= 10:
        out[0], out[1] = cap, low
    return out


def _pick_tagged(rng: random.Random, sizes: list[int], count: int) -> set[int]:
    """`count` groups, larger ones more likely (weight sqrt(size)): licensing groups are big."""
    keys = sorted(
        ((rng.random() ** (1 / math.sqrt(s)), g) for g, s in enumerate(sizes)), reverse=True
    )
    return {g for _, g in keys[:count]}


def generate_tenant(spec: GenerateSpec, seed: int = 0) -> Tenant:
    """Build the tenant. The cyclic garbage collector is paused meanwhile: millions of new
    objects would otherwise trigger full collections that cost more than the work itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(spec, seed)
    finally:
        if enabled:
            gc.enable()


def _generate(spec: GenerateSpec, seed: int) -> Tenant:
    rng = random.Random(f"simulator-generate:{seed}")
    tenant = Tenant(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
    tenant.default_usage_location = DEFAULT_LOCATION
    n = spec.users
    n_guests = min(n - 1, round(n * spec.guests)) if spec.guests else 0
    n_members = n - n_guests

    # SKUs (seats are set once demand is known).
    sku_defs = _sku_defs(spec.skus)
    for d in sku_defs:
        tenant.skus[d.sku_id] = Sku(
            sku_id=d.sku_id,
            part_number=d.part,
            applies_to="User",
            capability_status="Enabled",
            prepaid={"enabled": 0, "warning": 0, "suspended": 0, "lockedOut": 0},
            enabled_at_load=0,
            service_plans=[
                {
                    "servicePlanId": pid,
                    "servicePlanName": name,
                    "provisioningStatus": "Success",
                    "appliesTo": "User",
                }
                for pid, name in d.plans
            ],
            extra={"accountName": "Contoso (simulated)"},
        )
        tenant._consumed[d.sku_id] = 0
    plan_ids = [{name: pid for pid, name in d.plans} for d in sku_defs]
    profiles = _profiles(sku_defs)

    def licences(profile: _Profile) -> dict[str, list[str]]:
        return {
            sku_defs[k].sku_id: [plan_ids[k][p] for p in disabled] for k, disabled in profile.skus
        }

    # Users.
    ids = _guids(rng, n)
    no_location = 0.03
    loc_shares = [(0, no_location)] + [(c + 1, (1 - no_location) / 10) for c in range(10)]
    locations = rng.randbytes(n).translate(_byte_table(loc_shares))
    flags = rng.randbytes(n).translate(_byte_table([(1, 0.01), (2, 0.2), (0, 0.79)]))
    salt = (rng.randrange(1 << 20), rng.randrange(1 << 20))
    source = GeneratedUsers(ids, n_members, locations, flags, salt)
    tenant.props_source = source
    direct_share = rng.randbytes(n_members).translate(_byte_table([(1, 0.02), (0, 0.98)]))
    first_sku = sku_defs[0].sku_id
    users = {uid: User(uid, source=source, index=i) for i, uid in enumerate(ids)}
    direct_users = [i for i in range(n_members) if direct_share[i]]
    for i in direct_users:
        users[ids[i]].direct = {first_sku: []}
    tenant.users = users

    # Groups.
    g_count = spec.groups
    gids = _guids(rng, g_count)
    sizes = _group_sizes(rng, g_count, n_members)
    tagged = _pick_tagged(rng, sizes, spec.tagged_groups)
    pattern = "CUCDCUCDCU"  # compliant 50 %, unlicensed 30 %, drifted 20 %
    kinds = {
        g: pattern[j % len(pattern)] for j, g in enumerate(sorted(tagged, key=gids.__getitem__))
    }
    guest_share = min(0.5, spec.guests * 5) if n_guests else 0.0
    # Seat demand per SKU as byte masks over user indices: licensed now / needed by the policy.
    have = [bytearray(n) for _ in sku_defs]
    want = [bytearray(n) for _ in sku_defs]
    sku_index = {d.sku_id: k for k, d in enumerate(sku_defs)}
    ones = b"\x01" * max([*sizes, 1])

    def mark(masks: list[bytearray], k: int, runs: list[tuple[int, int]], extra: list[int]) -> None:
        for a, b in runs:
            masks[k][a:b] = ones[: b - a]
        for i in extra:
            masks[k][i] = 1

    for g in range(g_count):
        size = min(sizes[g], n_members)
        start = rng.randrange(n_members)
        end = start + size
        runs = [(start, min(end, n_members))] + ([(0, end - n_members)] if end > n_members else [])
        members = ids[runs[0][0] : runs[0][1]]
        if len(runs) > 1:
            members += ids[runs[1][0] : runs[1][1]]
        guest_idx: list[int] = []
        if guest_share and rng.random() < guest_share:
            guest_idx = sorted({rng.randrange(n_members, n) for _ in range(rng.randint(1, 3))})
            members += [ids[i] for i in guest_idx]
        if g + 1 < g_count and rng.random() < spec.nested:
            members.append(gids[rng.randrange(g + 1, g_count)])  # only later groups: no cycles
        dept = DEPARTMENTS[g % len(DEPARTMENTS)]
        ext: dict[str, Any] = {}
        lic: dict[str, list[str]] = {}
        security, mail_enabled = True, False
        if g in tagged:
            profile = profiles[rng.randrange(len(profiles))]
            ext[EXTENSION] = profile.name
            name = f"LIC-{g:05d}-{profile.name}"
            target = licences(profile)
            kind = kinds[g]
            if kind == "C":
                lic = target
            elif kind == "D":
                lic = _drift(target, profile, sku_defs, plan_ids)
            for sku_id in target:
                if sku_id not in lic or kind == "U":
                    mark(want, sku_index[sku_id], runs, guest_idx)
        else:
            name = f"GRP-{dept}-{g:05d}"
            roll = rng.random()
            if roll < 0.05:
                k = rng.randrange(len(sku_defs))
                lic = {sku_defs[k].sku_id: []}
            elif roll < 0.10:
                security, mail_enabled = False, True
        for sku_id in lic:
            mark(have, sku_index[sku_id], runs, guest_idx)
        nick = name.lower().replace("_", "-")
        group = Group(
            id=gids[g],
            props={
                "displayName": name,
                "description": f"{dept} ({'licensing' if ext else 'team'} group)",
                "securityEnabled": security,
                "mailEnabled": mail_enabled,
                "mailNickname": nick,
                "mail": f"{nick}@{DOMAIN}" if mail_enabled else None,
                "groupTypes": [],
                "createdDateTime": f"20{15 + g % 10}-0{1 + g % 9}-1{g % 10}T09:00:00Z",
                "visibility": None,
            },
            extensions=ext,
            licenses=lic,
            members=members,
            processing_state=COMPLETE,
            member_set=set(members),
        )
        tenant.groups[group.id] = group

    # Seats: the last processing ran short by `errors` of the demand; seats bought since cover
    # the errors and the unlicensed groups, except for a few SKUs that stay short.
    for i in direct_users:
        have[0][i] = 1
    needed = [k for k in range(len(sku_defs)) if any(want[k])]
    short = set(rng.sample(needed, max(1, len(needed) // 4))) if needed else set()
    for k, d in enumerate(sku_defs):
        now = have[k].count(1)
        extra = _count_new(want[k], have[k])
        at_load = now - math.floor(spec.errors * now)
        headroom = math.floor(0.85 * extra) if k in short else extra + max(2, now // 50)
        sku = tenant.skus[d.sku_id]
        sku.enabled_at_load = at_load
        sku.prepaid["enabled"] = now + headroom
    tenant._initial_processing()
    return tenant


def _count_new(want: bytearray, have: bytearray) -> int:
    """Users wanted for a SKU who do not hold it yet (bytes as big integers: fast)."""
    w = int.from_bytes(want, "little")
    h = int.from_bytes(have, "little")
    return (w & ~h).bit_count()


def _drift(
    target: dict[str, list[str]],
    profile: _Profile,
    skus: list[_SkuDef],
    plan_ids: list[dict[str, str]],
) -> dict[str, list[str]]:
    """A licence set that differs from the profile: a SKU missing, or other disabled plans."""
    lic = {k: list(v) for k, v in target.items()}
    if len(lic) > 1:
        lic.pop(next(reversed(lic)))
        return lic
    k, disabled = profile.skus[0]
    sku_id = skus[k].sku_id
    if disabled:
        lic[sku_id] = []  # the plan the profile switches off is on
    elif len(skus[k].plans) > 1:
        lic[sku_id] = [skus[k].plans[0][0]]  # a plan the profile wants is off
    else:
        other = skus[(k + 1) % len(skus)].sku_id
        if other != sku_id:
            lic[other] = []  # a licence the profile does not list
    return lic


__all__ = ["EXTENSION", "GenerateSpec", "generate_tenant", "parse_spec", "policy_for"]
