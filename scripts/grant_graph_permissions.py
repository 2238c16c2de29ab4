"""Grant the app's managed identity exactly the Microsoft Graph application permissions it needs.

The list is infra/graph-permissions.json, which tests/static keeps equal to
shared.graph.required_roles() (the permissions the code declares next to each Graph operation).

    scripts/grant-graph-permissions.sh           grant what is missing, report extra Graph roles
    scripts/grant-graph-permissions.sh --check   change nothing; exit 1 if a permission is missing
    scripts/grant-graph-permissions.sh --prune   grant, and remove Graph roles not in the list
    scripts/grant-graph-permissions.sh --opt-in reclaim.removeDisabledMembersAfterDays
                                                 also grant what a policy opt-in needs
                                                 (optInPermissions; without it such a role is
                                                 reported as extra, and --prune removes it)

Who may run it: assigning Microsoft Graph app roles needs Privileged Role Administrator or Global
Administrator in the tenant. It calls Graph through the Azure CLI's sign-in (`az login`, `az rest`).
Which identity: --principal-id, else MANAGED_IDENTITY_PRINCIPAL_ID (an output of infra/main.bicep,
which azd puts in the environment of hooks; `azd env get-values` shows it).

azure.yaml runs it as the postprovision hook with --hook: with GRAPH_PERMISSIONS_GRANT=bicep it
only checks (the deployment granted them); otherwise it grants. In hook mode a missing right or tool
never fails `azd up`: it prints what an administrator has to run instead (docs/deploy.md).

Standard library only: it must run before any venv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PERMISSIONS_FILE = ROOT / "infra" / "graph-permissions.json"
GRAPH = "https://graph.microsoft.com/v1.0"

Runner = Callable[[Sequence[str]], str]


class GrantError(Exception):
    """Something an operator must fix; the message says what."""


class PermissionDenied(GrantError):
    """The signed-in account may not read or assign app roles."""


def load_permissions(path: Path = PERMISSIONS_FILE) -> tuple[str, list[str]]:
    """(Graph appId, sorted application permission names) from infra/graph-permissions.json."""
    data = json.loads(path.read_text(encoding="utf-8"))
    app_id = data["resourceAppId"]
    names = data["applicationPermissions"]
    if (
        not isinstance(app_id, str)
        or not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
    ):
        raise GrantError(f"{path}: resourceAppId must be a string, applicationPermissions a list")
    return app_id, sorted(names)


def load_opt_in_permissions(path: Path = PERMISSIONS_FILE) -> dict[str, list[str]]:
    """Permission -> the policy opt-ins that need it (optInPermissions): granted only on request."""
    data = json.loads(path.read_text(encoding="utf-8")).get("optInPermissions") or {}
    out = {k: v for k, v in data.items() if not k.startswith("$")}
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in out.values()):
        raise GrantError(f"{path}: optInPermissions maps a permission to a list of opt-in keys")
    return out


def az_runner(args: Sequence[str]) -> str:
    """Run `az ARGS` and return stdout; raise PermissionDenied / GrantError with az's message."""
    az = shutil.which("az")
    if az is None:
        raise GrantError("the Azure CLI (az) is not installed or not on PATH")
    proc = subprocess.run([az, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()
        if "Authorization_RequestDenied" in message or "Forbidden" in message:
            raise PermissionDenied(message)
        raise GrantError(f"az {' '.join(args[:3])} failed: {message}")
    return proc.stdout


class GraphCalls:
    """The four Graph calls this script makes, through `az rest`."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    def _rest(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        args = ["rest", "--method", method, "--url", url]
        if body is not None:
            args += ["--headers", "Content-Type=application/json", "--body", json.dumps(body)]
        out = self._run(args)
        return json.loads(out) if out.strip() else {}

    def _all_pages(self, url: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url:
            page = self._rest("GET", next_url)
            items.extend(page.get("value", []))
            next_url = page.get("@odata.nextLink")
        return items

    def service_principal_by_app_id(self, app_id: str) -> dict[str, Any]:
        filt = quote(f"appId eq '{app_id}'")
        found = self._all_pages(
            f"{GRAPH}/servicePrincipals?$filter={filt}&$select=id,appId,appRoles"
        )
        if len(found) != 1:
            raise GrantError(
                f"expected one service principal with appId {app_id}, found {len(found)}"
            )
        return found[0]

    def app_role_assignments(self, principal_id: str) -> list[dict[str, Any]]:
        return self._all_pages(f"{GRAPH}/servicePrincipals/{principal_id}/appRoleAssignments")

    def assign(self, principal_id: str, resource_id: str, app_role_id: str) -> None:
        self._rest(
            "POST",
            f"{GRAPH}/servicePrincipals/{principal_id}/appRoleAssignments",
            {
                "principalId": principal_id,
                "resourceId": resource_id,
                "appRoleId": app_role_id,
            },
        )

    def unassign(self, principal_id: str, assignment_id: str) -> None:
        self._rest(
            "DELETE", f"{GRAPH}/servicePrincipals/{principal_id}/appRoleAssignments/{assignment_id}"
        )


@dataclass
class Outcome:
    present: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # not granted (check mode)
    extra: list[str] = field(default_factory=list)  # Graph roles held but not needed
    removed: list[str] = field(default_factory=list)


def reconcile(
    graph: GraphCalls,
    principal_id: str,
    app_id: str,
    wanted: list[str],
    *,
    check: bool,
    prune: bool,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Make the Graph app roles of the identity equal `wanted`: add only, unless prune."""
    sp = graph.service_principal_by_app_id(app_id)
    roles = {
        r["value"]: r["id"]
        for r in sp.get("appRoles", [])
        if "Application" in r.get("allowedMemberTypes", []) and r.get("value")
    }
    unknown = [name for name in wanted if name not in roles]
    if unknown:
        raise GrantError(
            f"Microsoft Graph has no application permission named {', '.join(unknown)}"
        )
    names_by_role_id = {role_id: name for name, role_id in roles.items()}
    held = {
        a["appRoleId"]: a["id"]
        for a in graph.app_role_assignments(principal_id)
        if a.get("resourceId") == sp["id"]
    }
    out = Outcome()
    for name in wanted:
        if roles[name] in held:
            out.present.append(name)
            log(f"  present  {name}")
        elif check:
            out.missing.append(name)
            log(f"  MISSING  {name}")
        else:
            graph.assign(principal_id, sp["id"], roles[name])
            out.granted.append(name)
            log(f"  granted  {name}")
    wanted_ids = {roles[name] for name in wanted}
    for role_id, assignment_id in sorted(held.items()):
        if role_id in wanted_ids:
            continue
        name = names_by_role_id.get(role_id, role_id)
        if prune and not check:
            graph.unassign(principal_id, assignment_id)
            out.removed.append(name)
            log(f"  removed  {name} (not needed)")
        else:
            out.extra.append(name)
            log(f"  EXTRA    {name}: not needed by the app; --prune removes it")
    return out


def admin_instructions(principal_id: str) -> str:
    return (
        "A Privileged Role Administrator (or Global Administrator) must grant the Microsoft Graph\n"
        "application permissions once, from a clone of this repository:\n"
        "    az login --tenant <tenant id>\n"
        f"    ./scripts/grant-graph-permissions.sh --principal-id {principal_id}\n"
        "(Windows: ./scripts/grant-graph-permissions.ps1 --principal-id ...). See docs/deploy.md."
    )


def mailbox_reminder() -> str:
    client_id = os.environ.get("MANAGED_IDENTITY_CLIENT_ID") or "<MANAGED_IDENTITY_CLIENT_ID>"
    mailbox = os.environ.get("LICENSING_ALERT_MAILBOX") or "<alert mailbox>"
    return (
        "Mail.Send reaches every mailbox until Exchange limits it. Limit it to the alert mailbox\n"
        "(Exchange Online PowerShell, docs/deploy.md):\n"
        f"    New-ApplicationAccessPolicy -AppId {client_id} -PolicyScopeGroupId <group containing "
        f"{mailbox}> -AccessRight RestrictAccess -Description 'Group licensing enforcer alerts'"
    )


def main(argv: Sequence[str] | None = None, run: Runner = az_runner) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--principal-id",
        default=os.environ.get("MANAGED_IDENTITY_PRINCIPAL_ID"),
        help="object id of the managed identity (default: $MANAGED_IDENTITY_PRINCIPAL_ID)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if one is missing"
    )
    mode.add_argument(
        "--prune", action="store_true", help="also remove Graph roles not in the list"
    )
    parser.add_argument("--hook", action="store_true", help="azd postprovision hook: never fails")
    parser.add_argument(
        "--opt-in",
        action="append",
        default=[],
        metavar="KEY",
        help="also grant what this policy opt-in needs (reclaim.removeDisabledMembersAfterDays)",
    )
    args = parser.parse_args(argv)

    granted_by_bicep = os.environ.get("GRAPH_PERMISSIONS_GRANT", "script") == "bicep"
    check = args.check or (args.hook and granted_by_bicep)
    if not args.principal_id:
        print(
            "error: no managed identity: pass --principal-id or set MANAGED_IDENTITY_PRINCIPAL_ID "
            "(`azd env get-value MANAGED_IDENTITY_PRINCIPAL_ID`)",
            file=sys.stderr,
        )
        return 0 if args.hook else 2
    app_id, wanted = load_permissions()
    opt_ins = load_opt_in_permissions()
    known_keys = sorted({k for keys in opt_ins.values() for k in keys})
    for key in args.opt_in:
        if key not in known_keys:
            print(
                f"error: --opt-in {key}: no permission is needed only by it "
                f"(opt-ins with their own permission: {', '.join(known_keys) or 'none'})",
                file=sys.stderr,
            )
            return 0 if args.hook else 2
    wanted = sorted({*wanted, *(p for p, keys in opt_ins.items() if set(keys) & set(args.opt_in))})
    what = "Checking" if check else "Granting"
    print(f"{what} Microsoft Graph application permissions of {args.principal_id}:")
    try:
        out = reconcile(
            GraphCalls(run), args.principal_id, app_id, wanted, check=check, prune=args.prune
        )
    except PermissionDenied as exc:
        print(
            f"\nThe signed-in account may not assign Graph app roles ({exc}).\n"
            + admin_instructions(args.principal_id),
            file=sys.stderr,
        )
        return 0 if args.hook else 3
    except GrantError as exc:
        print(f"\nerror: {exc}\n" + admin_instructions(args.principal_id), file=sys.stderr)
        return 0 if args.hook else 2
    if out.missing:
        print(
            "\nMissing permissions: the app's Graph calls fail until they are granted.\n"
            + admin_instructions(args.principal_id),
            file=sys.stderr,
        )
        return 0 if args.hook else 1
    if out.granted:
        print("Granted. New app roles can take some minutes to reach the app's tokens.")
    if "Mail.Send" in wanted:
        print("\n" + mailbox_reminder())
    return 0


if __name__ == "__main__":
    sys.exit(main())
