"""Tenant file validation: every mistake names its path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from simulator.tenant import Tenant, TenantError
from tests.simulator.conftest import DEMO, E5, gid, small_tenant, uid


def _mutated(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(small_tenant())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["groups"][1]["members"].append(uid(77)),
            "$.groups[1].members[4]: unknown member id",
        ),
        (lambda d: d["users"].append(dict(d["users"][0])), "$.users[6].id: duplicate object id"),
        (lambda d: d["users"][0].update(id="not-a-guid"), "$.users[0].id: not a GUID"),
        (lambda d: d["users"][0].update(colour="red"), "$.users[0].colour: unknown property"),
        (lambda d: d["users"][0].update(userType="Visitor"), "$.users[0].userType"),
        (
            lambda d: d["groups"][2].update(assignedLicenses=[{"skuId": E5}]),
            "$.groups[2].assignedLicenses: only security-enabled groups",
        ),
        (
            lambda d: d["users"][0].update(directLicenses=[{"skuId": gid(5)}]),
            "$.users[0].directLicenses[0].skuId: unknown skuId",
        ),
        (lambda d: d["skus"][0].update(prepaidUnits={"enabled": -1}), "prepaidUnits.enabled"),
        (lambda d: d["groups"][0]["members"].append(gid(1)), "cannot be a member of itself"),
    ],
)
def test_invalid_tenant_files_name_the_path(change: Any, message: str) -> None:
    with pytest.raises(TenantError) as info:
        Tenant.from_dict(_mutated(change))
    assert message in str(info.value)


def test_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(TenantError, match=r"broken\.json: not valid JSON"):
        Tenant.from_file(path)


def test_demo_tenant_loads_and_state_round_trips() -> None:
    tenant = Tenant.from_file(DEMO)
    again = Tenant.from_dict(tenant.to_dict())
    assert [g.id for g in again.groups.values()] == [g.id for g in tenant.groups.values()]
