"""azure.yaml and infra/ keep the shape of the Azure Functions azd templates, and hold together.

There is no Bicep CLI on these machines, so `az bicep build` cannot catch a module wired wrongly;
the wiring checks below (module params and outputs, parameter file, hook scripts) stand in for it.
"""

from __future__ import annotations

import json
import re

import yaml

from tests.static.bicep import INFRA, ROOT, bicep_files, block_after, object_entries, read

MAIN = read("main.bicep")


def _modules() -> dict[str, tuple[str, dict[str, str]]]:
    """module symbol -> (path, params passed)."""
    found = {}
    for m in re.finditer(r"^module\s+(\w+)\s+'([^']+)'\s*=", MAIN, flags=re.M):
        body = block_after(MAIN[m.start() :], "=")
        found[m.group(1)] = (m.group(2), object_entries(block_after(body, "params:")))
    return found


def _params(text: str) -> dict[str, bool]:
    """param name -> has a default."""
    return {
        m.group(1): m.group(2) is not None
        for m in re.finditer(r"^param\s+(\w+)\s+\w+(\s*=.*)?$", text, flags=re.M)
    }


def test_azure_yaml_has_one_python_function_service():
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert spec["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    assert spec["infra"]["path"] == "infra" and spec["infra"]["module"] == "main"


def test_the_hooks_run_scripts_that_exist():
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]["postprovision"]
    for platform in ("posix", "windows"):
        script = hooks[platform]["run"].split()[0]
        assert (ROOT / script).is_file(), script
    assert (ROOT / "scripts" / "grant-graph-permissions.sh").stat().st_mode & 0o111, (
        "not executable"
    )


def test_main_is_subscription_scoped_with_unique_names():
    assert "targetScope = 'subscription'" in MAIN
    assert "uniqueString(subscription().id, environmentName, location)" in MAIN
    assert "loadJsonContent('abbreviations.json')" in MAIN


def test_modules_get_every_required_param_and_only_declared_ones():
    for symbol, (path, passed) in _modules().items():
        declared = _params(read(path))
        assert set(passed) <= set(declared), (
            f"{symbol} passes unknown {set(passed) - set(declared)}"
        )
        required = {p for p, has_default in declared.items() if not has_default}
        assert required <= set(passed), f"{symbol} misses {required - set(passed)}"


def test_module_outputs_used_in_main_exist():
    modules = _modules()
    for symbol, output in re.findall(r"\b(\w+)\.outputs\.(\w+)", MAIN):
        path = modules[symbol][0]
        assert re.search(rf"^output\s+{output}\s", read(path), flags=re.M), (
            f"{path} has no {output}"
        )


def test_parameter_file_sets_declared_params_and_the_required_ones():
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = _params(MAIN)
    assert set(params) <= set(declared)
    assert {p for p, has_default in declared.items() if not has_default} <= set(params)


def test_multi_tenant_is_an_azd_variable_off_by_default():
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["multiTenant"]["value"] == "${MULTI_TENANT=false}"
    assert re.search(r"^param multiTenant bool = false$", MAIN, flags=re.M)
    module, passed = _modules()["multitenantApp"]
    assert module == "app/multitenant-app.bicep"
    # Built from the name, not api's output: api takes the app's id as a setting.
    assert passed["consentRedirectUri"] == "'https://${functionAppName}.azurewebsites.net/'"


def test_outputs_the_docs_and_hook_use_exist():
    for name in (
        "AZURE_FUNCTION_NAME",
        "AZURE_RESOURCE_GROUP",
        "MANAGED_IDENTITY_PRINCIPAL_ID",
        "MANAGED_IDENTITY_CLIENT_ID",
        "GRAPH_PERMISSIONS_GRANT",
        "MULTITENANT_APP_ID",
    ):
        assert re.search(rf"^output\s+{name}\s", MAIN, flags=re.M), name


def test_no_registry_modules_checkov_could_not_see():
    for path in bicep_files():
        text = read(str(path.relative_to(INFRA)))
        assert not re.search(r"^module\s+\w+\s+'br[:/]", text, flags=re.M), path


def test_flex_consumption_python_311_with_the_user_assigned_identity():
    api = read("app/api.bicep")
    assert "tier: 'FlexConsumption'" in api and "name: 'FC1'" in api
    runtime = object_entries(block_after(api, "runtime:"))
    assert runtime == {"name": "'python'", "version": "'3.11'"}
    assert "type: 'UserAssigned'" in api
    assert "type: 'UserAssignedIdentity'" in api  # deployment container, no keys
    assert "httpsOnly: true" in api and "ftpsState: 'Disabled'" in api


def test_no_shared_keys_anywhere():
    storage = read("app/storage.bicep")
    assert "allowSharedKeyAccess: false" in storage
    assert "allowBlobPublicAccess: false" in storage
    for path in bicep_files():
        text = read(str(path.relative_to(INFRA)))
        assert "listKeys(" not in text and "AccountKey=" not in text, path


def test_application_insights_takes_entra_authenticated_telemetry_into_log_analytics():
    monitoring = read("app/monitoring.bicep")
    assert "DisableLocalAuth: true" in monitoring
    assert "WorkspaceResourceId: logAnalytics.id" in monitoring


def test_role_assignments_are_named_by_guid_with_commented_role_ids():
    raw = (INFRA / "app" / "rbac.bicep").read_text()
    text = read("app/rbac.bicep")
    assignments = re.findall(
        r"resource\s+\w+\s+'Microsoft\.Authorization/roleAssignments@[^']+'\s*=\s*\{\s*"
        r"name:\s*guid\((\w+)\.id,\s*principalId,\s*(\w+)\)",
        text,
    )
    assert len(assignments) == text.count("Microsoft.Authorization/roleAssignments@")
    assert {role for _, role in assignments} == set(re.findall(r"^var\s+(\w+RoleId)\s", text, re.M))
    for role in {role for _, role in assignments}:
        # Each role id is a named variable with a comment saying what the role is for.
        assert re.search(rf"//[^\n]+\nvar {role} = '[0-9a-f-]{{36}}'", raw), role
    assert "storageQueueDataContributorRoleId" in text  # the run queue (LICENSING_RUN_QUEUE)
