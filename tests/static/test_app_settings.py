"""The app settings infra sets are those local.settings.sample.json documents (and the app reads).

Three sample keys are local-only by design and must not be set in Azure:
- LICENSING_SIM_TOKEN_URL: the local Graph simulator's token endpoint.
- LICENSING_TABLES_CONNECTION_STRING: a connection string carries an account key; in Azure the app
  uses LICENSING_TABLES_ENDPOINT with its managed identity, and the storage account refuses keys.
- LICENSING_TENANTS_FILE: a tenants file is for local use; in Azure the tenants table is the
  registry (`python -m shared tenants ...`).
"""

from __future__ import annotations

import json
import re

from shared.api import OPERATOR_ROLE, READER_ROLE, ROLES_FOR
from shared.queue import GUID_RE
from shared.settings import SETTINGS_KEYS, Settings
from tests.static.bicep import INFRA, ROOT, block_after, object_entries, param_defaults, read

LOCAL_ONLY = {
    "LICENSING_SIM_TOKEN_URL",
    "LICENSING_TABLES_CONNECTION_STRING",
    "LICENSING_TENANTS_FILE",
}


def _sample_keys() -> set[str]:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return {k for k in values if k.startswith("LICENSING_")}


def _bicep_settings() -> dict[str, str]:
    return object_entries(block_after(read("main.bicep"), "var licensingAppSettings ="))


def _bool_defaults(text: str) -> dict[str, bool]:
    """param NAME bool = true|false."""
    found = re.findall(r"^param\s+(\w+)\s+bool\s*=\s*(true|false)\s*$", text, flags=re.M)
    return {name: value == "true" for name, value in found}


def _resolve(expression: str, defaults: dict[str, str]) -> str:
    """Value of a setting as deployed with every azd variable unset."""
    if m := re.fullmatch(r"'([^']*)'", expression):
        return m.group(1)
    if m := re.fullmatch(r"(\w+)\s*\?\s*\w+\.outputs\.\w+\s*:\s*'([^']*)'", expression):
        flag = _bool_defaults(read("main.bicep"))[m.group(1)]
        assert not flag, f"{m.group(1)} is on by default: its module output is not known here"
        return m.group(2)
    if m := re.fullmatch(r"empty\((\w+)\)\s*\?\s*'([^']*)'\s*:\s*\1", expression):
        return m.group(2)
    if expression in defaults:
        return defaults[expression]
    if expression == "storage.outputs.tableEndpoint":
        return "https://stexample.table.core.windows.net/"
    raise AssertionError(f"don't know how to read the Bicep value {expression!r}")


def test_infra_sets_the_sample_keys_except_the_local_only_ones():
    assert _sample_keys() == set(SETTINGS_KEYS)
    assert set(SETTINGS_KEYS) >= LOCAL_ONLY
    assert set(_bicep_settings()) == _sample_keys() - LOCAL_ONLY


def test_local_only_settings_appear_nowhere_in_infra():
    for path in INFRA.rglob("*"):
        if path.suffix in (".bicep", ".json"):
            text = (
                read(str(path.relative_to(INFRA))) if path.suffix == ".bicep" else path.read_text()
            )
            for key in LOCAL_ONLY:
                assert key not in text, f"{path.name} sets {key}, a local-only setting"


def test_the_deployed_defaults_parse_and_are_safe():
    main = read("main.bicep")
    env = {k: _resolve(v, param_defaults(main)) for k, v in _bicep_settings().items()}
    settings = Settings.from_env(env)
    assert settings.timer_mode == "plan", "a fresh deployment must only plan"
    assert not settings.http_apply_without_auth, "apply over HTTP needs Authentication by default"
    assert settings.graph_credential == "managed-identity"
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.tables_connection_string is None and settings.tables_endpoint
    assert settings.policy_path.is_file(), "the policy file ships in the package"
    assert settings.multitenant_app_id is None, "one tenant unless multiTenant is asked for"


def test_each_setting_is_an_azd_variable_of_the_same_name():
    """docs/deploy.md switches with `azd env set LICENSING_TIMER_MODE apply` + `azd provision`."""
    main = read("main.bicep")
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = set(re.findall(r"^param\s+(\w+)\s", main, flags=re.M))
    assert set(params) <= declared, f"main.parameters.json sets unknown {set(params) - declared}"
    for key, expression in _bicep_settings().items():
        m = re.fullmatch(r"empty\((\w+)\)\s*\?\s*'[^']*'\s*:\s*\1", expression) or re.fullmatch(
            r"(\w+)", expression
        )
        if not m or m.group(1) not in declared:
            continue  # fixed in Azure (Graph URL, credential, endpoint)
        assert params[m.group(1)]["value"] == "${" + key + "}", (
            f"param {m.group(1)} should come from the azd variable {key}"
        )


def test_host_settings_are_identity_based_and_flex_compatible():
    api = read("app/api.bicep")
    host = object_entries(block_after(api, "var hostAppSettings ="))
    assert host["AzureWebJobsStorage__credential"] == "'managedidentity'"
    for service in ("blob", "queue", "table"):
        assert f"AzureWebJobsStorage__{service}ServiceUri" in host
    assert "AzureWebJobsStorage" not in host, "no connection string for the host"
    assert host["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "'ClientId=${identityClientId};Authorization=AAD'"
    )
    assert host["AZURE_CLIENT_ID"] == "identityClientId"
    assert not any(k.startswith("LICENSING_") for k in host)
    # Flex Consumption takes the runtime from functionAppConfig and rejects these settings.
    for legacy in (
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
    ):
        assert legacy not in api
    assert "properties: union(appSettings, hostAppSettings)" in api


def test_the_app_roles_infra_declares_are_those_the_api_checks():
    """infra/app-roles.json is what `az ad app update --app-roles` takes (docs/deploy.md)."""
    roles = json.loads((INFRA / "app-roles.json").read_text())
    checked = set().union(*ROLES_FOR.values())
    assert {r["value"] for r in roles} == checked == {OPERATOR_ROLE, READER_ROLE}
    assert len({r["id"] for r in roles}) == len(roles)
    for role in roles:
        assert GUID_RE.match(role["id"]) and role["isEnabled"] and role["description"]
        assert set(role["allowedMemberTypes"]) <= {"User", "Application"}
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert "app-roles.json" in deploy and "WEBSITE_AUTH_ENABLED" in deploy
