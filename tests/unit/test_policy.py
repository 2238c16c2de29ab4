"""The policy file: strict validation naming file, key and problem; resolution against a tenant."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import PolicyError
from shared.policy import load_policy, parse_policy, resolve
from tests.factories import E5, POLICY, YAMMER, default_skus

ROOT = Path(__file__).resolve().parents[2]


def error_for(text: str, source: str = "policy.yaml") -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source)
    return info.value


def test_shipped_policy_is_valid_and_resolves_against_the_demo_tenant_skus():
    policy = load_policy(ROOT / "policy" / "licensing-policy.yaml")
    assert set(policy.profiles) == {"e5-full", "e5-no-yammer", "powerbi"}
    resolved = resolve(policy, default_skus())
    [e5] = [s for s in resolved.profiles["e5-no-yammer"].skus if s.sku_id == E5]
    assert e5.disabled_plan_ids == {YAMMER}
    assert resolved.reserves[E5] == 2


def test_unknown_key_is_rejected_with_its_path():
    err = error_for(POLICY.replace("  - displayNamePrefix: LIC-", "  - displayNamePrefx: LIC-"))
    assert err.file == "policy.yaml"
    assert err.key == "selectors[0].displayNamePrefx"
    assert "unknown key" in err.problem


def test_unknown_key_in_a_profile_sku_names_the_profile():
    err = error_for(POLICY.replace("{sku: POWER_BI_PRO}", "{sku: POWER_BI_PRO, disabled: [X]}"))
    assert err.key == "profiles.powerbi.skus[0].disabled"


def test_missing_required_key():
    err = error_for("version: 1\nprofiles: {a: {skus: [{sku: X}]}}\n")
    assert err.key == "selectors" and err.problem == "is required"


def test_wrong_type_says_what_was_found():
    err = error_for(POLICY + "changeBudget: {maxGroupsChanged: many}\n")
    assert err.key == "changeBudget.maxGroupsChanged"
    assert "must be an integer, got a string" in err.problem


def test_selector_referring_to_an_undefined_profile():
    err = error_for(POLICY.replace("profile: e5-full", "profile: e3"))
    assert err.key == "selectors[0].profile" and "'e3'" in err.problem


def test_disabled_and_enabled_plans_together_are_refused():
    err = error_for(
        POLICY.replace(
            "{sku: POWER_BI_PRO}", "{sku: POWER_BI_PRO, disabledPlans: [A], enabledPlans: [B]}"
        )
    )
    assert "not both" in err.problem


def test_invalid_yaml_reports_the_line():
    err = error_for("version: 1\nprofiles: [\n")
    assert "not valid YAML" in err.problem and "line" in err.problem


def test_wrong_version():
    assert error_for(POLICY.replace("version: 1", "version: 2")).key == "version"


def test_group_ids_must_be_guids():
    err = error_for(
        POLICY.replace(
            "  - displayNamePrefix: LIC-\n    profile: e5-full",
            "  - groupIds: [not-a-guid]\n    profile: e5-full",
        )
    )
    assert err.key == "selectors[0].groupIds[0]"


def test_json_policy_files_are_read_too(tmp_path: Path):
    path = tmp_path / "p.json"
    path.write_text(
        '{"version": 1, "profiles": {"p": {"skus": [{"sku": "X"}]}}, '
        '"selectors": [{"displayNamePrefix": "L", "profile": "p"}]}'
    )
    assert load_policy(path).profiles["p"].skus[0].sku == "X"


def test_missing_file_names_the_setting(tmp_path: Path):
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.yaml")
    assert "LICENSING_POLICY_PATH" in str(info.value)


def test_unknown_sku_is_named_with_what_the_tenant_has():
    policy = parse_policy(POLICY.replace("sku: POWER_BI_PRO", "sku: POWER_BI_PREMIUM"), "p.yaml")
    with pytest.raises(PolicyError) as info:
        resolve(policy, default_skus())
    assert info.value.key == "profiles.powerbi.skus[0].sku"
    assert "POWER_BI_PREMIUM" in info.value.problem and "POWER_BI_PRO" in info.value.problem


def test_unknown_plan_is_named_with_the_skus_plans():
    policy = parse_policy(
        POLICY.replace("disabledPlans: [YAMMER_ENTERPRISE]", "disabledPlans: [KAIZALA]")
    )
    with pytest.raises(PolicyError) as info:
        resolve(policy, default_skus())
    assert info.value.key == "profiles.e5-no-yammer.skus[0].disabledPlans"
    assert "KAIZALA" in info.value.problem and "YAMMER_ENTERPRISE" in info.value.problem


def test_allow_list_disables_every_other_plan_and_reports_them():
    policy = parse_policy(
        POLICY.replace("disabledPlans: [YAMMER_ENTERPRISE]", "enabledPlans: [TEAMS1]")
    )
    resolved = resolve(policy, default_skus())
    [e5] = [s for s in resolved.profiles["e5-no-yammer"].skus if s.sku_id == E5]
    assert e5.disabled_plan_ids == {YAMMER}
    assert e5.implicitly_disabled == ("YAMMER_ENTERPRISE",)
