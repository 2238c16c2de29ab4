"""Group-based licensing processing: seats, CountViolation, reprocess, membership changes."""

from __future__ import annotations

import time

from tests.simulator.conftest import (
    E5,
    EMS,
    EXCHANGE,
    PBI,
    WRITE_ALL,
    YAMMER,
    Client,
    gid,
    serve,
    small_tenant,
    uid,
)


def _assign(
    client: Client, group: str, add: list[dict[str, object]], remove: list[str] | None = None
):
    return client.post(
        f"/v1.0/groups/{group}/assignLicense", {"addLicenses": add, "removeLicenses": remove or []}
    )


def test_assign_license_consumes_seats_and_answers_202_with_the_group(client: Client) -> None:
    assert client.consumed("ENTERPRISEPREMIUM") == 2
    reply = _assign(client, gid(2), [{"skuId": EMS, "disabledPlans": []}])
    assert reply.status == 202
    assert reply.json["id"] == gid(2)
    assert reply.json["assignedLicenses"] == [{"disabledPlans": [], "skuId": EMS}]
    assert reply.json["licenseProcessingState"] == {"state": "ProcessingComplete"}
    assert "Location" in reply.headers
    assert client.consumed("EMSPREMIUM") == 5  # 2 from G1 + 3 direct user members of G2
    nested_only = client.user_states(uid(1))
    assert all(s["assignedByGroup"] != gid(2) for s in nested_only)  # nested groups give nothing


def test_count_violation_is_all_or_nothing_per_user_and_reprocess_fixes_it(client: Client) -> None:
    # E5 has 4 seats, 2 used: users 3 and 4 fit, user 5 does not; EMS has room but user 5
    # gets neither product from this group.
    _assign(client, gid(2), [{"skuId": E5, "disabledPlans": [YAMMER]}, {"skuId": EMS}])
    assert client.consumed("ENTERPRISEPREMIUM") == 4
    assert client.consumed("EMSPREMIUM") == 4
    stuck = client.user_states(uid(5))
    assert {(s["skuId"], s["state"], s["error"]) for s in stuck} == {
        (E5, "Error", "CountViolation"),
        (EMS, "Error", "CountViolation"),
    }
    errors = client.get(f"/v1.0/groups/{gid(2)}/membersWithLicenseErrors").json["value"]
    assert [e["id"] for e in errors] == [uid(5)]

    # Seats bought: the user stays stuck even when the group is processed again ...
    assert (
        client.call("PATCH", "/_sim/skus/ENTERPRISEPREMIUM", body={"enabled": 5}, auth=None).status
        == 200
    )
    _assign(client, gid(2), [{"skuId": E5, "disabledPlans": [YAMMER]}, {"skuId": EMS}])
    assert client.user_states(uid(5))[0]["state"] == "Error"
    # ... until reprocessLicenseAssignment.
    reply = client.post(f"/v1.0/users/{uid(5)}/reprocessLicenseAssignment")
    assert reply.status == 200 and reply.json["id"] == uid(5)
    assert {s["state"] for s in client.user_states(uid(5))} == {"Active"}
    assert client.consumed("ENTERPRISEPREMIUM") == 5


def test_reprocess_needs_user_readwrite(client: Client) -> None:
    denied = client.post(
        f"/v1.0/users/{uid(5)}/reprocessLicenseAssignment",
        roles=("LicenseAssignment.ReadWrite.All",),
    )
    assert denied.status == 403


def test_disabled_plans_change_and_remove_license(client: Client) -> None:
    _assign(client, gid(1), [{"skuId": E5, "disabledPlans": [YAMMER]}])
    states = [s for s in client.user_states(uid(1)) if s["skuId"] == E5]
    assert states[0]["disabledPlans"] == [YAMMER] and states[0]["state"] == "Active"
    assert client.consumed("ENTERPRISEPREMIUM") == 2
    _assign(client, gid(1), [], [E5])
    assert client.consumed("ENTERPRISEPREMIUM") == 0
    assert client.consumed("EMSPREMIUM") == 2


def test_one_seat_per_user_whatever_the_sources(client: Client) -> None:
    # User 1 holds E5 from G1; adding E5 to G2 (which nests G1) and directly costs nothing more.
    client.call("POST", f"/_sim/groups/{gid(2)}/members", body={"id": uid(1)}, auth=None)
    _assign(client, gid(2), [{"skuId": E5}])
    direct = client.post(
        f"/v1.0/users/{uid(1)}/assignLicense",
        {"addLicenses": [{"skuId": E5, "disabledPlans": []}], "removeLicenses": []},
    )
    assert direct.status == 200
    assert [lic["skuId"] for lic in direct.json["assignedLicenses"]] == [E5, EMS]
    assert len(client.user_states(uid(1))) == 4  # direct + G1 (E5, EMS) + G2
    assert client.consumed("ENTERPRISEPREMIUM") == 4  # users 1, 2, 3, 4


def test_assign_license_errors(client: Client) -> None:
    unknown = _assign(client, gid(2), [{"skuId": "99999999-9999-4999-8999-999999999999"}])
    assert unknown.status == 400
    assert unknown.json["error"]["code"] == "Request_BadRequest"
    assert "does not correspond to a valid company License" in unknown.json["error"]["message"]
    not_security = _assign(client, gid(3), [{"skuId": E5}])
    assert not_security.status == 400
    missing_key = client.post(f"/v1.0/groups/{gid(2)}/assignLicense", {"addLicenses": []})
    assert missing_key.status == 400
    wrong_case = client.post(
        f"/v1.0/groups/{gid(2)}/assignLicense", {"AddLicenses": [], "removeLicenses": []}
    )
    assert wrong_case.status == 400
    bad_plan = _assign(client, gid(2), [{"skuId": PBI, "disabledPlans": [EXCHANGE]}])
    assert bad_plan.status == 400
    assert (
        client.post(
            "/v1.0/groups/20000000-0000-4000-8000-999999999999/assignLicense",
            {"addLicenses": [], "removeLicenses": []},
        ).status
        == 404
    )


def test_membership_changes_are_processed(client: Client) -> None:
    add = client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(3)}, auth=None)
    assert add.status == 204
    assert {s["state"] for s in client.user_states(uid(3))} == {"Active"}
    assert client.consumed("ENTERPRISEPREMIUM") == 3
    client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(4)}, auth=None)
    client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(5)}, auth=None)
    assert client.user_states(uid(5))[0]["error"] == "CountViolation"  # 4 seats only
    removed = client.call("DELETE", f"/_sim/groups/{gid(1)}/members/{uid(3)}", auth=None)
    assert removed.status == 204
    assert client.user_states(uid(3)) == []
    assert client.consumed("ENTERPRISEPREMIUM") == 3
    # Freed seat is not picked up by the stuck user.
    assert client.user_states(uid(5))[0]["state"] == "Error"


def test_new_user_then_added_to_licensed_group(client: Client) -> None:
    new = {"id": uid(7), "userPrincipalName": "new@contoso.com", "usageLocation": "GB"}
    assert client.call("POST", "/_sim/users", body=new, auth=None).status == 201
    client.call("POST", f"/_sim/groups/{gid(1)}/members", body={"id": uid(7)}, auth=None)
    user = client.get("/v1.0/users/new@contoso.com?$select=assignedLicenses").json
    assert {lic["skuId"] for lic in user["assignedLicenses"]} == {E5, EMS}


def test_processing_delay_walks_the_processing_states() -> None:
    server = serve(small_tenant(), processing_delay_s=0.3)
    try:
        client = Client(server)
        reply = _assign(client, gid(2), [{"skuId": EMS}])
        assert reply.json["licenseProcessingState"] == {"state": "QueuedForProcessing"}
        assert client.consumed("EMSPREMIUM") == 2
        path = f"/v1.0/groups/{gid(2)}?$select=licenseProcessingState"
        seen = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            state = client.get(path).json["licenseProcessingState"]["state"]
            seen.add(state)
            if state == "ProcessingComplete":
                break
            time.sleep(0.03)
        assert seen >= {"QueuedForProcessing", "ProcessingInProgress", "ProcessingComplete"}
        assert client.consumed("EMSPREMIUM") == 5
    finally:
        server.stop()


def test_demo_tenant_stuck_users_recover_after_reprocess(demo: Client) -> None:
    support = "20000000-0000-4000-8000-000000000005"
    errors = demo.get(f"/v1.0/groups/{support}/membersWithLicenseErrors?$select=id").json["value"]
    assert len(errors) == 3
    for user in errors:
        assert demo.post(f"/v1.0/users/{user['id']}/reprocessLicenseAssignment").status == 200
    assert demo.get(f"/v1.0/groups/{support}/membersWithLicenseErrors").json["value"] == []
    assert demo.consumed("ENTERPRISEPREMIUM") == 25


def test_remove_member_ref_needs_groupmember_readwrite_and_frees_the_seat_after_processing() -> (
    None
):
    server = serve(small_tenant(), processing_delay_s=0.3)
    try:
        client = Client(server)
        path = f"/v1.0/groups/{gid(1)}/members/{uid(1)}/$ref"
        assert (
            client.call("DELETE", path).status == 403
        )  # WRITE_ALL lacks GroupMember.ReadWrite.All
        roles = (*WRITE_ALL, "GroupMember.ReadWrite.All")
        assert client.consumed("ENTERPRISEPREMIUM") == 2
        assert client.call("DELETE", path, roles=roles).status == 204
        # The member is gone at once; the group's licences leave when Entra processes the change.
        members = client.get(f"/v1.0/groups/{gid(1)}/members?$select=id").json["value"]
        assert [m["id"] for m in members] == [uid(2)]
        assert client.consumed("ENTERPRISEPREMIUM") == 2
        group = client.get(f"/v1.0/groups/{gid(1)}?$select=licenseProcessingState").json
        assert group["licenseProcessingState"] == {"state": "QueuedForProcessing"}
        deadline = time.monotonic() + 5
        while client.consumed("ENTERPRISEPREMIUM") != 1:
            assert time.monotonic() < deadline, "the seat was never freed"
            time.sleep(0.05)
        assert all(s["assignedByGroup"] != gid(1) for s in client.user_states(uid(1)))
        # Not a member any more: 404, as Graph answers for a missing reference.
        assert client.call("DELETE", path, roles=roles).status == 404
    finally:
        server.stop()
