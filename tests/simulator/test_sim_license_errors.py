"""Licence errors configured per SKU: MutuallyExclusiveViolation and
ProhibitedInUsageLocationViolation (group licensing uses the tenant's location for users
without one), recorded on the user and never returned to the caller."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.tenant import Tenant, TenantError
from tests.simulator.conftest import E5, EMS, PBI, Client, gid, serve, small_tenant, uid


def _tenant(**sku_rules: dict[str, Any]) -> dict[str, Any]:
    t = small_tenant()
    for sku in t["skus"]:
        sku.update(sku_rules.get(sku["skuPartNumber"], {}))
    return t


def _states(client: Client, user: int) -> dict[str, tuple[str, str]]:
    return {
        s["skuId"]: (s["state"], s["error"])
        for s in client.user_states(uid(user))
        if s["assignedByGroup"] == gid(2)
    }


def test_mutually_exclusive_skus_fail_the_whole_group() -> None:
    # E5 (held by members of G1) excludes POWER_BI_PRO here; G2 gets POWER_BI_PRO + EMS.
    t = _tenant(ENTERPRISEPREMIUM={"mutuallyExclusiveWith": [PBI]})
    t["skus"][2]["prepaidUnits"]["enabled"] = 10
    server = serve(t)
    try:
        client = Client(server)
        client.call("POST", f"/_sim/groups/{gid(2)}/members", body={"id": uid(1)}, auth=None)
        body = {"addLicenses": [{"skuId": PBI}, {"skuId": EMS}], "removeLicenses": []}
        assert client.post(f"/v1.0/groups/{gid(2)}/assignLicense", body).status == 202
        assert _states(client, 1) == {
            PBI: ("Error", "MutuallyExclusiveViolation"),
            EMS: ("Error", "MutuallyExclusiveViolation"),
        }
        assert _states(client, 3)[PBI] == ("Active", None)  # user 3 holds no E5
        errors = client.get(f"/v1.0/groups/{gid(2)}/membersWithLicenseErrors?$select=id")
        assert [m["id"] for m in errors.json["value"]] == [uid(1)]
        # Direct assignment of a conflicting SKU is refused outright.
        direct = {"addLicenses": [{"skuId": PBI}], "removeLicenses": []}
        refused = client.post(f"/v1.0/users/{uid(2)}/assignLicense", direct)
        assert refused.status == 400 and "MutuallyExclusiveViolation" in refused.text
    finally:
        server.stop()


def test_prohibited_usage_location_and_tenant_default() -> None:
    t = _tenant(POWER_BI_PRO={"prohibitedUsageLocations": ["GB"]})
    t["defaultUsageLocation"] = "GB"
    t["users"][4].pop("usageLocation")  # user 5: no location -> the tenant's (GB)
    t["users"][2]["usageLocation"] = "US"  # user 3: allowed
    t["skus"][2]["prepaidUnits"]["enabled"] = 10
    server = serve(t)
    try:
        client = Client(server)
        body = {"addLicenses": [{"skuId": PBI}], "removeLicenses": []}
        assert client.post(f"/v1.0/groups/{gid(2)}/assignLicense", body).status == 202
        assert _states(client, 3) == {PBI: ("Active", None)}
        assert _states(client, 4) == {PBI: ("Error", "ProhibitedInUsageLocationViolation")}
        assert _states(client, 5) == {PBI: ("Error", "ProhibitedInUsageLocationViolation")}
        user5 = client.get(f"/v1.0/users/{uid(5)}?$select=usageLocation").json
        assert user5["usageLocation"] is None  # never written by group licensing
        # Reprocessing does not help while the rule stands.
        client.post(f"/v1.0/users/{uid(4)}/reprocessLicenseAssignment")
        assert _states(client, 4) == {PBI: ("Error", "ProhibitedInUsageLocationViolation")}
    finally:
        server.stop()


def test_rules_round_trip_and_are_validated() -> None:
    t = _tenant(EMSPREMIUM={"mutuallyExclusiveWith": [E5], "prohibitedUsageLocations": ["CN"]})
    t["defaultUsageLocation"] = "US"
    tenant = Tenant.from_dict(t)
    again = Tenant.from_dict(tenant.to_dict())
    assert again.state_digest() == tenant.state_digest()
    assert again.exclusive_pairs(E5) == {EMS}  # the rule works both ways
    bad = _tenant(EMSPREMIUM={"mutuallyExclusiveWith": [EMS]})
    with pytest.raises(TenantError, match=r"\$\.skus\[1\]\.mutuallyExclusiveWith\[0\]"):
        Tenant.from_dict(bad)
    bad = _tenant(EMSPREMIUM={"prohibitedUsageLocations": ["china"]})
    with pytest.raises(TenantError, match="ISO 3166"):
        Tenant.from_dict(bad)
    # Rules never show in /subscribedSkus.
    server = serve(t)
    try:
        skus = Client(server).get("/v1.0/subscribedSkus").json["value"]
        assert all("mutuallyExclusiveWith" not in s for s in skus)
    finally:
        server.stop()
