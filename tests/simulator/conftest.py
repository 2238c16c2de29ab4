"""Fixtures for the simulator tests: an in-process server on a free loopback port and a tiny
HTTP client (urllib) so the tests exercise real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulator.server import SimServer, start_server
from simulator.tenant import Tenant

ROOT = Path(__file__).resolve().parents[2]

# Microsoft's documented request/response examples, copied in with their sources (INDEX.md there).
EXAMPLES = Path(__file__).resolve().parent / "examples"
DEMO = ROOT / "simulator" / "tenants" / "demo.json"

READ_ALL = (
    "GroupMember.Read.All",
    "User.Read.All",
    "LicenseAssignment.Read.All",
    "Organization.Read.All",
)
WRITE_ALL = (*READ_ALL, "LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Mail.Send")

TENANT_ID = "11111111-1111-4111-8111-111111111111"
E5 = "c7df2760-2c81-4ef7-b578-5b5392b571df"
EMS = "b05e124f-c7cc-45a0-a6aa-8cf78c946968"
PBI = "f8a1db68-be16-40ed-86d5-cb42ce701560"
YAMMER = "7547a3fe-08ee-4ccb-b430-5077c5041653"
EXCHANGE = "efb87545-963c-4e0d-99df-69c6916d9eb0"
EXT = "extension_0f5e1b7a9c2d4e6f8a1b3c5d7e9f0a2b_licensingProfile"


def uid(n: int) -> str:
    return f"10000000-0000-4000-8000-{n:012d}"


def gid(n: int) -> str:
    return f"20000000-0000-4000-8000-{n:012d}"


def small_tenant() -> dict[str, Any]:
    """5 members + 1 guest; G1 licensed (E5+EMS), G2 unlicensed with G1 nested, G3 mail-enabled."""
    users = [
        {
            "id": uid(i),
            "displayName": f"User {i}",
            "userPrincipalName": f"user{i}@contoso.com",
            "mail": f"user{i}@contoso.com",
            "usageLocation": "GB",
        }
        for i in range(1, 6)
    ]
    users.append(
        {
            "id": uid(9),
            "displayName": "Guest Person",
            "userPrincipalName": "guest_fabrikam.com#EXT#@contoso.onmicrosoft.com",
            "userType": "Guest",
            "creationType": "Invitation",
            "externalUserState": "Accepted",
        }
    )
    return {
        "tenantId": TENANT_ID,
        "skus": [
            {
                "skuId": E5,
                "skuPartNumber": "ENTERPRISEPREMIUM",
                "prepaidUnits": {"enabled": 4},
                "servicePlans": [
                    {"servicePlanId": EXCHANGE, "servicePlanName": "EXCHANGE_S_ENTERPRISE"},
                    {"servicePlanId": YAMMER, "servicePlanName": "YAMMER_ENTERPRISE"},
                ],
            },
            {"skuId": EMS, "skuPartNumber": "EMSPREMIUM", "prepaidUnits": {"enabled": 10}},
            {"skuId": PBI, "skuPartNumber": "POWER_BI_PRO", "prepaidUnits": {"enabled": 2}},
        ],
        "users": users,
        "groups": [
            {
                "id": gid(1),
                "displayName": "LIC-Finance-E5",
                "extensions": {EXT: "e5-full"},
                "assignedLicenses": [
                    {"skuId": E5, "disabledPlans": []},
                    {"skuId": EMS, "disabledPlans": []},
                ],
                "members": [uid(1), uid(2)],
            },
            {
                "id": gid(2),
                "displayName": "LIC-Sales-E5",
                "extensions": {EXT: "e5-no-yammer"},
                "members": [uid(3), uid(4), uid(5), gid(1)],
            },
            {
                "id": gid(3),
                "displayName": "Announcements",
                "securityEnabled": False,
                "mailEnabled": True,
                "members": [uid(9)],
            },
        ],
    }


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


class Client:
    """Just enough HTTP for the tests, with per-call roles turned into simulator tokens."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.url = server.url
        self._tokens: dict[tuple[str, ...], str] = {}

    def token(self, roles: tuple[str, ...]) -> str:
        if roles not in self._tokens:
            reply = self.call("POST", "/_sim/token", body={"roles": list(roles)}, auth=None)
            assert reply.status == 200, reply.text
            self._tokens[roles] = reply.json["access_token"]
        return self._tokens[roles]

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        roles: tuple[str, ...] = WRITE_ALL,
        headers: dict[str, str] | None = None,
        auth: str | None = "roles",
    ) -> Reply:
        url = path if path.startswith("http") else self.url + path
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth == "roles":
            req.add_header("Authorization", f"Bearer {self.token(roles)}")
        elif auth is not None:
            req.add_header("Authorization", auth)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read().decode())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read().decode())

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.call("POST", path, body=body, **kw)

    def state(self) -> dict[str, Any]:
        return self.get("/_sim/state", auth=None).json

    def user_states(self, user_id: str) -> list[dict[str, Any]]:
        user = next(u for u in self.state()["users"] if u["id"] == user_id)
        return user["licenseAssignmentStates"]

    def consumed(self, part_number: str) -> int:
        skus = self.get("/v1.0/subscribedSkus").json["value"]
        return next(s["consumedUnits"] for s in skus if s["skuPartNumber"] == part_number)


def serve(tenant: dict[str, Any] | Tenant, **options: Any) -> SimServer:
    t = tenant if isinstance(tenant, Tenant) else Tenant.from_dict(tenant)
    return start_server(t, port=0, **options)


@pytest.fixture
def client() -> Iterator[Client]:
    server = serve(small_tenant())
    try:
        yield Client(server)
    finally:
        server.stop()


@pytest.fixture
def demo() -> Iterator[Client]:
    server = serve(Tenant.from_file(DEMO))
    try:
        yield Client(server)
    finally:
        server.stop()
