"""Command line for operators: the same engine entry point the timer and HTTP API use.

Exit codes: 0 succeeded, 1 failed, 2 bad settings/usage, 3 partial, 4 refused (change budget).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from shared.errors import ConfigurationError, PolicyError
from shared.policy import load_policy
from shared.report import render_run, table
from shared.run import execute_run, read_run
from shared.settings import Settings
from shared.store import TableStore

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
    p = sub.add_parser("runs", help="list recent runs")
    p.add_argument("--limit", type=int, default=20)
    p = sub.add_parser("show", help="show a recorded run")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true")
    p = sub.add_parser("validate", help="check a policy file offline")
    p.add_argument("policy", nargs="?", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "validate" and args.policy:
            policy = load_policy(args.policy)
            print(
                f"{args.policy}: valid ({len(policy.profiles)} profiles, "
                f"{len(policy.selectors)} selectors)"
            )
            return 0
        settings = Settings.from_env()
        if args.command == "validate":
            policy = load_policy(settings.policy_path)
            print(
                f"{settings.policy_path}: valid ({len(policy.profiles)} profiles, "
                f"{len(policy.selectors)} selectors)"
            )
            return 0
        if args.command in ("plan", "apply"):
            report = asyncio.run(execute_run(settings, args.command, "cli", group_ids=args.group))
            summary = report.summary()
            print(json.dumps(summary, indent=2) if args.json else render_run(summary, args.wide))
            return EXIT.get(report.status, 1)
        store = TableStore.from_settings(settings)
        store.ensure_tables()
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
