"""Every answer the simulator serves on the paths the engine reads, and every body the engine sends,
checked against Microsoft Graph v1.0's own schema (`schema/graph-v1.0-subset.json`, derived from
Microsoft's published CSDL metadata; `schema/README.md`).

The engine's real GraphClient (msgraph-sdk, real HTTP) runs against the simulator through a
recording transport, so what is checked is exactly what went over the wire: the engine's queries
(its `$select`s, filters and paging) and its assignLicense / reprocessLicenseAssignment / sendMail
bodies. The schema is OpenAPI 3.0; `to_json_schema` turns its `nullable` into JSON Schema (see
docs/decisions.md). Formats are not checked (the schema's patterns still are).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import jsonschema
import pytest

import shared.graph
from shared.collect import collect
from shared.credentials import LocalSimulatorCredential
from shared.graph import GraphClient, required_roles
from shared.policy import parse_policy
from simulator.server import SimServer
from tests.simulator.conftest import E5, EMS, EXT, YAMMER, Client, gid, serve, small_tenant, uid

SCHEMA = json.loads(
    (Path(__file__).resolve().parent / "schema" / "graph-v1.0-subset.json").read_text()
)


# ---- OpenAPI 3.0 -> JSON Schema (2020-12)


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema's null type.

    Microsoft's converter (OpenAPI.NET.OData) writes "this complex value or null" as
    `anyOf: [{$ref}, {type: object, nullable: true}]`; that second branch means null (read as an
    open object it would accept any object and check nothing), so it becomes `{type: null}`.
    """
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if not node.get("nullable"):
        return out
    if set(node) == {"type", "nullable"} and node["type"] == "object":
        return {"type": "null"}
    if "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}


CONVERTED = to_json_schema(SCHEMA)
COMPONENTS = CONVERTED["components"]["schemas"]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = CONVERTED
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def operation(path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = CONVERTED["paths"][path][method.lower()]
    return op


def response_schema(path: str, method: str = "GET") -> dict[str, Any] | None:
    responses = operation(path, method)["responses"]
    reply = resolve(responses.get("2XX") or responses["200"])
    content = reply.get("content", {}).get("application/json")
    return content["schema"] if content else None


def request_schema(path: str) -> dict[str, Any]:
    schema: dict[str, Any] = operation(path, "POST")["requestBody"]["content"]["application/json"][
        "schema"
    ]
    return schema


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # The document's components sit next to the schema so its "#/components/..." refs resolve.
    return jsonschema.Draft202012Validator({**schema, "components": CONVERTED["components"]})


# ---- what the schema leaves open, checked too: derived types and property names


def _branches(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schema and every schema it is made of (through $ref, allOf, anyOf, oneOf)."""
    schema = resolve(schema)
    yield schema
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, ()):
            yield from _branches(sub)


# Directory extensions (registered by an app at run time) appear as properties of the object; the
# metadata cannot list them (docs/graph-facts.md).
EXTENSION_PROPERTY = re.compile(r"^extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+$")


def _errors(schema: dict[str, Any], instance: Any, where: str) -> list[str]:
    return [
        f"{where}{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(schema).iter_errors(instance)
    ]


def problems(schema: dict[str, Any], instance: Any) -> list[str]:
    """Schema errors, plus errors against a derived type named in @odata.type, plus property
    names the type does not declare (the schema leaves additionalProperties open: a misspelt
    property would pass). OData annotations (`@odata.type`, `x@odata.nextLink`) are allowed."""
    found = _errors(schema, instance, "")
    _walk(schema, instance, "", found)
    return sorted(set(found))


def _walk(schema: dict[str, Any], instance: Any, where: str, found: list[str]) -> None:
    if isinstance(instance, dict):
        # OData names a derived type (a user among directoryObjects) in @odata.type.
        kind = instance.get("@odata.type")
        if isinstance(kind, str) and kind.lstrip("#") in COMPONENTS:
            schema = {"$ref": f"#/components/schemas/{kind.lstrip('#')}"}
            found += _errors(schema, instance, where)
        declared: dict[str, dict[str, Any]] = {}
        for branch in _branches(schema):
            for name, sub in branch.get("properties", {}).items():
                declared.setdefault(name, sub)
        for name, value in instance.items():
            if "@" in name or EXTENSION_PROPERTY.match(name):
                continue
            if name not in declared:
                found.append(f"{where}{name}: not a property of this type")
            else:
                _walk(declared[name], value, f"{where}{name}/", found)
    elif isinstance(instance, list):
        items = next((b["items"] for b in _branches(schema) if "items" in b), None)
        if items is not None:
            for i, value in enumerate(instance):
                _walk(items, value, f"{where}{i}/", found)


# ---- the engine against the simulator, every exchange recorded


@dataclass
class Exchange:
    method: str
    path: str  # without /v1.0
    query: str
    request: Any
    status: int
    response: Any


class Recorder(httpx.AsyncBaseTransport):
    """Under msgraph's middleware: sees each request as sent and each answer as served."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = await request.aread()
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.exchanges.append(
            Exchange(
                request.method,
                request.url.path.removeprefix("/v1.0"),
                unquote(request.url.query.decode()),
                json.loads(sent) if sent else None,
                response.status_code,
                json.loads(body) if body else None,
            )
        )
        headers = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


POLICY = f"""
version: 1
profiles:
  e5-full:
    skus: [{{sku: ENTERPRISEPREMIUM}}, {{sku: EMSPREMIUM}}]
  e5-no-yammer:
    skus: [{{sku: ENTERPRISEPREMIUM, disabledPlans: [YAMMER_ENTERPRISE]}}, {{sku: EMSPREMIUM}}]
selectors:
  - extensionProperty: {EXT}
  - displayNamePrefix: LIC-
    profile: e5-full
"""

# The schema's path templates, matched against the paths the engine called.
TEMPLATES = [(p, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$")) for p in SCHEMA["paths"]]


def template(path: str) -> str | None:
    return next((p for p, rx in TEMPLATES if rx.match(path)), None)


def run_engine(server: SimServer, page_size: int | None = None) -> list[Exchange]:
    """What a run reads (SKUs, tagged groups, members) and every kind of write the engine makes."""
    recorder = Recorder()

    async def go() -> None:
        base = f"{server.url}/v1.0"
        credential = LocalSimulatorCredential(f"{server.url}/_sim/token", base, required_roles())
        graph = GraphClient(credential, base, transport=recorder)
        try:
            skus = await graph.list_skus()
            await graph.list_subscriptions()
            await collect(graph, parse_policy(POLICY), skus, max_concurrency=2)
            await graph.assign_group_licenses(gid(2), [(E5, [YAMMER]), (EMS, [])], [])
            await graph.assign_group_licenses(gid(1), [], [EMS])
            await graph.reprocess_user(uid(3))
            await graph.send_mail(uid(1), ["ops@contoso.com"], "Seats low", "<p>E5: 0 free</p>")
        finally:
            await graph.close()

    with pytest.MonkeyPatch.context() as patch:
        if page_size is not None:
            # Small pages make the simulator serve @odata.nextLink, which the engine then follows.
            patch.setattr(shared.graph, "PAGE_SIZE", page_size)
        asyncio.run(go())
    return recorder.exchanges


@pytest.fixture(scope="module")
def exchanges() -> Iterator[list[Exchange]]:
    server = serve(small_tenant())
    try:
        yield run_engine(server) + run_engine(server, page_size=1)
    finally:
        server.stop()


def test_the_engine_used_every_path_it_is_checked_on(exchanges: list[Exchange]):
    used = {(x.method, template(x.path)) for x in exchanges}
    assert used >= {
        ("GET", "/subscribedSkus"),
        ("GET", "/directory/subscriptions"),
        ("GET", "/groups"),
        ("GET", "/groups/{group-id}/members"),
        ("POST", "/groups/{group-id}/assignLicense"),
        ("POST", "/users/{user-id}/reprocessLicenseAssignment"),
        ("POST", "/users/{user-id}/sendMail"),
    }
    assert all(x.status < 300 for x in exchanges), [
        (x.method, x.path, x.status) for x in exchanges if x.status >= 300
    ]
    # The engine's $selects reached the simulator, the advanced query and the paging too.
    groups = [x for x in exchanges if x.path == "/groups"]
    assert any(
        "licenseProcessingState" in x.query and "assignedLicenses" in x.query for x in groups
    )
    assert any("$count=true" in x.query for x in groups)
    assert any("@odata.nextLink" in (x.response or {}) for x in exchanges)


def test_every_response_the_simulator_served_matches_microsofts_schema(exchanges: list[Exchange]):
    checked = 0
    report: list[str] = []
    for x in exchanges:
        path = template(x.path)
        assert path is not None, f"{x.method} {x.path}: not in the schema subset"
        schema = response_schema(path, x.method)
        if schema is None or x.response is None:
            continue
        checked += 1
        report += [f"{x.method} {x.path}?{x.query}: {p}" for p in problems(schema, x.response)]
    assert not report, "\n".join(report)
    assert checked >= 8


def test_every_body_the_engine_sent_matches_the_actions_parameters(exchanges: list[Exchange]):
    writes = [x for x in exchanges if x.method == "POST"]
    assert len(writes) >= 4
    report: list[str] = []
    for x in writes:
        path = template(x.path)
        assert path is not None
        body = x.request if x.request is not None else {}
        report += [f"POST {x.path}: {p}" for p in problems(request_schema(path), body)]
    assert not report, "\n".join(report)


# ---- the check can fail: what it would say about a wrong answer or a wrong body


def _group_page() -> dict[str, Any]:
    return {
        "value": [
            {
                "id": gid(1),
                "displayName": "LIC-Finance-E5",
                "securityEnabled": True,
                "assignedLicenses": [{"skuId": E5, "disabledPlans": []}],
                "licenseProcessingState": {"state": "ProcessingComplete"},
            }
        ]
    }


def test_a_wrong_group_answer_fails_the_check():
    schema = response_schema("/groups")
    assert schema is not None
    assert problems(schema, _group_page()) == []
    for bad, what in [
        ({"licenseProcessingState": 3}, "licenseProcessingState"),
        ({"licenseProcessingState": "ProcessingComplete"}, "licenseProcessingState"),
        ({"assignedLicenses": [{"skuId": E5, "disabledPlans": "none"}]}, "disabledPlans"),
        ({"assignedLicenses": [{"skuId": "E5", "disabledPlans": []}]}, "skuId"),
        ({"securityEnabled": "yes"}, "securityEnabled"),
        ({"licenceProcessingState": {"state": "x"}}, "licenceProcessingState"),  # misspelt
    ]:
        page = _group_page()
        page["value"][0].update(bad)
        found = problems(schema, page)
        assert any(what in p for p in found), (bad, found)
    # Nullable is null, not anything: null passes, a number does not.
    page = _group_page()
    page["value"][0]["displayName"] = None
    assert problems(schema, page) == []


def test_a_wrong_member_answer_fails_the_check_against_the_derived_type():
    schema = response_schema("/groups/{group-id}/members")
    assert schema is not None
    user = {"@odata.type": "#microsoft.graph.user", "id": uid(1), "userPrincipalName": "a@b.c"}
    assert problems(schema, {"value": [user]}) == []
    found = problems(schema, {"value": [{**user, "accountEnabled": "true"}]})
    assert any("accountEnabled" in p for p in found), found
    found = problems(schema, {"value": [{**user, "licenseAssignmentStates": [{"state": 1}]}]})
    assert any("state" in p for p in found), found


def test_a_wrong_assign_license_body_fails_the_check():
    schema = request_schema("/groups/{group-id}/assignLicense")
    good = {"addLicenses": [{"skuId": E5, "disabledPlans": [YAMMER]}], "removeLicenses": []}
    assert problems(schema, good) == []
    assert any("removeLicenses" in p for p in problems(schema, {"addLicenses": []}))
    bad = {"addLicenses": [{"skuId": E5, "disabledPlans": YAMMER}], "removeLicenses": []}
    assert any("disabledPlans" in p for p in problems(schema, bad))
    bad = {"addLicenses": [{"skuid": E5}], "removeLicenses": []}  # a misspelt name
    assert any("skuid" in p for p in problems(schema, bad))


def test_a_send_mail_body_needs_the_parameter_names_of_the_metadata():
    # Microsoft's CSDL names sendMail's parameters `Message` and `SaveToSentItems`, and that is
    # what msgraph-sdk sends; a body without `Message` fails.
    schema = request_schema("/users/{user-id}/sendMail")
    message = {"subject": "s", "toRecipients": [{"emailAddress": {"address": "a@b.cd"}}]}
    assert problems(schema, {"Message": message, "SaveToSentItems": False}) == []
    assert any("Message" in p for p in problems(schema, {"SaveToSentItems": False}))
    assert any("subject" in p for p in problems(schema, {"Message": {**message, "subject": 1}}))


def test_nullable_conversion():
    assert to_json_schema({"type": "string", "nullable": True}) == {"type": ["string", "null"]}
    assert to_json_schema({"type": "object", "nullable": True}) == {"type": "null"}
    assert to_json_schema({"allOf": [{"$ref": "#/x"}], "nullable": True}) == {
        "anyOf": [{"allOf": [{"$ref": "#/x"}]}, {"type": "null"}]
    }
    assert to_json_schema({"type": "string", "enum": ["a"], "nullable": True})["enum"] == [
        "a",
        None,
    ]


def test_schema_paths_are_what_the_request_urls_say():
    # The path templates match only their own shapes (members is not taken for a group id).
    assert template("/groups/abc/members") == "/groups/{group-id}/members"
    assert template("/groups/abc") == "/groups/{group-id}"
    assert template(urlsplit("http://x/v1.0/users/u/sendMail").path.removeprefix("/v1.0")) == (
        "/users/{user-id}/sendMail"
    )


@pytest.mark.parametrize(
    "url, path",
    [
        ("/subscribedSkus", "/subscribedSkus"),
        ("/directory/subscriptions", "/directory/subscriptions"),
        ("/groups", "/groups"),
        (f"/groups/{gid(1)}", "/groups/{group-id}"),
        (f"/groups/{gid(2)}/members", "/groups/{group-id}/members"),
        ("/users", "/users"),
        (f"/users/{uid(1)}", "/users/{user-id}"),
        (f"/users/{uid(9)}?$select=id,userType,creationType,externalUserState", "/users/{user-id}"),
    ],
)
def test_the_simulators_default_answers_on_the_schemas_other_paths(
    client: Client, url: str, path: str
):
    # Without $select the simulator serves its default property set: each must be the metadata's.
    reply = client.get("/v1.0" + url)
    assert reply.status == 200, reply.text
    schema = response_schema(path)
    assert schema is not None
    assert problems(schema, reply.json) == []
