"""Command line for operators: the same engine entry point the timer and HTTP API use.

Verbs: plan, apply, runs, show RUN_ID, status, dashboard, waiting, alerts, validate [POLICY],
tenants add|list|show|enable|disable|check|remove. With tenant records, every verb but
validate and tenants takes --tenant ID: the tenant it is about.
Exit codes: 0 succeeded, 1 failed (or no such run), 2 bad settings/usage/policy, 3 partial,
4 refused (change budget).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from shared import tenants_cli
from shared.alerts import snooze
from shared.api import build_status
from shared.collect import find_tagged_groups
from shared.credentials import credential_for
from shared.dashboard import render_dashboard
from shared.errors import ConfigurationError, GraphReadError, PolicyError
from shared.graph import GraphClient, required_roles
from shared.policy import Policy, load_policy, resolve
from shared.report import render_run, render_status, table
from shared.run import execute_run, read_run
from shared.settings import Settings
from shared.store import TableStore
from shared.telemetry import ProgressEvent
from shared.tenants import settings_for, tenants_source
from shared.waiting import days_waiting, from_row, waiting_sentence

EXIT = {"succeeded": 0, "failed": 1, "partial": 3, "refused": 4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in ("plan", "apply"):
        p = sub.add_parser(verb, help=f"run enforcement in {verb} mode")
        p.add_argument(
            "--group", action="append", default=None, help="only this group id (repeatable)"
        )
        p.add_argument("--json", action="store_true", help="print the run summary as JSON")
        p.add_argument("--wide", action="store_true", help="do not shorten long reasons")
        p.add_argument(
            "--progress",
            action="store_true",
            help="show progress on stderr (default: only when stderr is a terminal)",
        )
    p = sub.add_parser("runs", help="list recent runs")
    p.add_argument("--limit", type=int, default=20)
    p = sub.add_parser("show", help="show a recorded run")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true")
    p = sub.add_parser("status", help="seats per SKU now, forecasts, latest run, open alerts")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("dashboard", help="write the seat dashboard (HTML) to a file")
    p.add_argument("--out", type=Path, default=Path("dashboard.html"))
    p = sub.add_parser("waiting", help="who waits for a seat (the latest run's waiting list)")
    p.add_argument("--run", metavar="RUN_ID", help="that run's list (default: the latest)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("alerts", help="list alert conditions, or snooze one")
    p.add_argument("--snooze", metavar="CONDITION", help="the condition key to silence")
    p.add_argument("--hours", type=float, default=24.0, help="how long to snooze (default 24)")
    for p in sub.choices.values():
        p.add_argument(
            "--tenant", metavar="TENANT_ID", help="the tenant (when the deployment has several)"
        )
    p = sub.add_parser("validate", help="check a policy file, offline or against the tenant")
    p.add_argument("policy", nargs="?", type=Path, help="default: LICENSING_POLICY_PATH")
    p.add_argument(
        "--tenant",
        nargs="?",
        const="",
        default=None,
        metavar="TENANT_ID",
        help="also resolve SKU and plan names and list the tagged groups (reads Graph); with an "
        "id, that tenant's",
    )
    tenants_cli.add_parser(sub)
    args = parser.parse_args(argv)

    try:
        if args.command == "validate":
            return _validate(args.policy, args.tenant)
        settings = Settings.from_env()
        if args.command == "tenants":
            return tenants_cli.run(args, settings)
        settings = for_tenant(settings, args.tenant)
        if args.command in ("plan", "apply"):
            progress = Progress(sys.stderr) if args.progress or sys.stderr.isatty() else None
            report = asyncio.run(
                execute_run(
                    settings,
                    args.command,
                    "cli",
                    group_ids=args.group,
                    progress=progress,
                )
            )
            if progress:
                progress.close()
            summary = report.summary()
            print(json.dumps(summary, indent=2) if args.json else render_run(summary, args.wide))
            return EXIT.get(report.status, 1)
        store = TableStore.from_settings(settings)
        store.ensure_tables()
        if args.command in ("status", "dashboard"):
            status = asyncio.run(
                build_status(settings, store, with_details=args.command == "dashboard")
            )
            if args.command == "dashboard":
                args.out.write_text(render_dashboard(status), encoding="utf-8")
                print(f"wrote {args.out}")
            else:
                print(json.dumps(status, indent=2) if args.json else render_status(status))
            return 0
        if args.command == "alerts":
            return _alerts(store, args.snooze, args.hours)
        if args.command == "waiting":
            return _waiting(store, args.run, args.json)
        if args.command == "runs":
            rows = store.list_runs(args.limit)
            print(
                table(
                    ["run", "mode", "trigger", "status", "changed", "error"],
                    [
                        [
                            r["RunId"],
                            r["Mode"],
                            r["Trigger"],
                            r["Status"],
                            r.get("GroupsChanged", 0),
                            r.get("Error") or r.get("RefusedReason") or "",
                        ]
                        for r in rows
                    ],
                )
            )
            return 0
        found = read_run(store, args.run_id)
        if found is None:
            print(f"no run {args.run_id!r} recorded", file=sys.stderr)
            return 1
        print(json.dumps(found, indent=2) if args.json else render_run(found, args.wide))
        return 0
    except (ConfigurationError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GraphReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def for_tenant(settings: Settings, tenant_id: str | None) -> Settings:
    """The settings of the tenant a command is about: --tenant's, or the implicit tenant's when
    the deployment has no tenant records. ConfigurationError when that is ambiguous or unknown."""
    source = tenants_source(settings)
    if tenant_id is None:
        tenants = source.list()
        if tenants:
            names = ", ".join(f"{t.tenant_id} ({t.display_name})" for t in tenants[:5])
            raise ConfigurationError(
                f"this deployment enforces {len(tenants)} tenants ({source.source}): name one "
                f"with --tenant TENANT_ID: {names}{', ...' if len(tenants) > 5 else ''}"
            )
        return settings
    tenant = source.get(tenant_id)
    if tenant is None:
        raise ConfigurationError(f"--tenant {tenant_id}: no such tenant in {source.source}")
    return settings_for(settings, tenant)


def _validate(path: Path | None, tenant_id: str | None) -> int:
    against_tenant = tenant_id is not None
    settings = Settings.from_env() if against_tenant or path is None else None
    if settings is not None and against_tenant:
        settings = for_tenant(settings, tenant_id or None)
    policy_path = path or (settings.policy_path if settings else Path())
    policy = load_policy(policy_path, settings.policy_overrides if settings and not path else None)
    print(
        f"{policy_path}: valid ({len(policy.profiles)} profiles, {len(policy.selectors)} selectors)"
    )
    if not against_tenant:
        return 0
    assert settings is not None
    return asyncio.run(_validate_against_tenant(policy, settings))


async def _validate_against_tenant(policy: Policy, settings: Settings) -> int:
    graph = GraphClient(
        credential_for(settings, required_roles()),
        settings.graph_base_url,
        tenant_id=settings.tenant_id,
    )
    try:
        skus = await graph.list_skus()
        resolve(policy, skus)  # raises PolicyError naming an unknown SKU or plan
        warnings: list[str] = []
        groups = await find_tagged_groups(graph, policy, warnings)
    finally:
        await graph.close()
    print(f"resolved against the tenant: {len(skus)} subscribed SKUs")
    problems = [g for g in groups if g.tag_problem or g.profile not in policy.profiles]
    print(
        table(
            ["group", "profile", "security", "problem"],
            [
                [
                    g.display_name,
                    g.profile,
                    "yes" if g.security_enabled else "NO",
                    g.tag_problem
                    or ("" if g.profile in policy.profiles else "profile not defined"),
                ]
                for g in groups
            ],
        )
    )
    for warning in warnings:
        print(f"warning: {warning}")
    return 0 if not problems else 2


class Progress:
    """One status line on a terminal (rewritten in place); one line per step elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.state: dict[str, str] = {}
        self.last_line = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        names = {"read": "groups read", "decided": "decided", "applied": "writes"}
        total = f"/{event.total}" if event.total is not None else ""
        self.state[event.phase] = f"{names.get(event.phase, event.phase)} {event.done}{total}"
        line = " | ".join(self.state.values())
        if self.tty:
            self.out.write("\r\x1b[K" + line)
            self.out.flush()
            return
        finished = event.total is not None and event.done == event.total
        now = time.monotonic()
        if finished or now - self.last_line >= 1.0:
            self.last_line = now
            print(line, file=self.out, flush=True)

    def close(self) -> None:
        if self.tty and self.state:
            self.out.write("\n")
            self.out.flush()


def _alerts(store: TableStore, snooze_key: str | None, hours: float) -> int:
    if snooze_key:
        if not 0 < hours <= 24 * 90:
            print("error: --hours must be between 0 and 2160 (90 days)", file=sys.stderr)
            return 2
        until = datetime.now(UTC) + timedelta(hours=hours)
        if not asyncio.run(snooze(store, snooze_key, until)):
            print(f"error: no alert condition {snooze_key!r} (see: alerts)", file=sys.stderr)
            return 1
        print(f"{snooze_key}: no mail until {until:%Y-%m-%d %H:%M} UTC (it still resolves)")
        return 0
    states = store.alert_states()
    print(
        table(
            ["condition", "status", "subject", "last change", "snoozed until", "send error"],
            [
                [
                    key,
                    st.get("Status"),
                    st.get("Subject"),
                    st.get("LastChange"),
                    st.get("SnoozedUntil") or "",
                    st.get("SendError") or "",
                ]
                for key, st in sorted(states.items())
            ],
        )
    )
    return 0


def _waiting(store: TableStore, run_id: str | None, as_json: bool) -> int:
    run_id = run_id or store.latest_waiting_run()
    head = store.waiting_head(run_id) if run_id else None
    if run_id is None or head is None:
        print(
            f"run {run_id} recorded no waiting list"
            if run_id
            else "no run has recorded a waiting list yet",
            file=sys.stderr,
        )
        return 1
    summary = json.loads(head.get("SummaryJson") or "{}")
    rows, _ = store.waiting_items(run_id)
    items = [from_row(r) for r in rows]
    if as_json:
        print(json.dumps({"runId": run_id, **summary, "value": items}, indent=2))
        return 0
    print(render_waiting(run_id, str(head.get("GeneratedAt") or ""), summary, items))
    return 0


def render_waiting(
    run_id: str, generated: str, summary: dict[str, Any], items: list[dict[str, Any]]
) -> str:
    """The waiting list as text: completeness first, counts per SKU, then everyone in order."""
    now = datetime.now(UTC)
    complete = bool(summary.get("complete"))
    lines = [f"Waiting list of run {run_id} ({generated[:16].replace('T', ' ')} UTC)"]
    unread = [g.get("displayName") or g.get("groupId") for g in summary.get("unreadGroups") or []]
    if unread:
        lines.append(
            f"NOT COMPLETE: the members of {', '.join(unread)} could not be read; "
            "who waits there is unknown"
        )
    if summary.get("limitedTo"):
        lines.append(f"NOT COMPLETE: the run read only {', '.join(summary['limitedTo'])}")
    counts = summary.get("skus") or []
    lines += [waiting_sentence(c, complete) for c in counts] or ["Nobody waits for a seat."]
    if items:
        lines.append("")
        lines.append(
            table(
                ["place", "user", "licences", "group", "since (UTC)", "days", "seat"],
                [
                    [
                        i["place"] if i["place"] is not None else f"- ({i['decision']})",
                        i["userPrincipalName"],
                        ", ".join(s["productName"] for s in i["skus"]),
                        i["group"],
                        (i["since"] or "")[:16].replace("T", " "),
                        days_waiting(_since(i["since"]), now),
                        i["seat"],
                    ]
                    for i in items
                ],
            )
        )
    return "\n".join(lines)


def _since(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
