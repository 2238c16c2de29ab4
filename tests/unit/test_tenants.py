"""Tenant records and tenants files: validated like the policy, written back as read."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.policy import load_policy, merge_overrides
from shared.settings import APP_ROOT, Settings
from shared.tenants import (
    Tenant,
    TenantError,
    TenantsFile,
    dump_tenants,
    parse_tenants,
    settings_for,
    tenant_from_record,
)

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
POLICY = APP_ROOT / "policy" / "licensing-policy.yaml"


def _settings() -> Settings:
    return Settings.from_env(
        {
            "LICENSING_POLICY_PATH": str(POLICY),
            "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
            "LICENSING_GRAPH_BASE_URL": "http://127.0.0.1:1/v1.0",
            "LICENSING_SIM_TOKEN_URL": "http://127.0.0.1:1/_sim/token",
            "LICENSING_TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "LICENSING_ALERT_RECIPIENTS": "ops@msp.example",
        }
    )


def test_a_tenants_file_reads_back_what_was_written(tmp_path: Path) -> None:
    tenants = [
        Tenant(A, "Contoso", mode="apply", alert_recipients=("it@contoso.example",)),
        Tenant(
            B, "Fabrikam", enabled=False, policy_overrides={"changeBudget": {"maxGroupsChanged": 5}}
        ),
    ]
    for name in ("tenants.yaml", "tenants.json"):
        path = tmp_path / name
        path.write_text(dump_tenants(tenants, path))
        assert parse_tenants(path.read_text(), str(path)) == tenants


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("version: 1\ntenants:\n  - {tenantId: nope, displayName: X}\n", "tenantId", "nope"),
        ("version: 1\ntenants:\n  - {tenantId: " + A + "}\n", "tenants[0]", "displayName"),
        (
            "version: 1\ntenants:\n  - {tenantId: " + A + ", displayName: X, mode: fix}\n",
            "mode",
            "'plan' or 'apply'",
        ),
        (
            f"version: 1\ntenants:\n  - {{tenantId: {A}, displayName: X}}\n"
            f"  - {{tenantId: {A.upper()}, displayName: Y}}\n",
            "tenants[1].tenantId",
            "listed twice",
        ),
        (
            "version: 1\ntenants:\n  - {tenantId: " + A + ", displayName: X, colour: red}\n",
            "",
            "colour",
        ),
    ],
)
def test_a_bad_tenants_file_names_the_tenant_and_the_key(text: str, key: str, words: str) -> None:
    with pytest.raises(TenantError) as caught:
        parse_tenants(text, "tenants.yaml")
    message = str(caught.value)
    assert "tenants.yaml" in message
    assert key in message and words in message


def test_a_record_is_checked_on_its_own() -> None:
    with pytest.raises(TenantError, match="alertRecipients"):
        tenant_from_record({"tenantId": A, "displayName": "X", "alertRecipients": "a@b.c"})


def test_a_tenants_run_uses_its_mode_policy_and_recipients() -> None:
    base = _settings()
    t = Tenant(
        A, "Contoso", mode="apply", policy_overrides={"changeBudget": {"maxGroupsChanged": 3}}
    )
    s = settings_for(base, t)
    assert (s.tenant_id, s.tenant_name, s.timer_mode) == (A, "Contoso", "apply")
    assert s.alert_recipients == base.alert_recipients  # none of its own: the deployment's
    assert settings_for(base, None) is base
    own = settings_for(base, Tenant(B, "F", alert_recipients=("it@f.example",)))
    assert own.alert_recipients == ("it@f.example",)


def test_overrides_change_one_figure_and_keep_the_rest() -> None:
    base = load_policy(POLICY)
    changed = load_policy(POLICY, {"changeBudget": {"maxGroupsChanged": 3}})
    assert changed.change_budget.max_groups_changed == 3
    assert changed.profiles == base.profiles
    assert changed.digest != base.digest
    assert merge_overrides({"a": {"b": 1, "c": 2}}, {"a": {"c": None, "d": [1]}}) == {
        "a": {"b": 1, "d": [1]}
    }


def test_an_override_the_schema_refuses_is_an_error_naming_the_tenant_overrides() -> None:
    with pytest.raises(Exception, match="overrides"):
        load_policy(POLICY, {"changeBudget": {"maxGroupsChanged": "many"}})


def test_the_file_source_adds_replaces_and_removes(tmp_path: Path) -> None:
    source = TenantsFile(tmp_path / "tenants.yaml")
    assert source.list() == []  # no file yet: no tenants, not an error
    source.put(Tenant(A, "Contoso"))
    source.put(Tenant(B, "Fabrikam"))
    source.put(Tenant(A, "Contoso Ltd", enabled=False))
    assert [(t.display_name, t.enabled) for t in source.list()] == [
        ("Contoso Ltd", False),
        ("Fabrikam", True),
    ]
    source.remove(A)
    assert [t.tenant_id for t in source.list()] == [B]
