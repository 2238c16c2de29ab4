"""Small builders for planner inputs: readable tenants in a few lines."""

from __future__ import annotations

import itertools
import uuid

from shared.model import (
    AssignedLicense,
    Group,
    LicenseState,
    Membership,
    ServicePlan,
    Sku,
    Snapshot,
    User,
)
from shared.policy import ResolvedPolicy, parse_policy, resolve

_counter = itertools.count(1)

E5 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
EMS = "b05e124f-c7cc-45a0-a6aa-8cf78c946968"
PBI = "f8a1db68-be16-40ed-86d5-cb42ce701560"
YAMMER = "7547a3fe-08ee-4ccb-b430-5077c5041653"
TEAMS = "57ff2da0-773e-42df-b2af-ffb7a2317929"


def gid() -> str:
    return str(uuid.UUID(int=next(_counter)))


def sku(
    sku_id: str,
    part: str,
    enabled: int,
    consumed: int = 0,
    status: str = "Enabled",
    plans: tuple[ServicePlan, ...] = (),
) -> Sku:
    return Sku(sku_id, part, status, "User", enabled, consumed, plans)


def default_skus(e5: int = 100, ems: int = 100, pbi: int = 100, **consumed: int) -> tuple[Sku, ...]:
    return (
        sku(
            E5,
            "ENTERPRISEPREMIUM",
            e5,
            consumed.get("consumed_e5", 0),
            plans=(ServicePlan(YAMMER, "YAMMER_ENTERPRISE"), ServicePlan(TEAMS, "TEAMS1")),
        ),
        sku(EMS, "EMSPREMIUM", ems, consumed.get("consumed_ems", 0)),
        sku(PBI, "POWER_BI_PRO", pbi, consumed.get("consumed_pbi", 0)),
    )


def user(
    name: str | None = None,
    holds: tuple[str, ...] = (),
    guest: bool = False,
    states: tuple[LicenseState, ...] = (),
    upn: str | None = None,
    uid: str | None = None,
    user_type: str | None = None,
    external_issuer: str | None = None,
) -> User:
    name = name or f"user{next(_counter)}"
    return User(
        id=uid or gid(),
        upn=upn or f"{name}@contoso.example",
        user_type=user_type or ("Guest" if guest else "Member"),
        creation_type="Invitation" if guest else None,
        external_user_state="Accepted" if guest else None,
        account_enabled=True,
        held_skus=frozenset(holds),
        license_states=states,
        external_issuer=external_issuer,
    )


def group(
    name: str,
    profile: str,
    licenses: tuple[AssignedLicense, ...] = (),
    security: bool = True,
    priority: int = 100,
    processing: str | None = "ProcessingComplete",
    group_id: str | None = None,
    tag_problem: str | None = None,
) -> Group:
    return Group(
        group_id or gid(), name, security, licenses, processing, profile, priority, tag_problem
    )


POLICY = """
version: 1
profiles:
  e5-full:
    skus: [{sku: ENTERPRISEPREMIUM}, {sku: EMSPREMIUM}]
  e5-no-yammer:
    skus: [{sku: ENTERPRISEPREMIUM, disabledPlans: [YAMMER_ENTERPRISE]}, {sku: EMSPREMIUM}]
  powerbi:
    skus: [{sku: POWER_BI_PRO}]
selectors:
  - displayNamePrefix: LIC-
    profile: e5-full
"""


def resolved(text: str = POLICY, skus: tuple[Sku, ...] | None = None) -> ResolvedPolicy:
    return resolve(parse_policy(text), skus or default_skus())


def snapshot(
    skus: tuple[Sku, ...], *groups_and_members: tuple[Group, list[User] | Membership]
) -> Snapshot:
    members = {}
    for g, m in groups_and_members:
        members[g.id] = m if isinstance(m, Membership) else Membership(users=tuple(m))
    return Snapshot(skus, tuple(g for g, _ in groups_and_members), members)


def e5_full() -> tuple[AssignedLicense, ...]:
    return (AssignedLicense(E5), AssignedLicense(EMS))
