"""Infra grants the managed identity exactly the Graph application permissions the code declares.

shared/graph.py declares a permission next to each Graph operation (`@requires`); required_roles()
is their union. infra/graph-permissions.json is the one list both grant paths use (the Graph Bicep
extension in infra/app/graph-permissions.bicep, and scripts/grant_graph_permissions.py); nothing
else in infra or scripts may name a Graph permission.
"""

from __future__ import annotations

import json
import re

from shared.graph import REQUIRED_PERMISSIONS, opt_in_roles, required_roles
from tests.static.bicep import (
    INFRA,
    ROOT,
    bicep_files,
    block_after,
    object_entries,
    read,
    resource_types,
)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
PERMISSIONS_JSON = INFRA / "graph-permissions.json"
# A Graph permission name as it would appear if someone hard-coded one (User.Read.All, Mail.Send…).
PERMISSION_LITERAL = re.compile(
    r"\b(?:[A-Z][A-Za-z]+\.)+(?:Read|ReadWrite|Send|ReadBasic|Create|Manage|Write)(?:\.[A-Za-z]+)*\b"
)


def _infra_permissions() -> list[str]:
    return json.loads(PERMISSIONS_JSON.read_text())["applicationPermissions"]


def test_every_graph_operation_declares_its_permissions():
    assert REQUIRED_PERMISSIONS, "shared.graph declares no permissions: were the @requires removed?"
    for operation, permissions in REQUIRED_PERMISSIONS.items():
        assert permissions, f"{operation} declares no Graph permission"


def test_infra_grants_exactly_the_permissions_the_code_declares():
    granted = _infra_permissions()
    assert granted == sorted(set(granted)), (
        "keep infra/graph-permissions.json sorted, no duplicates"
    )
    assert set(granted) == set(required_roles()), (
        f"infra grants {sorted(set(granted) - set(required_roles()))} more and "
        f"{sorted(set(required_roles()) - set(granted))} fewer than shared/graph.py declares"
    )


def test_opt_in_permissions_are_listed_apart_with_the_opt_in_that_needs_them():
    data = json.loads(PERMISSIONS_JSON.read_text())
    listed = {k: v for k, v in data["optInPermissions"].items() if not k.startswith("$")}
    assert listed == opt_in_roles()
    # The reclaim opt-in is the only caller of member removal: GroupMember.ReadWrite.All is not
    # granted with the base set.
    assert "GroupMember.ReadWrite.All" not in _infra_permissions()
    assert "GroupMember.ReadWrite.All" in required_roles({"reclaim.removeDisabledMembersAfterDays"})


def test_the_permissions_are_microsoft_graph_app_roles():
    assert json.loads(PERMISSIONS_JSON.read_text())["resourceAppId"] == GRAPH_APP_ID


def test_bicep_grants_from_the_json_list_only():
    text = read("app/graph-permissions.bicep")
    assert "loadJsonContent('../graph-permissions.json')" in text
    assert re.search(r"for\s+\w+\s+in\s+graph\.applicationPermissions\s*:", text)
    assert re.search(r"appId:\s*graph\.resourceAppId", text)
    assert resource_types(text) == ["Microsoft.Graph/appRoleAssignedTo@v1.0"]


def test_main_deploys_the_graph_module_only_when_asked():
    text = read("main.bicep")
    assert re.search(
        r"module\s+graphPermissions\s+'app/graph-permissions\.bicep'\s*=\s*"
        r"if\s*\(graphPermissionsGrant == 'bicep'\)",
        text,
    )


def test_the_multitenant_app_asks_for_the_json_list_as_application_permissions():
    """What a customer's admin consents to is what the managed identity is granted at home, less
    Mail.Send: alerts are mailed through the home tenant, never from a customer's."""
    text = read("app/multitenant-app.bicep")
    assert "extension microsoftGraphV1" in text
    assert "loadJsonContent('../graph-permissions.json')" in text
    assert resource_types(text) == [
        "Microsoft.Graph/applications@v1.0",
        "Microsoft.Graph/applications/federatedIdentityCredentials@v1.0",
    ]
    app = object_entries(block_after(text, "resource app 'Microsoft.Graph/applications@v1.0' ="))
    assert app["signInAudience"] == "'AzureADMultipleOrgs'"
    access = block_after(text, "requiredResourceAccess:")
    assert "resourceAppId: graph.resourceAppId" in access
    assert re.search(r"for\s+(\w+)\s+in\s+customerPermissions\s*:", access)
    assert re.search(
        r"^var customerPermissions = filter\(graph\.applicationPermissions, permission => "
        r"!contains\(graph\.homeTenantOnly\.permissions, permission\)\)$",
        text,
        flags=re.M,
    )
    home_only = json.loads(PERMISSIONS_JSON.read_text())["homeTenantOnly"]["permissions"]
    assert home_only == ["Mail.Send"], "customers grant reading and licensing, not sending mail"
    assert "type: 'Role'" in access and "'Scope'" not in text, "application permissions only"
    assert "passwordCredentials" not in text and "keyCredentials" not in text, "no secret"


def test_the_multitenant_app_trusts_exactly_the_function_apps_identity():
    text = read("app/multitenant-app.bicep")
    fic = object_entries(
        block_after(text, "'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' =")
    )
    assert fic["name"] == "'${app.uniqueName}/function-app-identity'"
    assert fic["subject"] == "managedIdentityPrincipalId"
    assert fic["issuer"] == "issuer"
    assert re.search(
        r"^var issuer = '\$\{environment\(\)\.authentication\.loginEndpoint\}"
        r"\$\{tenant\(\)\.tenantId\}/v2\.0'$",
        text,
        flags=re.M,
    ), "the home tenant's v2.0 issuer (https://login.microsoftonline.com/<tenant>/v2.0)"
    assert "var tokenExchangeAudience = 'api://AzureADTokenExchange'" in text
    assert re.search(r"audiences:\s*\[\s*tokenExchangeAudience\s*\]", text)
    # The Python side asks the identity for the same audience.
    from shared.credentials import TOKEN_EXCHANGE_SCOPE

    assert TOKEN_EXCHANGE_SCOPE == "api://AzureADTokenExchange/.default"
    main = read("main.bicep")
    module = block_after(main, "module multitenantApp 'app/multitenant-app.bicep' =")
    assert "managedIdentityPrincipalId: identity.outputs.principalId" in module


def test_main_creates_the_multitenant_app_only_when_asked_and_wires_its_id():
    main = read("main.bicep")
    assert re.search(r"^param multiTenant bool = false$", main, flags=re.M)
    assert re.search(
        r"module\s+multitenantApp\s+'app/multitenant-app\.bicep'\s*=\s*if\s*\(multiTenant\)",
        main,
    )
    settings = object_entries(block_after(main, "var licensingAppSettings ="))
    wired = "multiTenant ? multitenantApp.outputs.appId : ''"
    assert settings["LICENSING_MULTITENANT_APP_ID"] == wired
    assert re.search(rf"^output MULTITENANT_APP_ID string = {re.escape(wired)}$", main, flags=re.M)


GRAPH_MODULES = {"graph-permissions.bicep", "multitenant-app.bicep"}


def test_nothing_else_in_infra_or_scripts_grants_graph_roles():
    for path in bicep_files():
        text = read(str(path.relative_to(INFRA)))
        if path.name not in GRAPH_MODULES:
            assert "Microsoft.Graph/" not in text, (
                f"{path}: Graph resources belong in {' or '.join(sorted(GRAPH_MODULES))}"
            )
        assert not PERMISSION_LITERAL.findall(text), f"{path} names a Graph permission"
    for path in (ROOT / "scripts").iterdir():
        if path.suffix in (".py", ".sh", ".ps1"):
            text = path.read_text()
            # The script's reminder mentions Mail.Send by name for the Exchange policy; it grants
            # only what load_permissions() reads from the JSON (tests/static/test_grant_script.py).
            named = set(PERMISSION_LITERAL.findall(text)) - {"Mail.Send"}
            assert not named, f"{path} names Graph permissions {named}"


def test_the_grant_script_reads_the_same_list():
    from tests.static.test_grant_script import load_script

    app_id, names = load_script().load_permissions()
    assert app_id == GRAPH_APP_ID
    assert names == required_roles()
