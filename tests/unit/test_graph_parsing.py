"""Parsing Graph's JSON into the engine's model: Microsoft's documented shapes and the shapes the
docs leave open (docs/graph-facts.md), each decided the way the planner needs it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.collect import _group
from shared.errors import GraphReadError
from shared.graph import MEMBER_SELECT, _sku, _user
from shared.model import AssignedLicense
from shared.planner import Decision, make_plan
from tests.factories import PBI, default_skus, group, resolved, snapshot

EXAMPLES = Path(__file__).parent.parent / "simulator" / "examples"
GROUP_ID = "7ad2c5d1-0d43-4d1e-a1f4-5f0c4a0f1a11"


def example(name: str) -> Any:
    return json.loads((EXAMPLES / f"{name}.json").read_text())["response"]["body"]


def member(**extra: Any) -> dict[str, Any]:
    item = {
        "@odata.type": "#microsoft.graph.user",
        "id": "0952E4C8-432F-4950-A65C-769C45993527",
        "userPrincipalName": "ada@contoso.com",
        "displayName": "Ada",
        "userType": "Member",
        "accountEnabled": True,
    }
    item.update(extra)
    return item


def count_violation(**extra: Any) -> dict[str, Any]:
    return {
        "skuId": PBI.upper(),
        "assignedByGroup": GROUP_ID,
        "disabledPlans": [],
        "state": "Error",
        "error": "CountViolation",
        **extra,
    }


# -- who holds a licence ---------------------------------------------------------------------


@pytest.mark.parametrize("listed_in_assigned_licenses", [True, False])
def test_user_in_count_violation_is_reprocessed_whether_or_not_assigned_licenses_lists_the_sku(
    listed_in_assigned_licenses: bool,
):
    # Microsoft's docs do not say whether an error-state SKU also appears in assignedLicenses.
    raw = member(
        assignedLicenses=[{"skuId": PBI, "disabledPlans": []}]
        if listed_in_assigned_licenses
        else [],
        licenseAssignmentStates=[count_violation()],
    )
    stuck = _user(raw)
    assert PBI not in stuck.held_skus
    g = group("LIC-Sales", "powerbi", (AssignedLicense(PBI),), group_id=GROUP_ID)
    plan = make_plan(snapshot(default_skus(pbi=5, consumed_pbi=4), (g, [stuck])), resolved())
    assert plan.groups[0].decision is Decision.REPROCESS
    assert plan.groups[0].reprocess_user_ids == (stuck.id,)


def test_active_and_active_with_error_hold_the_sku_error_and_disabled_do_not():
    states = [
        {"skuId": "A", "assignedByGroup": None, "state": "Active", "error": "None"},
        {"skuId": "B", "assignedByGroup": GROUP_ID, "state": "ActiveWithError", "error": "Other"},
        {"skuId": "C", "assignedByGroup": GROUP_ID, "state": "Error", "error": "CountViolation"},
        {"skuId": "D", "assignedByGroup": GROUP_ID, "state": "Disabled", "error": None},
    ]
    u = _user(member(assignedLicenses=[], licenseAssignmentStates=states))
    assert u.held_skus == {"a", "b"}
    assert u.errors_from_group(GROUP_ID) == {"b": "Other", "c": "CountViolation", "d": "Disabled"}


def test_a_sku_held_from_another_source_is_held_despite_a_group_error():
    states = [
        {"skuId": PBI, "assignedByGroup": None, "state": "Active", "error": "None"},
        count_violation(),
    ]
    assert PBI in _user(member(licenseAssignmentStates=states)).held_skus


def test_assigned_licenses_decide_holding_only_when_states_are_absent():
    raw = member(assignedLicenses=[{"skuId": PBI.upper(), "disabledPlans": []}])
    assert _user(raw).held_skus == {PBI}


@pytest.mark.parametrize("bad", ["Active", {"skuId": PBI}, [{"state": "Active"}], [42]])
def test_malformed_license_assignment_states_are_a_read_error(bad: Any):
    with pytest.raises((KeyError, TypeError, ValueError)):
        _user(member(licenseAssignmentStates=bad))


# -- B2B from identities -----------------------------------------------------------------------


def test_identities_are_selected_on_members():
    assert "identities" in MEMBER_SELECT


def test_federated_sign_in_identity_marks_an_external_account():
    raw = member(
        identities=[
            {"signInType": "userPrincipalName", "issuer": "contoso.com", "issuerAssignedId": "x"},
            {"signInType": "federated", "issuer": "ExternalAzureAD", "issuerAssignedId": "y"},
        ]
    )
    u = _user(raw)
    assert u.is_b2b and u.external_issuer == "ExternalAzureAD"


def test_identity_from_an_issuer_other_than_the_tenants_own_marks_an_external_account():
    raw = member(
        identities=[
            {"signInType": "userPrincipalName", "issuer": "contoso.com", "issuerAssignedId": "x"},
            {"signInType": "emailAddress", "issuer": "fabrikam.com", "issuerAssignedId": "y"},
        ]
    )
    assert _user(raw).external_issuer == "fabrikam.com"


def test_documented_member_identity_is_not_external():
    body = dict(example("user-get--example-3-select"))
    body.update(id="4562bcc8-c436-4f95-b7c0-4f8ce89dca5e", userPrincipalName="AdeleV@contoso.com")
    u = _user(body)
    assert u.external_issuer is None and not u.is_b2b


def test_documented_guest_is_b2b_by_its_upn_even_though_its_identity_is_the_tenants():
    [guest] = copy.deepcopy(example("user-list--example-8-guest-users-endswith-upn")["value"])
    guest["userPrincipalName"] = guest["identities"][0]["issuerAssignedId"]
    u = _user(guest)
    assert u.is_b2b and u.external_issuer is None and not u.is_internal_guest


def test_internal_guest_is_blocked_but_recognised_as_internal():
    u = _user(member(userType="Guest"))
    assert u.is_b2b and u.is_internal_guest


def test_documented_users_parse_without_licences_or_guest_signals():
    for raw in example("user-list--example-1-all-users")["value"]:
        u = _user(raw)
        assert u.held_skus == frozenset() and not u.is_b2b and u.id == raw["id"].lower()


# -- groups: licenseProcessingState in both documented shapes --------------------------------


@pytest.mark.parametrize(
    ("raw_state", "parsed"),
    [
        ({"state": "ProcessingInProgress"}, "ProcessingInProgress"),  # v1.0 metadata
        ("ProcessingComplete", "ProcessingComplete"),  # resource page
        (None, None),
    ],
)
def test_license_processing_state_as_object_or_string(raw_state: Any, parsed: str | None):
    raw = {"id": GROUP_ID, "displayName": "LIC-A", "securityEnabled": True}
    if raw_state is not None:
        raw["licenseProcessingState"] = raw_state
    assert _group(raw, "powerbi").processing_state == parsed


@pytest.mark.parametrize("bad", [3, ["ProcessingComplete"], {"status": "x"}, {"state": 7}, True])
def test_any_other_license_processing_state_is_a_read_error(bad: Any):
    raw = {"id": GROUP_ID, "displayName": "LIC-A", "licenseProcessingState": bad}
    with pytest.raises(GraphReadError, match="licenseProcessingState"):
        _group(raw, "powerbi")


def test_documented_licensed_groups_parse():
    groups = [
        _group(raw, "e5")
        for raw in example("group-list--example-7-licensed-groups-expand-members")["value"]
    ]
    assert [len(g.assigned_licenses) for g in groups] == [1, 1]
    assert groups[1].assigned_licenses[0].disabled_plans == {"7547a3fe-08ee-4ccb-b430-5077c5041653"}


# -- SKUs: fail closed ------------------------------------------------------------------------


def test_documented_skus_parse_and_only_enabled_user_skus_are_assignable():
    skus = [_sku(raw) for raw in example("subscribedsku-list--list-subscribedskus")["value"]]
    assert [(s.part_number, s.capability_status, s.assignable) for s in skus][:2] == [
        ("ENTERPRISEPREMIUM", "Enabled", True),
        (skus[1].part_number, "Suspended", False),
    ]
    assert skus[0].free == 25 - 14


@pytest.mark.parametrize("missing", ["capabilityStatus", "appliesTo"])
def test_sku_missing_capability_status_or_applies_to_is_not_assignable(missing: str):
    raw = copy.deepcopy(example("subscribedsku-list--list-subscribedskus")["value"][0])
    del raw[missing]
    sku = _sku(raw)
    assert not sku.assignable
    assert sku.unassignable_reason is not None and missing in sku.unassignable_reason
