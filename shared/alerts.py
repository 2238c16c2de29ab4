"""Alerts: which conditions are open (pure), what changed since last run (pure), and sending mail.

Lifecycle per condition, with state in Table Storage: a mail when it opens, another when it worsens,
none while it merely continues, and a "resolved" mail when it clears. A failed send is recorded and
retried next run; it never fails the enforcement.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.graph import GraphClient, describe_graph_error

if TYPE_CHECKING:
    from shared.run import RunReport
    from shared.settings import Settings
    from shared.store import TableStore


@dataclass(frozen=True)
class Condition:
    key: str  # stable identity, safe as a Table RowKey
    kind: str  # sku-exhausted | group-guests
    subject: str
    severity: int  # larger is worse (seats short, guests present)
    facts: tuple[tuple[str, str], ...]  # label, value (from the directory: escaped when rendered)
    advice: str


@dataclass(frozen=True)
class AlertAction:
    condition_key: str
    transition: str  # opened | worsened | resolved
    condition: Condition | None  # None when resolved
    previous_subject: str = ""


def open_conditions(summary: dict[str, Any]) -> dict[str, Condition]:
    found: dict[str, Condition] = {}
    for sku in summary.get("skus", []):
        if sku["shortfall"] > 0:
            key = f"sku-exhausted-{sku['skuId']}"
            found[key] = Condition(
                key,
                "sku-exhausted",
                f"{sku['skuPartNumber']} has run out: {sku['shortfall']} more seat(s) needed",
                int(sku["shortfall"]),
                (
                    ("Licence", sku["skuPartNumber"]),
                    ("Enabled", str(sku["enabled"])),
                    ("Consumed", str(sku["consumed"])),
                    ("Free", str(sku["freeBefore"])),
                    ("Reserve", str(sku["reserve"])),
                    ("Demand", str(sku["demand"])),
                    (
                        "Groups blocked",
                        ", ".join(
                            g["displayName"]
                            for g in summary.get("groups", [])
                            if sku["skuPartNumber"] in (g.get("shortfall") or {})
                        ),
                    ),
                ),
                f"Buy {sku['shortfall']} seat(s) of {sku['skuPartNumber']} or remove members; "
                "the next run assigns the blocked groups and reprocesses stuck users.",
            )
    for g in summary.get("groups", []):
        if g["decision"] == "blocked-guests":
            key = f"group-guests-{g['groupId']}"
            found[key] = Condition(
                key,
                "group-guests",
                f"Group {g['displayName']} is blocked: {g['guestCount']} B2B guest(s)",
                int(g["guestCount"]),
                (
                    ("Group", g["displayName"]),
                    ("Profile", g["profile"]),
                    ("Guests", ", ".join(g.get("guests") or [])),
                ),
                "Remove the listed guests from the group (group-based licensing must not be used "
                "with B2B accounts); the next run assigns its licences.",
            )
    return found


def transitions(now: dict[str, Condition], states: dict[str, dict[str, Any]]) -> list[AlertAction]:
    actions: list[AlertAction] = []
    for key, cond in sorted(now.items()):
        state = states.get(key)
        if state is None or state.get("Status") != "open" or not state.get("Notified"):
            actions.append(AlertAction(key, "opened", cond))
        elif cond.severity > int(state.get("Severity", 0)):
            actions.append(AlertAction(key, "worsened", cond))
    for key, state in sorted(states.items()):
        if state.get("Status") == "open" and key not in now and state.get("Notified"):
            actions.append(AlertAction(key, "resolved", None, str(state.get("Subject", key))))
    return actions


def render(action: AlertAction, run_id: str) -> tuple[str, str]:
    """(subject, HTML body) for one alert mail. Every directory value is escaped."""
    e = html.escape
    cell = (
        "padding:4px 10px;border:1px solid #d0d0d0;"
        "font-family:Segoe UI,Arial,sans-serif;font-size:13px"
    )
    if action.transition == "resolved" or action.condition is None:
        subject = f"[Licensing] Resolved: {action.previous_subject}"
        body = (
            f'<p style="{cell};border:none">The condition below has cleared.</p>'
            f'<p style="{cell};border:none"><b>{e(action.previous_subject)}</b></p>'
        )
    else:
        c = action.condition
        label = {"opened": "", "worsened": "Worse: "}.get(action.transition, "")
        subject = f"[Licensing] {label}{c.subject}"
        rows = "".join(
            f'<tr><td style="{cell};background:#f4f4f4">{e(k)}</td>'
            f'<td style="{cell}">{e(v)}</td></tr>'
            for k, v in c.facts
        )
        body = (
            f'<p style="{cell};border:none"><b>{e(c.subject)}</b></p>'
            f'<table style="border-collapse:collapse">{rows}</table>'
            f'<p style="{cell};border:none"><b>What to do:</b> {e(c.advice)}</p>'
        )
    body += f'<p style="{cell};border:none;color:#666">Run {e(run_id)}</p>'
    return subject.replace("\r", " ").replace("\n", " "), f"<html><body>{body}</body></html>"


async def process_alerts(
    report: RunReport, settings: Settings, graph: GraphClient | None, store: TableStore
) -> list[dict[str, Any]]:
    """Send the mails this run calls for; return what happened (recorded with the run)."""
    if report.plan is None or graph is None or not settings.alert_mailbox:
        return []
    summary = report.summary()
    now = open_conditions(summary)
    states = await asyncio.to_thread(store.alert_states)
    results: list[dict[str, Any]] = []
    at = datetime.now(UTC).isoformat()
    for action in transitions(now, states):
        subject, body = render(action, report.run_id)
        if (
            report.mode == "plan"
        ):  # plan mode writes nothing, mail included: say what apply would send
            results.append(
                {
                    "condition": action.condition_key,
                    "transition": action.transition,
                    "subject": subject,
                    "sent": False,
                    "error": "plan mode: not sent",
                }
            )
            continue
        try:
            await graph.send_mail(
                settings.alert_mailbox, list(settings.alert_recipients), subject, body
            )
            sent, error = True, ""
        except Exception as exc:  # a mailbox failure must never fail the enforcement
            sent, error = False, describe_graph_error(exc)
        cond = action.condition
        entity = {
            "Status": "resolved" if action.transition == "resolved" and sent else "open",
            "Kind": cond.kind if cond else states.get(action.condition_key, {}).get("Kind", ""),
            "Subject": cond.subject if cond else action.previous_subject,
            "Severity": cond.severity if cond else 0,
            "Notified": sent or action.transition == "resolved",
            "LastRunId": report.run_id,
            "LastChange": action.transition,
            "UpdatedAt": at,
            "SendError": error,
        }
        await asyncio.to_thread(store.put_alert_state, action.condition_key, entity)
        results.append(
            {
                "condition": action.condition_key,
                "transition": action.transition,
                "subject": subject,
                "sent": sent,
                "error": error,
            }
        )
    return results
