"""Members pages keep rendered users between reads (simulator.graph): never a stale answer.

Each test reads a members page first (so the users are rendered and kept), changes the tenant the
way a client or the admin API does, and reads the page again.
"""

from __future__ import annotations

import time
from typing import Any

from tests.simulator.conftest import (
    E5,
    EMS,
    PBI,
    READ_ALL,
    Client,
    gid,
    serve,
    small_tenant,
    uid,
)

SELECT = "id,userPrincipalName,userType,accountEnabled,assignedLicenses,licenseAssignmentStates"


def _members(client: Client, group: str, **kw: Any) -> dict[str, dict[str, Any]]:
    reply = client.get(f"/v1.0/groups/{group}/members?$select={SELECT}&$top=999", **kw)
    assert reply.status == 200, reply.text
    return {m["id"]: m for m in reply.json["value"]}


def _skus(member: dict[str, Any]) -> set[str]:
    return {lic["skuId"] for lic in member["assignedLicenses"]}


def test_a_group_licence_shows_on_its_members_once_processing_completes() -> None:
    server = serve(small_tenant(), processing_delay_s=0.3)
    try:
        client = Client(server)
        assert _skus(_members(client, gid(2))[uid(3)]) == set()
        reply = client.post(
            f"/v1.0/groups/{gid(2)}/assignLicense",
            {"addLicenses": [{"skuId": EMS}], "removeLicenses": []},
        )
        assert reply.status == 202
        assert _skus(_members(client, gid(2))[uid(3)]) == set()  # queued: not processed yet
        deadline = time.monotonic() + 5
        while not _skus(_members(client, gid(2))[uid(3)]):
            assert time.monotonic() < deadline, "the licence never showed on the member"
            time.sleep(0.05)
        member = _members(client, gid(2))[uid(3)]
        assert _skus(member) == {EMS}
        assert [(s["skuId"], s["assignedByGroup"]) for s in member["licenseAssignmentStates"]] == [
            (EMS, gid(2))
        ]
    finally:
        server.stop()


def test_a_membership_change_shows_in_the_users_other_groups(client: Client) -> None:
    assert _skus(_members(client, gid(2))[uid(3)]) == set()
    added = client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(3)}, auth=None)
    assert added.status == 204
    # uid(3) now holds G1's licences: its entry in G2's members says so too.
    assert _skus(_members(client, gid(2))[uid(3)]) == {E5, EMS}
    removed = client.call("DELETE", f"/_sim/groups/{gid(1)}/members/{uid(3)}", auth=None)
    assert removed.status == 204
    assert _skus(_members(client, gid(2))[uid(3)]) == set()


def test_a_direct_licence_and_a_reprocess_show_on_the_member(client: Client) -> None:
    assert _skus(_members(client, gid(1))[uid(1)]) == {E5, EMS}
    reply = client.post(
        f"/v1.0/users/{uid(1)}/assignLicense",
        {"addLicenses": [{"skuId": PBI}], "removeLicenses": []},
    )
    assert reply.status == 200
    assert _skus(_members(client, gid(1))[uid(1)]) == {E5, EMS, PBI}
    # Fill E5 (4 seats): uid(5) is in error, then a seat frees and a reprocess fixes it.
    for user in (3, 4, 5):
        client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(user)}, auth=None)
    assert _members(client, gid(1))[uid(5)]["licenseAssignmentStates"][0]["state"] == "Error"
    client.call("DELETE", f"/_sim/groups/{gid(1)}/members/{uid(3)}", auth=None)
    assert _members(client, gid(1))[uid(5)]["licenseAssignmentStates"][0]["state"] == "Error"
    assert client.post(f"/v1.0/users/{uid(5)}/reprocessLicenseAssignment").status == 200
    states = _members(client, gid(1))[uid(5)]["licenseAssignmentStates"]
    assert {s["state"] for s in states} == {"Active"}


def test_a_suspended_sku_and_a_behaviour_switch_show_on_the_member(client: Client) -> None:
    states = _members(client, gid(1))[uid(1)]["licenseAssignmentStates"]
    assert {s["state"] for s in states} == {"Active"}
    reply = client.call(
        "PATCH", f"/_sim/skus/{E5}", body={"capabilityStatus": "Suspended"}, auth=None
    )
    assert reply.status == 200
    states = _members(client, gid(1))[uid(1)]["licenseAssignmentStates"]
    assert {s["skuId"]: s["state"] for s in states} == {E5: "Disabled", EMS: "Active"}
    # A user in Error: its SKU is in assignedLicenses only with errorSkuInAssignedLicenses.
    for user in (3, 4, 5):
        client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(user)}, auth=None)
    assert _skus(_members(client, gid(1))[uid(5)]) == set()
    patched = client.call(
        "PATCH", "/_sim/config", body={"errorSkuInAssignedLicenses": True}, auth=None
    )
    assert patched.status == 200
    assert _skus(_members(client, gid(1))[uid(5)]) == {E5, EMS}


def test_a_caller_without_user_read_gets_only_ids_after_a_full_read(client: Client) -> None:
    assert _members(client, gid(1))[uid(1)]["userPrincipalName"] == "user1@contoso.com"
    roles = tuple(r for r in READ_ALL if r != "User.Read.All")
    limited = _members(client, gid(1), roles=roles)
    assert limited[uid(1)] == {"@odata.type": "#microsoft.graph.user", "id": uid(1)}
    assert _members(client, gid(1))[uid(1)]["userPrincipalName"] == "user1@contoso.com"


def test_other_select_lists_are_rendered_for_themselves(client: Client) -> None:
    assert set(_members(client, gid(1))[uid(1)]) == {"@odata.type", *SELECT.split(",")}
    reply = client.get(f"/v1.0/groups/{gid(1)}/members?$select=displayName")
    assert reply.json["value"][0] == {
        "@odata.type": "#microsoft.graph.user",
        "id": uid(1),
        "displayName": "User 1",
    }
