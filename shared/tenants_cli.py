"""`python -m shared tenants ...`: onboarding and offboarding the tenants a deployment enforces.

Records go where the deployment keeps them (LICENSING_TENANTS_FILE, else the tenants table), each
checked against policy/tenants.schema.json before it is written, so a bad record never lands.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from shared.credentials import credential_for
from shared.errors import PolicyError
from shared.graph import GraphClient, required_roles
from shared.policy import load_policy
from shared.report import table
from shared.settings import Settings
from shared.store import TableStore
from shared.tenants import Tenant, settings_for, tenant_from_record, tenants_source


def add_parser(sub: Any) -> None:
    p = sub.add_parser("tenants", help="the tenants this deployment enforces (add, list, ...)")
    verbs = p.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="onboard a tenant (or --replace its record)")
    add.add_argument("tenant_id", help="the customer's tenant id (GUID)")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--mode", choices=("plan", "apply"), default="plan", help="nightly mode")
    add.add_argument("--policy", help="its own policy file (default: the shared policy)")
    add.add_argument(
        "--overrides", help="JSON object merged over the policy (e.g. one change budget figure)"
    )
    add.add_argument("--recipient", action="append", default=[], help="alert recipient (repeat)")
    add.add_argument("--reader", action="append", default=[], help="caller object id (repeat)")
    add.add_argument("--operator", action="append", default=[], help="caller object id (repeat)")
    add.add_argument("--disabled", action="store_true", help="record it, enforce it later")
    add.add_argument("--replace", action="store_true", help="replace an existing record")
    ls = verbs.add_parser("list", help="every tenant record")
    ls.add_argument("--json", action="store_true")
    for verb, text in (
        ("show", "one tenant's record"),
        ("enable", "enforce it again from the next run"),
        ("disable", "stop enforcing it (its record and rows stay)"),
        ("check", "get a token for it and read its subscribed SKUs (consent check)"),
        ("remove", "offboard: delete its record (--purge: and its rows)"),
    ):
        q = verbs.add_parser(verb, help=text)
        q.add_argument("tenant_id")
        if verb == "remove":
            q.add_argument("--purge", action="store_true", help="also delete its recorded rows")


def run(args: argparse.Namespace, settings: Settings) -> int:
    source = tenants_source(settings)
    if args.verb == "list":
        tenants = source.list()
        if args.json:
            print(json.dumps([t.to_record() for t in tenants], indent=2))
        elif not tenants:
            print(f"no tenant records in {source.source}: the app enforces its own tenant")
        else:
            print(
                table(
                    ["tenant", "name", "enabled", "mode", "policy", "recipients"],
                    [
                        [
                            t.tenant_id,
                            t.display_name,
                            "yes" if t.enabled else "no",
                            t.mode,
                            (t.policy_path or "shared")
                            + (" + overrides" if t.policy_overrides else ""),
                            ", ".join(t.alert_recipients) or "(deployment's)",
                        ]
                        for t in tenants
                    ],
                )
            )
        return 0
    if args.verb == "add":
        return _add(args, settings, source)
    tenant = source.get(args.tenant_id)
    if tenant is None:
        print(f"error: no tenant {args.tenant_id} in {source.source}", file=sys.stderr)
        return 1
    if args.verb == "show":
        print(json.dumps(tenant.to_record(), indent=2))
        return 0
    if args.verb in ("enable", "disable"):
        source.put(dataclasses.replace(tenant, enabled=args.verb == "enable"))
        state = "enforced from the next run" if args.verb == "enable" else "no longer enforced"
        print(f"{tenant.display_name} ({tenant.tenant_id}): {state}")
        return 0
    if args.verb == "check":
        return asyncio.run(_check(tenant, settings))
    source.remove(tenant.tenant_id)
    print(f"{tenant.display_name} ({tenant.tenant_id}): removed from {source.source}")
    if args.purge:
        n = TableStore.from_settings(settings).for_tenant(tenant.tenant_id).purge_tenant()
        print(f"deleted {n} recorded row(s)")
    else:
        print("its recorded runs stay (remove --purge deletes them)")
    return 0


def _add(args: argparse.Namespace, settings: Settings, source: Any) -> int:
    record: dict[str, Any] = {"tenantId": args.tenant_id, "displayName": args.name}
    if args.disabled:
        record["enabled"] = False
    record["mode"] = args.mode
    if args.policy:
        record["policyPath"] = args.policy
    if args.overrides:
        try:
            record["policyOverrides"] = json.loads(args.overrides)
        except ValueError as exc:
            raise PolicyError("--overrides", "", f"is not JSON: {exc}") from None
    for key, values in (
        ("alertRecipients", args.recipient),
        ("readers", args.reader),
        ("operators", args.operator),
    ):
        if values:
            record[key] = values
    tenant = tenant_from_record(record, "tenants add")
    if source.get(tenant.tenant_id) is not None and not args.replace:
        print(
            f"error: {tenant.tenant_id} is already recorded (--replace to change it)",
            file=sys.stderr,
        )
        return 2
    # The policy it would run with must load now, not fail its first nightly run.
    tenant_settings = settings_for(settings, tenant)
    load_policy(tenant_settings.policy_path, tenant_settings.policy_overrides)
    source.put(tenant)
    print(f"{tenant.display_name} ({tenant.tenant_id}): recorded in {source.source}, {tenant.mode}")
    if tenant.enabled:
        print("its first run is the next nightly one; `tenants check` tests its consent now")
    return 0


async def _check(tenant: Tenant, settings: Settings) -> int:
    s = settings_for(settings, tenant)
    graph = GraphClient(
        credential_for(s, required_roles()), s.graph_base_url, tenant_id=tenant.tenant_id
    )
    try:
        skus = await graph.list_skus()
    except Exception as exc:  # no consent, unknown tenant, Graph down: each is the answer
        print(f"{tenant.display_name} ({tenant.tenant_id}): not reachable: {exc}", file=sys.stderr)
        return 1
    finally:
        await graph.close()
    print(f"{tenant.display_name} ({tenant.tenant_id}): consented; {len(skus)} subscribed SKUs")
    return 0
