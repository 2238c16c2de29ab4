"""Small tenants for end-to-end tests, in the simulator's tenant-file format."""

from __future__ import annotations

import uuid
from typing import Any

EXT = "extension_0f5e1b7a9c2d4e6f8a1b3c5d7e9f0a2b_licensingProfile"
E5 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
EMS = "b05e124f-c7cc-45a0-a6aa-8cf78c946968"
PBI = "f8a1db68-be16-40ed-86d5-cb42ce701560"
YAMMER = "7547a3fe-08ee-4ccb-b430-5077c5041653"
EXO = "efb87545-963c-4e0d-99df-69c6916d9eb0"


def _id(kind: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{n}"))


class TenantBuilder:
    def __init__(self, e5: int = 50, ems: int = 50, pbi: int = 50) -> None:
        self.users: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.skus = [
            {
                "skuId": E5,
                "skuPartNumber": "ENTERPRISEPREMIUM",
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "prepaidUnits": {"enabled": e5, "warning": 0, "suspended": 0, "lockedOut": 0},
                "servicePlans": [
                    {
                        "servicePlanId": YAMMER,
                        "servicePlanName": "YAMMER_ENTERPRISE",
                        "appliesTo": "User",
                    },
                    {
                        "servicePlanId": EXO,
                        "servicePlanName": "EXCHANGE_S_ENTERPRISE",
                        "appliesTo": "User",
                    },
                ],
            },
            {
                "skuId": EMS,
                "skuPartNumber": "EMSPREMIUM",
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "prepaidUnits": {"enabled": ems, "warning": 0, "suspended": 0, "lockedOut": 0},
                "servicePlans": [],
            },
            {
                "skuId": PBI,
                "skuPartNumber": "POWER_BI_PRO",
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "prepaidUnits": {"enabled": pbi, "warning": 0, "suspended": 0, "lockedOut": 0},
                "servicePlans": [],
            },
        ]

    def sku(self, sku_id: str) -> dict[str, Any]:
        return next(s for s in self.skus if s["skuId"] == sku_id)

    def user(self, name: str, guest: bool = False) -> str:
        uid = _id("user", len(self.users))
        upn = f"{name}_fabrikam.com#EXT#@contoso.example" if guest else f"{name}@contoso.example"
        self.users.append(
            {
                "id": uid,
                "displayName": name,
                "userPrincipalName": upn,
                "mail": f"{name}@contoso.example",
                "userType": "Guest" if guest else "Member",
                "creationType": "Invitation" if guest else None,
                "externalUserState": "Accepted" if guest else None,
                "usageLocation": "GB",
                "accountEnabled": True,
            }
        )
        return uid

    def group(
        self,
        name: str,
        profile: str | None,
        members: list[str],
        licenses: list[dict[str, Any]] | None = None,
        security: bool = True,
        visibility: str | None = None,
    ) -> str:
        gid = _id("group", len(self.groups))
        self.groups.append(
            {
                "id": gid,
                "displayName": name,
                "securityEnabled": security,
                "mailEnabled": not security,
                "groupTypes": [],
                "extensions": {EXT: profile} if profile else {},
                "assignedLicenses": licenses or [],
                "members": members,
                **({"visibility": visibility} if visibility else {}),
            }
        )
        return gid

    def users_named(self, prefix: str, count: int) -> list[str]:
        return [self.user(f"{prefix}{i}") for i in range(count)]

    def build(self) -> dict[str, Any]:
        mailbox = {
            "id": _id("user", 10_000),
            "displayName": "Licensing alerts",
            "userPrincipalName": "licensing-alerts@contoso.com",
            "mail": "licensing-alerts@contoso.com",
        }
        return {
            "tenantId": "3f1b2c4d-0000-4000-8000-00000000c0de",
            "skus": self.skus,
            "users": [*self.users, mailbox],
            "groups": self.groups,
        }


POLICY = f"""
version: 1
profiles:
  e5-full:
    skus: [{{sku: ENTERPRISEPREMIUM}}, {{sku: EMSPREMIUM}}]
  e5-no-yammer:
    skus: [{{sku: ENTERPRISEPREMIUM, disabledPlans: [YAMMER_ENTERPRISE]}}, {{sku: EMSPREMIUM}}]
  powerbi:
    skus: [{{sku: POWER_BI_PRO}}]
selectors:
  - extensionProperty: {EXT}
"""
