"""Reads over real HTTP: auth, errors, paging, $select, $filter, $count, members."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.simulator.conftest import E5, EXT, READ_ALL, TENANT_ID, Client, gid, uid

AQ = {"ConsistencyLevel": "eventual"}


def test_missing_or_bad_token_is_401_with_graph_error_shape(client: Client) -> None:
    for auth in (None, "Bearer not-a-sim-token"):
        reply = client.get("/v1.0/groups", auth=auth)
        assert reply.status == 401
        error = reply.json["error"]
        assert error["code"] == "InvalidAuthenticationToken"
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
        assert reply.headers["request-id"] == error["innerError"]["request-id"]


def test_missing_role_is_403_and_higher_permission_is_accepted(client: Client) -> None:
    denied = client.get("/v1.0/subscribedSkus", roles=("GroupMember.Read.All",))
    assert denied.status == 403
    assert denied.json["error"]["code"] == "Authorization_RequestDenied"
    assert client.get("/v1.0/subscribedSkus", roles=("Directory.ReadWrite.All",)).status == 200
    assign = client.post(
        f"/v1.0/groups/{gid(2)}/assignLicense",
        {"addLicenses": [], "removeLicenses": []},
        roles=READ_ALL,
    )
    assert assign.status == 403


def test_client_request_id_is_echoed(client: Client) -> None:
    reply = client.get("/v1.0/groups", headers={"client-request-id": "abc-123"})
    assert reply.headers["client-request-id"] == "abc-123"
    assert reply.headers["x-ms-resource-unit"] == "1"


def test_subscribed_skus_shape_and_derived_consumed_units(client: Client) -> None:
    body = client.get("/v1.0/subscribedSkus").json
    assert body["@odata.context"].endswith("/v1.0/$metadata#subscribedSkus")
    e5 = body["value"][0]
    assert e5["id"] == f"{TENANT_ID}_{e5['skuId']}"
    assert e5["consumedUnits"] == 2
    assert set(e5["prepaidUnits"]) == {"enabled", "warning", "suspended", "lockedOut"}
    only = client.get("/v1.0/subscribedSkus?$select=skuPartNumber,consumedUnits").json
    assert set(only["value"][0]) == {"skuPartNumber", "consumedUnits"}
    refused = client.get("/v1.0/subscribedSkus?$filter=skuPartNumber eq 'X'".replace(" ", "%20"))
    assert refused.status == 400
    assert refused.json["error"]["code"] == "Request_UnsupportedQuery"


def test_paging_returns_every_user_once_with_absolute_next_links(client: Client) -> None:
    url = "/v1.0/users?$top=2&$select=id,userPrincipalName"
    seen: list[str] = []
    pages = 0
    while url:
        body = client.get(url).json
        pages += 1
        seen += [u["id"] for u in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{client.url}/v1.0/users?")
            assert "$top=2" in url and "$select=id,userPrincipalName" in url
            assert "$skiptoken=" in url
    assert pages == 3
    assert sorted(seen) == sorted({*seen}) and len(seen) == 6


def test_default_property_sets_and_select(client: Client) -> None:
    user = client.get(f"/v1.0/users/{uid(1)}").json
    assert "userPrincipalName" in user and "businessPhones" in user
    assert "assignedLicenses" not in user and "userType" not in user
    group = client.get(f"/v1.0/groups/{gid(1)}").json
    assert group[EXT] == "e5-full"
    assert "assignedLicenses" not in group and "licenseProcessingState" not in group
    assert group["@odata.context"].endswith("#groups/$entity")
    selected = client.get(
        f"/v1.0/groups/{gid(1)}?$select=id,assignedLicenses,licenseProcessingState"
    )
    assert set(selected.json) == {
        "@odata.context",
        "id",
        "assignedLicenses",
        "licenseProcessingState",
    }
    assert selected.json["licenseProcessingState"] == {"state": "ProcessingComplete"}
    guest = client.get(
        "/v1.0/users/"
        + quote("guest_fabrikam.com#EXT#@contoso.onmicrosoft.com")
        + "?$select=id,userType,creationType,externalUserState,"
        + "assignedLicenses,licenseAssignmentStates"
    ).json
    assert guest["userType"] == "Guest" and guest["creationType"] == "Invitation"
    assert guest["assignedLicenses"] == [] and guest["licenseAssignmentStates"] == []
    assert client.get("/v1.0/users?$select=nonsense").status == 400


def _ids(client: Client, path: str, **kw: object) -> list[str]:
    reply = client.get(path.replace(" ", "%20"), **kw)  # type: ignore[arg-type]
    assert reply.status == 200, reply.text
    return [item["id"] for item in reply.json["value"]]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1.0/groups?$filter=displayName eq 'lic-finance-e5'", [gid(1)]),
        ("/v1.0/groups?$filter=startswith(displayName,'LIC-')", [gid(1), gid(2)]),
        (f"/v1.0/groups?$filter={EXT} eq 'e5-no-yammer'", [gid(2)]),
        (
            f"/v1.0/groups?$filter=assignedLicenses/any(a:a/skuId eq {E5})",
            [gid(1)],
        ),
        (f"/v1.0/groups?$filter=id in ('{gid(1)}', '{gid(3)}')", [gid(1), gid(3)]),
        (
            "/v1.0/groups?$filter=securityEnabled eq false or displayName eq 'LIC-Sales-E5'",
            [gid(2), gid(3)],
        ),
        ("/v1.0/users?$filter=userType eq 'Guest'", [uid(9)]),
        (
            "/v1.0/users?$filter=startswith(userPrincipalName,'user1') and accountEnabled eq true",
            [uid(1)],
        ),
    ],
)
def test_supported_filters(client: Client, path: str, expected: list[str]) -> None:
    assert _ids(client, path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/groups?$filter=displayName ne 'x'",
        "/v1.0/groups?$filter=not(displayName eq 'x')",
        "/v1.0/users?$filter=endswith(mail,'contoso.com')",
        "/v1.0/users?$filter=endswith(mail,'contoso.com')&$count=true",  # header missing
        "/v1.0/groups?$filter=createdDateTime eq 2020",
        "/v1.0/groups?$filter=assignedLicenses/all(a:a/skuId eq 1)",
        '/v1.0/groups?$search="displayName:LIC"',
        "/v1.0/groups?$skip=2",
        f"/v1.0/groups/{gid(2)}/members?$filter=startswith(displayName,'U')",
    ],
)
def test_refused_queries_are_400_unsupported(client: Client, path: str) -> None:
    reply = client.get(path.replace(" ", "%20"))
    assert reply.status == 400, reply.text
    assert reply.json["error"]["code"] == "Request_UnsupportedQuery"


def test_advanced_queries_work_with_header_and_count(client: Client) -> None:
    aq = "&$count=true"
    body = client.get("/v1.0/users?$filter=endswith(mail,'contoso.com')" + aq, headers=AQ).json
    assert body["@odata.count"] == 5
    ne = _ids(client, "/v1.0/groups?$filter=displayName ne 'Announcements'" + aq, headers=AQ)
    assert ne == [gid(1), gid(2)]
    # $count=true without the header is silently ignored.
    plain = client.get("/v1.0/groups?$count=true").json
    assert "@odata.count" not in plain and len(plain["value"]) == 3
    search = _ids(client, '/v1.0/groups?$search="displayName:finance"', headers=AQ)
    assert search == [gid(1)]


def test_top_out_of_range_is_400(client: Client) -> None:
    for top in ("0", "1000", "x"):
        assert client.get(f"/v1.0/groups?$top={top}").status == 400


def test_members_transitive_cast_and_count(client: Client) -> None:
    members = client.get(f"/v1.0/groups/{gid(2)}/members").json
    assert members["@odata.context"].endswith("#directoryObjects")
    types = [(m["@odata.type"], m["id"]) for m in members["value"]]
    assert types[-1] == ("#microsoft.graph.group", gid(1))
    assert all(t == "#microsoft.graph.user" for t, _ in types[:-1])
    transitive = _ids(client, f"/v1.0/groups/{gid(2)}/transitiveMembers")
    assert transitive == [uid(3), uid(4), uid(5), gid(1), uid(1), uid(2)]
    selected = client.get(f"/v1.0/groups/{gid(2)}/members?$select=userPrincipalName").json
    assert set(selected["value"][0]) == {"@odata.type", "id", "userPrincipalName"}
    assert client.get(f"/v1.0/groups/{gid(2)}/members/microsoft.graph.user").status == 400
    cast = _ids(client, f"/v1.0/groups/{gid(2)}/members/microsoft.graph.user", headers=AQ)
    assert cast == [uid(3), uid(4), uid(5)]
    count = client.get(f"/v1.0/groups/{gid(2)}/members/$count", headers=AQ)
    assert count.text == "4" and count.headers["Content-Type"].startswith("text/plain")
    assert client.get(f"/v1.0/groups/{gid(2)}/members/$count").status == 400
    missing = client.get("/v1.0/groups/20000000-0000-4000-8000-999999999999/members")
    assert missing.status == 404
    assert missing.json["error"]["code"] == "Request_ResourceNotFound"


def test_members_paging_and_limited_info_without_user_read(client: Client) -> None:
    first = client.get(f"/v1.0/groups/{gid(2)}/members?$top=2").json
    second = client.get(first["@odata.nextLink"]).json
    assert len(first["value"]) == 2 and len(second["value"]) == 2
    limited = client.get(f"/v1.0/groups/{gid(2)}/members", roles=("GroupMember.Read.All",)).json
    assert set(limited["value"][0]) == {"@odata.type", "id"}


def test_unknown_segment_and_wrong_method(client: Client) -> None:
    assert client.get("/v1.0/nothing").status == 400
    assert client.call("DELETE", "/v1.0/subscribedSkus").status == 405
