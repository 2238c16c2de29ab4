"""The policy file: strict validation naming file, key and problem; resolution against a tenant."""

from __future__ import annotations

import ast
import fnmatch
import inspect
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import shared.policy
from shared.errors import PolicyError
from shared.policy import (
    ALERT_KINDS,
    SCHEMA_PATH,
    load_policy,
    parse_policy,
    policy_schema,
    resolve,
)
from simulator.generate import policy_for
from tests.factories import E5, POLICY, YAMMER, default_skus
from tests.integration.tenants import POLICY as INTEGRATION_POLICY

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


def test_a_duplicate_key_is_refused_naming_the_key_and_both_lines():
    # A second `removeUnlistedLicenses: true` further down would silently turn removal on.
    text = (
        POLICY + "removeUnlistedLicenses: false\nchangeBudget: {}\nremoveUnlistedLicenses: true\n"
    )
    first = text.splitlines().index("removeUnlistedLicenses: false") + 1
    err = error_for(text)
    assert err.file == "policy.yaml" and err.key == "removeUnlistedLicenses"
    assert f"line {first}" in err.problem and f"line {first + 2}" in err.problem


def test_a_duplicate_key_inside_a_profile_is_named_by_its_path():
    text = POLICY.replace(
        "  powerbi:\n    skus: [{sku: POWER_BI_PRO}]",
        "  powerbi:\n    skus: [{sku: POWER_BI_PRO}]\n    skus: [{sku: ENTERPRISEPREMIUM}]",
    )
    err = error_for(text)
    assert err.key == "profiles.powerbi.skus" and "twice" in err.problem


def test_a_duplicate_key_in_a_json_policy_is_refused_with_both_lines():
    text = (
        '{"version": 1,\n "profiles": {"p": {"skus": [{"sku": "X"}]}},\n'
        ' "selectors": [{"displayNamePrefix": "L", "profile": "p"}],\n'
        ' "removeUnlistedLicenses": false,\n "removeUnlistedLicenses": true}\n'
    )
    err = error_for(text, "policy.json")
    assert err.key == "removeUnlistedLicenses"
    assert "line 4" in err.problem and "line 5" in err.problem


SHIPPED_TEXT = (ROOT / "policy" / "licensing-policy.yaml").read_text()


@pytest.mark.parametrize(
    "n",
    [n for n, line in enumerate(SHIPPED_TEXT.splitlines(), 1) if re.match(r"^ *\w[\w-]*:", line)],
)
def test_any_key_line_of_the_shipped_policy_given_twice_is_refused(n: int):
    lines = SHIPPED_TEXT.splitlines()
    text = "\n".join([*lines[:n], lines[n - 1], *lines[n:]]) + "\n"
    err = error_for(text)
    assert err.key.rsplit(".", 1)[-1] == lines[n - 1].split(":")[0].strip()
    assert f"line {n} and line {n + 1}" in err.problem


# ---- the JSON Schema: the file editors use is the one the app validates with


EXAMPLES = {
    "policy/licensing-policy.yaml": SHIPPED_TEXT,
    "tests/factories.py POLICY": POLICY,
    "tests/integration/tenants.py POLICY": INTEGRATION_POLICY,
    # The benchmark sizes (bench/__main__.py SIZES), largest SKU count included.
    **{
        f"policy_for({spec})": policy_for(spec)
        for spec in ("users=1000,skus=5", "users=1000,skus=50")
    },
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_policy_in_the_repository_matches_the_schema(name: str):
    jsonschema.Draft7Validator(policy_schema()).validate(yaml.safe_load(EXAMPLES[name]))
    assert parse_policy(EXAMPLES[name], name).selectors


def test_the_schema_is_a_valid_draft_7_schema_and_refuses_a_bad_policy():
    jsonschema.Draft7Validator.check_schema(policy_schema())
    bad = yaml.safe_load(SHIPPED_TEXT)
    bad["removeUnlistedLicenses"] = "yes"
    assert not jsonschema.Draft7Validator(policy_schema()).is_valid(bad)


def test_the_annotated_example_points_editors_at_the_schema():
    first = SHIPPED_TEXT.splitlines()[0]
    assert first == "# yaml-language-server: $schema=./licensing-policy.schema.json"
    assert (ROOT / "policy" / first.split("=", 1)[1]).resolve() == SCHEMA_PATH


def test_the_schema_is_deployed_with_the_function_app():
    # .funcignore uses gitignore-style patterns; none may cover the schema or its folder.
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    rel = SCHEMA_PATH.relative_to(ROOT).as_posix()
    prefixes = [rel, *(rel.rsplit("/", k)[0] for k in range(1, rel.count("/") + 1))]
    covered = [p for p in patterns for part in prefixes if fnmatch.fnmatch(part, p)]
    assert not covered, covered


def _schema_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            keys.add(name)
            keys |= _schema_keys(sub)
        for k, sub in node.items():
            if k != "properties":
                keys |= _schema_keys(sub)
    elif isinstance(node, list):
        for sub in node:
            keys |= _schema_keys(sub)
    return keys


def _keys_the_code_reads() -> set[str]:
    """String constants `_validate` uses as keys: x["k"], x.get("k", ...), "k" in x, kinds."""
    tree = ast.parse(inspect.getsource(shared.policy._validate))
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            found.append(node.slice)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get" and node.args:
            found.append(node.args[0])
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
            found.append(node.left)
        elif isinstance(node, ast.Tuple):
            found += node.elts
    keys = {e.value for e in found if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return {k for k in keys if re.match(r"^[A-Za-z][\w-]*$", k)}


def test_every_key_the_code_reads_is_in_the_schema_and_every_schema_key_is_read():
    schema_keys = _schema_keys(policy_schema())
    code_keys = _keys_the_code_reads()
    assert code_keys - schema_keys == set(), "read by the code but not in the schema"
    # A profile's description is documentation only, `version` is the schema's alone (const 1),
    # recipients are read per kind by iterating: nothing else in the schema may go unread.
    unread = schema_keys - code_keys
    assert unread == {"description", "version", *ALERT_KINDS}, "in the schema but never read"
    recipients = policy_schema()["properties"]["alerts"]["properties"]["recipients"]
    assert set(recipients["properties"]) == set(ALERT_KINDS)


def test_the_schema_file_is_json_an_editor_can_read():
    assert json.loads(SCHEMA_PATH.read_text())["$schema"].startswith("http://json-schema.org/")


def test_subscription_days_defaults_to_30_and_is_checked():
    assert parse_policy(POLICY, "p.yaml").alerts.subscription_days == 30
    assert (
        parse_policy(POLICY + "alerts: {subscriptionDays: 45}\n", "p.yaml").alerts.subscription_days
        == 45
    )
    err = error_for(POLICY + "alerts: {subscriptionDays: 0}\n")
    assert err.key == "alerts.subscriptionDays"
    err = error_for(POLICY + "alerts: {subscriptionDays: soon}\n")
    assert err.key == "alerts.subscriptionDays" and "integer" in err.problem
    # Each subscription kind can have its own recipients.
    policy = parse_policy(
        POLICY + "alerts: {recipients: {subscription-ending: [buyer@contoso.com]}}\n", "p.yaml"
    )
    assert policy.alerts.recipients["subscription-ending"] == ("buyer@contoso.com",)
