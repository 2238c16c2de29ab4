"""msgraph-sdk parses Microsoft's documented responses, and the simulator's answers to the same
kind of requests, into populated models (kiota's JsonParseNode, as the SDK does)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.directory_object_collection_response import (
    DirectoryObjectCollectionResponse,
)
from msgraph.generated.models.group import Group
from msgraph.generated.models.group_collection_response import GroupCollectionResponse
from msgraph.generated.models.license_details_collection_response import (
    LicenseDetailsCollectionResponse,
)
from msgraph.generated.models.subscribed_sku import SubscribedSku
from msgraph.generated.models.subscribed_sku_collection_response import (
    SubscribedSkuCollectionResponse,
)
from msgraph.generated.models.user import User
from msgraph.generated.models.user_collection_response import UserCollectionResponse

from tests.simulator.conftest import EXAMPLES, Client, gid, uid


def parse(body: Any, factory: Callable[[Any], Any]) -> Any:
    raw = json.dumps(body).encode()
    node = JsonParseNodeFactory().get_root_parse_node("application/json", raw)
    return node.get_object_value(factory)


def check_skus(m: SubscribedSkuCollectionResponse) -> None:
    assert m.value
    check_sku(m.value[0])


def check_sku(s: SubscribedSku) -> None:
    assert s.sku_id is not None and s.sku_part_number and s.consumed_units is not None
    assert s.prepaid_units is not None and s.prepaid_units.enabled is not None
    assert s.service_plans and s.service_plans[0].service_plan_name


def check_group(g: Group) -> None:
    assert g.id or g.display_name


def check_groups(m: GroupCollectionResponse) -> None:
    assert m.value and all(g.id or g.display_name for g in m.value)


def check_objects(m: DirectoryObjectCollectionResponse) -> None:
    assert m.value and all(o.id or o.additional_data for o in m.value)


def check_user(u: User) -> None:
    assert u.id or u.user_principal_name or u.assigned_licenses or u.additional_data


def check_users(m: UserCollectionResponse) -> None:
    assert m.value and any(u.id or u.display_name or u.additional_data for u in m.value)


def check_details(m: LicenseDetailsCollectionResponse) -> None:
    assert m.value and m.value[0].sku_part_number and m.value[0].service_plans


# (request URL pattern, model, check) — the first match wins.
MODELS: list[tuple[str, Callable[[Any], Any], Callable[[Any], None]]] = [
    (
        r"/subscribedSkus$",
        SubscribedSkuCollectionResponse,
        check_skus,
    ),
    (r"/subscribedSkus/[^/]+$", SubscribedSku, check_sku),
    (r"/groups/[^/]+/assignLicense$", Group, check_group),
    (r"/groups/[^/$]+$", Group, check_group),
    (r"/groups$", GroupCollectionResponse, check_groups),
    (
        r"/(members|transitiveMembers)(/microsoft\.graph\.\w+)?$",
        DirectoryObjectCollectionResponse,
        check_objects,
    ),
    (
        r"/licenseDetails$",
        LicenseDetailsCollectionResponse,
        check_details,
    ),
    (
        r"/(assignLicense|reprocessLicenseAssignment)$",
        User,
        check_user,
    ),
    (r"/users/[^/$]+$", User, check_user),
    (r"/users$", UserCollectionResponse, check_users),
]


def _model_for(url: str) -> tuple[Callable[[Any], Any], Callable[[Any], None]] | None:
    path = url.split("?")[0]
    if path.endswith("/delta"):
        return None  # delta pages are another model, and the engine does not use delta
    for pattern, factory, check in MODELS:
        if re.search(pattern, path, re.IGNORECASE):
            return factory, check
    return None


def _documented() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted(EXAMPLES.glob("*.json")):
        doc = json.loads(f.read_text())
        request, response = doc.get("request"), doc.get("response")
        if not request or not response or not isinstance(response.get("body"), dict):
            continue
        if response["status"] >= 300 or _model_for(request["url"]) is None:
            continue
        out.append((f.name, doc))
    return out


DOCUMENTED = _documented()


def test_every_documented_model_kind_is_covered() -> None:
    names = " ".join(name for name, _ in DOCUMENTED)
    for kind in ("subscribedsku-list", "group-get", "group-list", "group-list-members", "user-get"):
        assert kind in names
    assert "user-list-licensedetails" in names


# Documented bodies the SDK cannot parse, and why (the test asserts that they still fail).
UNPARSEABLE = {
    "user-reprocesslicenseassignment--example.json": "placeholder skuId 'skuId-value' is no GUID",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def assert_populated(model: Any, body: dict[str, Any], where: str = "$") -> None:
    """Every property the JSON carries is populated on the model (or kept in additional_data
    when the SDK has no such property, e.g. directory extensions)."""
    for key, value in body.items():
        if value is None or key.startswith("@") or "@odata" in key:
            continue
        attr = _snake(key)
        if not hasattr(model, attr):
            assert key in model.additional_data, f"{where}.{key}: lost by the SDK"
            continue
        got = getattr(model, attr)
        assert got is not None, f"{where}.{key}: not populated"
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for i, (item, sub) in enumerate(zip(got, value, strict=True)):
                assert_populated(item, sub, f"{where}.{key}[{i}]")
        elif isinstance(value, dict) and hasattr(got, "additional_data"):
            assert_populated(got, value, f"{where}.{key}")


@pytest.mark.parametrize(("name", "doc"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_sdk_parses_documented_response(name: str, doc: dict[str, Any]) -> None:
    found = _model_for(doc["request"]["url"])
    assert found is not None
    factory, check = found
    body = doc["response"]["body"]
    if name in UNPARSEABLE:
        with pytest.raises(ValueError):
            parse(body, factory)
        return
    model = parse(body, factory)
    assert_populated(model, body)
    if body.get("value") or "value" not in body:
        check(model)


def test_sdk_parses_simulator_responses(client: Client) -> None:
    reads = {
        "/v1.0/subscribedSkus": check_skus,
        f"/v1.0/groups/{gid(1)}?$select=id,securityEnabled,assignedLicenses": check_group,
        "/v1.0/groups": check_groups,
        f"/v1.0/groups/{gid(2)}/members": check_objects,
        f"/v1.0/users/{uid(1)}?$select=id,userPrincipalName,assignedLicenses": check_user,
        "/v1.0/users": check_users,
        f"/v1.0/users/{uid(1)}/licenseDetails": check_details,
    }
    for path, check in reads.items():
        found = _model_for(path)
        assert found is not None, path
        reply = client.get(path)
        assert reply.status == 200, reply.text
        model = parse(reply.json, found[0])
        check(model)
    members = parse(
        client.get(f"/v1.0/groups/{gid(2)}/members").json,
        DirectoryObjectCollectionResponse,
    )
    # The @odata.type discriminator gives real User and Group models.
    assert {type(m).__name__ for m in members.value} == {"User", "Group"}
    user = parse(
        client.get(f"/v1.0/users/{uid(1)}?$select=id,licenseAssignmentStates").json,
        User,
    )
    assert user.license_assignment_states and user.license_assignment_states[0].sku_id
