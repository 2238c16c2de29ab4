"""scripts/grant_graph_permissions.py against a fake `az rest`: grants what is missing, never more,
and as the azd hook never fails the deployment."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from functools import cache
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import pytest

from shared.graph import required_roles
from tests.static.bicep import ROOT

GRAPH_SP = "graph-sp-object-id"
MI = "11111111-2222-3333-4444-555555555555"
# Made-up role ids: the script must look them up by value, never assume them.
ROLE_IDS = {
    name: f"role-{i}"
    for i, name in enumerate(
        [
            *required_roles(),
            "GroupMember.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ]
    )
}


@cache
def load_script() -> ModuleType:
    path = ROOT / "scripts" / "grant_graph_permissions.py"
    spec = importlib.util.spec_from_file_location("grant_graph_permissions", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


class FakeAz:
    """`az rest` over an in-memory tenant: the Graph service principal, the identity's roles."""

    def __init__(self, held: list[str], deny_writes: bool = False) -> None:
        self.assignments = [
            {"id": f"a-{name}", "appRoleId": ROLE_IDS[name], "resourceId": GRAPH_SP}
            for name in held
        ]
        self.deny_writes = deny_writes
        self.calls: list[tuple[str, str]] = []

    def __call__(self, args: Sequence[str]) -> str:
        assert args[:2] == ["rest", "--method"]
        method, url = args[2], args[args.index("--url") + 1]
        self.calls.append((method, url))
        body: dict[str, Any] = (
            json.loads(args[args.index("--body") + 1]) if "--body" in args else {}
        )
        if method != "GET" and self.deny_writes:
            mod = load_script()
            raise mod.PermissionDenied(
                'Forbidden({"error":{"code":"Authorization_RequestDenied"}})'
            )
        if method == "GET" and "/servicePrincipals?" in url:
            assert "appId eq '00000003-0000-0000-c000-000000000000'" in unquote(url)
            roles = [
                {"id": rid, "value": name, "allowedMemberTypes": ["Application"]}
                for name, rid in ROLE_IDS.items()
            ]
            roles.append(
                {"id": "delegated-only", "value": "Mail.Send", "allowedMemberTypes": ["User"]}
            )
            return json.dumps({"value": [{"id": GRAPH_SP, "appRoles": roles}]})
        if method == "GET" and url.endswith(f"/servicePrincipals/{MI}/appRoleAssignments"):
            # Two pages, to prove paging is followed.
            half = len(self.assignments) // 2
            return json.dumps(
                {"value": self.assignments[:half], "@odata.nextLink": url + "?page=2"}
            )
        if method == "GET" and url.endswith("appRoleAssignments?page=2"):
            half = len(self.assignments) // 2
            return json.dumps({"value": self.assignments[half:]})
        if method == "POST":
            assert body["principalId"] == MI and body["resourceId"] == GRAPH_SP
            self.assignments.append({"id": f"new-{body['appRoleId']}", **body})
            return json.dumps({"id": "x"})
        if method == "DELETE":
            self.assignments = [a for a in self.assignments if not url.endswith("/" + a["id"])]
            return ""
        raise AssertionError(f"unexpected call {method} {url}")

    def held(self) -> set[str]:
        names = {rid: name for name, rid in ROLE_IDS.items()}
        return {names[a["appRoleId"]] for a in self.assignments}

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (
        "MANAGED_IDENTITY_PRINCIPAL_ID",
        "GRAPH_PERMISSIONS_GRANT",
        "MANAGED_IDENTITY_CLIENT_ID",
        "LICENSING_ALERT_MAILBOX",
    ):
        monkeypatch.delenv(key, raising=False)


def test_a_new_identity_gets_exactly_the_declared_permissions():
    az = FakeAz(held=[])
    assert load_script().main(["--principal-id", MI], run=az) == 0
    assert az.held() == set(required_roles())


def test_an_opt_in_permission_is_granted_only_when_asked_for():
    az = FakeAz(held=[])
    assert load_script().main(["--principal-id", MI], run=az) == 0
    assert "GroupMember.ReadWrite.All" not in az.held()
    key = "reclaim.removeDisabledMembersAfterDays"
    assert load_script().main(["--principal-id", MI, "--opt-in", key], run=az) == 0
    assert (
        az.held() == set(required_roles({key})) == {*required_roles(), "GroupMember.ReadWrite.All"}
    )
    # Turned off again: --prune takes it back.
    assert load_script().main(["--principal-id", MI, "--prune"], run=az) == 0
    assert az.held() == set(required_roles())


def test_an_unknown_opt_in_is_refused(capsys: pytest.CaptureFixture[str]):
    assert load_script().main(["--principal-id", MI, "--opt-in", "nope"], run=FakeAz([])) == 2
    assert "reclaim.removeDisabledMembersAfterDays" in capsys.readouterr().err


def test_a_second_run_changes_nothing():
    az = FakeAz(held=required_roles())
    assert load_script().main(["--principal-id", MI], run=az) == 0
    assert az.writes() == []


def test_extra_graph_roles_are_reported_and_kept_unless_pruned(capsys: pytest.CaptureFixture[str]):
    az = FakeAz(held=[*required_roles(), "Directory.ReadWrite.All"])
    assert load_script().main(["--principal-id", MI], run=az) == 0
    assert "EXTRA    Directory.ReadWrite.All" in capsys.readouterr().out
    assert "Directory.ReadWrite.All" in az.held()

    assert load_script().main(["--principal-id", MI, "--prune"], run=az) == 0
    assert az.held() == set(required_roles())


def test_check_changes_nothing_and_fails_when_one_is_missing():
    az = FakeAz(held=required_roles()[1:])
    assert load_script().main(["--principal-id", MI, "--check"], run=az) == 1
    assert az.writes() == []


def test_the_hook_only_checks_when_bicep_granted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GRAPH_PERMISSIONS_GRANT", "bicep")
    monkeypatch.setenv("MANAGED_IDENTITY_PRINCIPAL_ID", MI)
    az = FakeAz(held=[])
    assert load_script().main(["--hook"], run=az) == 0
    assert az.writes() == []


def test_without_the_admin_role_the_hook_prints_the_admin_command_and_lets_azd_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("MANAGED_IDENTITY_PRINCIPAL_ID", MI)
    az = FakeAz(held=[], deny_writes=True)
    mod = load_script()
    assert mod.main(["--hook"], run=az) == 0
    err = capsys.readouterr().err
    assert "Privileged Role Administrator" in err
    assert f"--principal-id {MI}" in err
    # Run by hand, the same failure is an error.
    assert mod.main(["--principal-id", MI], run=FakeAz(held=[], deny_writes=True)) == 3


def test_the_hook_without_az_or_outputs_does_not_fail(monkeypatch: pytest.MonkeyPatch):
    mod = load_script()
    assert mod.main(["--hook"], run=FakeAz(held=[])) == 0  # no principal id in the environment

    def no_az(args: Sequence[str]) -> str:
        raise mod.GrantError("the Azure CLI (az) is not installed or not on PATH")

    assert mod.main(["--hook", "--principal-id", MI], run=no_az) == 0
    assert mod.main(["--principal-id", MI], run=no_az) == 2


def test_a_permission_graph_does_not_offer_is_an_error(tmp_path):
    mod = load_script()
    path = tmp_path / "perms.json"
    path.write_text(
        json.dumps(
            {
                "resourceAppId": "00000003-0000-0000-c000-000000000000",
                "applicationPermissions": ["Nope.Read.All"],
            }
        )
    )
    app_id, wanted = mod.load_permissions(path)
    with pytest.raises(mod.GrantError, match=r"Nope\.Read\.All"):
        mod.reconcile(
            mod.GraphCalls(FakeAz(held=[])),
            MI,
            app_id,
            wanted,
            check=False,
            prune=False,
            log=lambda _: None,
        )
