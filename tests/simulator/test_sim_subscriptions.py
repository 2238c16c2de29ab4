"""GET /directory/subscriptions: companySubscription objects from the tenant file (or one per SKU),
the permission List subscriptions documents, and the admin API that renews or ends one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simulator.tenant import Tenant, TenantError
from tests.simulator.conftest import E5, EMS, PBI, READ_ALL, Client, serve, small_tenant

SUB = "30000000-0000-4000-8000-000000000001"


def _tenant(**extra: Any) -> dict[str, Any]:
    data = small_tenant()
    sub = {
        "id": SUB,
        "skuId": E5,
        "status": "Enabled",
        "totalLicenses": 4,
        "isTrial": False,
        "nextLifecycleInDays": 10,
        **extra,
    }
    data["subscriptions"] = [{k: v for k, v in sub.items() if v is not None}]
    return data


@pytest.fixture
def sim() -> Any:
    server = serve(_tenant())
    try:
        yield Client(server)
    finally:
        server.stop()


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_tenant_files_subscriptions_are_served_with_every_documented_property(sim: Client):
    reply = sim.get("/v1.0/directory/subscriptions")
    assert reply.status == 200, reply.text
    [sub] = reply.json["value"]
    assert sub["id"] == SUB and sub["skuId"] == E5 and sub["skuPartNumber"] == "ENTERPRISEPREMIUM"
    assert sub["status"] == "Enabled" and sub["totalLicenses"] == 4 and sub["isTrial"] is False
    # nextLifecycleInDays (simulator-only) became a date ten days from loading.
    days = (_when(sub["nextLifecycleDateTime"]) - datetime.now(UTC)) / timedelta(days=1)
    assert 9.9 < days <= 10
    assert {p["servicePlanName"] for p in sub["serviceStatus"]} == {
        "EXCHANGE_S_ENTERPRISE",
        "YAMMER_ENTERPRISE",
    }
    assert reply.json["@odata.context"].endswith("/$metadata#directory/subscriptions")
    selected = sim.get("/v1.0/directory/subscriptions?$select=skuId,totalLicenses").json
    assert selected["value"] == [{"skuId": E5, "totalLicenses": 4}]
    assert sim.get(f"/v1.0/directory/subscriptions/{SUB}").json["id"] == SUB


def test_listing_subscriptions_needs_organization_read_all(sim: Client):
    # List subscriptions: Organization.Read.All least privileged; LicenseAssignment.Read.All,
    # which reads subscribedSkus, is not listed.
    without = tuple(r for r in READ_ALL if r != "Organization.Read.All")
    assert sim.get("/v1.0/directory/subscriptions", roles=without).status == 403
    assert sim.get("/v1.0/directory/subscriptions", roles=("Directory.Read.All",)).status == 200


def test_a_tenant_without_subscriptions_gets_one_per_sku_holding_its_seats():
    tenant = Tenant.from_dict(small_tenant())
    subs = {s["skuId"]: s for s in tenant.subscription_list()}
    assert set(subs) == {E5, EMS, PBI}
    assert subs[E5]["totalLicenses"] == 4 and subs[PBI]["totalLicenses"] == 2
    assert all(s["status"] == "Enabled" and not s["isTrial"] for s in subs.values())
    later = _when(subs[E5]["nextLifecycleDateTime"]) - datetime.now(UTC)
    assert later > timedelta(days=360)
    # Derived ids are stable, so the admin API can address them.
    assert (
        tenant.subscription_list()[0]["id"]
        == Tenant.from_dict(small_tenant()).subscription_list()[0]["id"]
    )


def test_the_admin_api_renews_ends_and_adds_subscriptions(sim: Client):
    renewed = "2031-01-31T00:00:00Z"
    reply = sim.call(
        "PATCH",
        f"/_sim/subscriptions/{SUB}",
        body={"nextLifecycleDateTime": renewed, "totalLicenses": 3},
        auth=None,
    )
    assert reply.status == 200, reply.text
    [sub] = sim.get("/v1.0/directory/subscriptions").json["value"]
    assert sub["nextLifecycleDateTime"] == renewed and sub["totalLicenses"] == 3
    assert (
        sim.call(
            "PATCH", f"/_sim/subscriptions/{SUB}", body={"status": "Warning"}, auth=None
        ).status
        == 200
    )
    assert sim.get("/v1.0/directory/subscriptions").json["value"][0]["status"] == "Warning"
    bad = sim.call("PATCH", f"/_sim/subscriptions/{SUB}", body={"status": "Gone"}, auth=None)
    assert bad.status == 400 and "status" in bad.text
    assert sim.call("PATCH", "/_sim/subscriptions/nope", body={}, auth=None).status == 404
    added = sim.call(
        "POST",
        "/_sim/subscriptions",
        body={"skuId": PBI, "totalLicenses": 5, "isTrial": True, "nextLifecycleInDays": 3},
        auth=None,
    )
    assert added.status == 201, added.text
    assert {s["skuId"] for s in sim.get("/v1.0/directory/subscriptions").json["value"]} == {E5, PBI}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"skuId": "30000000-0000-4000-8000-0000000000ff"}, "unknown skuId"),
        ({"status": "Expired"}, ".status"),
        ({"totalLicenses": -1}, ".totalLicenses"),
        ({"nextLifecycleDateTime": "tomorrow", "nextLifecycleInDays": None}, ".nextLifecycle"),
        ({"nextLifecycleDateTime": "2030-01-01T00:00:00Z"}, "not both"),
        ({"colour": "blue"}, ".colour: unknown property"),
    ],
)
def test_a_bad_subscription_in_a_tenant_file_names_the_path(bad: dict[str, Any], message: str):
    with pytest.raises(TenantError, match=r"\$\.subscriptions\[0\]") as err:
        Tenant.from_dict(_tenant(**bad))
    assert message in str(err.value)
