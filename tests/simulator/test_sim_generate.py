"""Generated tenants: deterministic, realistically shaped, usable with the generated policy, and
served correctly (paging through a large group, UPN lookups, licence errors, reprocessing)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from shared.policy import parse_policy
from simulator.generate import EXTENSION, GenerateSpec, parse_spec, policy_for
from simulator.tenant import ACTIVE, COUNT_VIOLATION, ERROR, Tenant
from tests.simulator.conftest import ROOT, Client, serve

SPEC = {"users": 20_000, "groups": 120, "skus": 6, "tagged": 40}


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return Tenant.generate(**SPEC, seed=7)


@pytest.fixture(scope="module")
def sim(tenant: Tenant) -> Iterator[Client]:
    server = serve(tenant)
    try:
        yield Client(server)
    finally:
        server.stop()


def test_same_seed_same_tenant_other_seed_other_tenant(tenant: Tenant) -> None:
    digest = Tenant.generate(**SPEC, seed=7).state_digest()
    assert digest == tenant.state_digest()
    assert Tenant.generate(**SPEC, seed=8).state_digest() != digest


def test_spec_parsing_and_validation() -> None:
    spec = parse_spec("users=100_000,groups=500,skus=20,guests=0.02,tagged=50")
    assert spec == GenerateSpec(users=100_000, groups=500, skus=20, guests=0.02, tagged=50)
    for bad in ("users=x", "colour=blue", "users=10,guests=0.9", "groups=5,tagged=9"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_shape(tenant: Tenant) -> None:
    users = list(tenant.users.values())
    assert len(users) == 20_000 and len(tenant.groups) == 120 and len(tenant.skus) == 6
    guests = [u for u in users if u.props["userType"] == "Guest"]
    assert len(guests) == 200 and all("#EXT#" in u.upn for u in guests)
    assert all(u.props["creationType"] == "Invitation" for u in guests)
    assert any(u.props["usageLocation"] is None for u in users)
    assert tenant.default_usage_location == "US"
    sizes = sorted(len(g.members) for g in tenant.groups.values())
    assert sizes[0] <= 6 and sizes[-1] >= 5_000 and sizes[len(sizes) // 2] < 1_000
    tagged = [g for g in tenant.groups.values() if EXTENSION in g.extensions]
    assert len(tagged) == 40
    assert all(g.props["displayName"].startswith("LIC-") for g in tagged)
    # Every tagged group's profile exists in the generated policy, which the engine can load.
    policy = parse_policy(policy_for(GenerateSpec(**SPEC)), "generated.yaml")
    assert {g.extensions[EXTENSION] for g in tagged} <= set(policy.profiles)
    assert policy.selectors[0].extension_property == EXTENSION
    # Compliant, drifted and unlicensed tagged groups; nested groups; groups holding guests.
    licensed = [g for g in tagged if g.licenses]
    assert 0 < len(licensed) < len(tagged)
    assert any(m in tenant.groups for g in tenant.groups.values() for m in g.members)
    guest_ids = {u.id for u in guests}
    assert any(guest_ids & g.member_set for g in tenant.groups.values())
    assert any(not g.security_enabled for g in tenant.groups.values())


def test_licensing_state_is_consistent(tenant: Tenant) -> None:
    states = Counter(
        (s.state, s.error) for u in tenant.users.values() for s in u.states if s.assigned_by_group
    )
    assert states[(ACTIVE, None)] > 1_000
    assert states[(ERROR, COUNT_VIOLATION)] > 0
    for sku in tenant.skus.values():
        holders = sum(1 for u in tenant.users.values() if sku.sku_id in u.active_skus())
        assert holders == tenant.consumed(sku.sku_id)
        assert holders <= max(
            sku.enabled_at_load, sum(1 for u in tenant.users.values() if u.direct)
        )
    # Seats were bought since the errors: some SKUs have free seats, at least one is short.
    free = [tenant.free(s) for s in tenant.skus]
    assert any(f > 0 for f in free)


def test_pages_of_999_through_the_largest_group(sim: Client, tenant: Tenant) -> None:
    group = max(tenant.groups.values(), key=lambda g: len(g.members))
    url = f"/v1.0/groups/{group.id}/members?$select=id,userPrincipalName,userType&$top=999"
    seen: list[str] = []
    pages = 0
    while url:
        reply = sim.get(url)
        assert reply.status == 200, reply.text
        body = reply.json
        assert len(body["value"]) <= 999
        seen += [m["id"] for m in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
    assert seen == group.members and pages == -(-len(group.members) // 999)


def test_lookup_by_upn_and_filters(sim: Client, tenant: Tenant) -> None:
    guest = next(u for u in tenant.users.values() if u.props["userType"] == "Guest")
    upn = quote(guest.upn)  # '#' would start a fragment
    reply = sim.get(f"/v1.0/users/{upn}?$select=id,userType,externalUserState")
    assert reply.status == 200 and reply.json["id"] == guest.id
    assert reply.json["userType"] == "Guest"
    assert sim.get("/v1.0/users/nobody.here1@contoso-sim.onmicrosoft.com").status == 404
    tagged = sim.get(
        f"/v1.0/groups?$filter={quote(EXTENSION + ' eq ' + repr('ENTERPRISEPREMIUM'))}"
        f"&$select=id,{EXTENSION}"
    )
    assert tagged.status == 200
    expected = [
        g.id for g in tenant.groups.values() if g.extensions.get(EXTENSION) == "ENTERPRISEPREMIUM"
    ]
    assert [g["id"] for g in tagged.json["value"]] == expected


def test_errors_listed_and_cleared_by_reprocess() -> None:
    tenant = Tenant.generate(users=3_000, groups=40, skus=3, errors=0.05, seed=11)
    server = serve(tenant)
    try:
        client = Client(server)
        group = next(g for g in tenant.groups.values() if tenant.members_with_errors(g))
        reply = client.get(f"/v1.0/groups/{group.id}/membersWithLicenseErrors?$select=id")
        stuck = [m["id"] for m in reply.json["value"]]
        assert stuck and stuck == [u.id for u in tenant.members_with_errors(group)]
        # Seats are there now (bought since), but nothing changes until reprocessing.
        assert client.post(f"/v1.0/users/{stuck[0]}/reprocessLicenseAssignment").status == 200
        assert stuck[0] not in [u.id for u in tenant.members_with_errors(group)]
    finally:
        server.stop()


def test_cli_serves_a_generated_tenant() -> None:
    cmd = [
        sys.executable,
        "-m",
        "simulator",
        "serve",
        "--port",
        "0",
        "--generate",
        "users=2000,groups=30,skus=4",
        "--seed",
        "3",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:"), proc.stderr
        import urllib.request

        with urllib.request.urlopen(line.split(" on ")[1] + "/_sim/health", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    policy = subprocess.run(
        [sys.executable, "-m", "simulator", "policy", "--generate", "users=2000,groups=30,skus=4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert policy.returncode == 0 and policy.stdout == policy_for("users=2000,groups=30,skus=4")
