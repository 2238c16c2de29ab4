"""Plain-text rendering of a run, the same from a live run or one read back from Table Storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.names import sku_label, sku_row_label


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 70) -> str:
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([line.rstrip(), rule, *body])


def _cell(value: Any, max_width: int) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # one line per row, whatever the directory holds
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def render_run(summary: dict[str, Any], wide: bool = False) -> str:
    """Human report from a run summary dict (see shared.run.RunReport.summary)."""
    width = 400 if wide else 70
    out = [
        f"Run {summary['runId']}  mode={summary['mode']}  trigger={summary['trigger']}  "
        f"status={summary['status']}",
    ]
    if summary.get("tenantId"):
        out.append(f"Tenant: {summary.get('tenantName') or '(unnamed)'} ({summary['tenantId']})")
    if summary.get("error"):
        out.append(f"Error: {summary['error']}")
    if summary.get("refusedReason"):
        out.append(f"Refused: {summary['refusedReason']}")
    for warning in summary.get("warnings") or []:
        out.append(f"Warning: {warning}")
    groups = summary.get("groups") or []
    if groups:
        out += [
            "",
            "Groups",
            table(
                ["group", "profile", "decision", "outcome", "reason"],
                [
                    [
                        g["displayName"],
                        g["profile"],
                        g["decision"],
                        g.get("outcome", ""),
                        g["reason"],
                    ]
                    for g in groups
                ],
                width,
            ),
        ]
        details = []
        for g in groups:
            lines = [] if wide or len(g["reason"]) <= width else [g["reason"]]
            lines += [f"note: {n}" for n in g.get("notes") or []]
            if g.get("outcome") == "failed" or g.get("outcomeDetail"):
                lines.append(f"{g.get('outcome')}: {g.get('outcomeDetail')}")
            if lines:
                details.append(f"  {g['displayName']}")
                details += [f"    {_cell(line, 400)}" for line in lines]
        if details:
            out += ["", "Details", *details]
    skus = summary.get("skus") or []
    if skus:
        out += [
            "",
            "Seats",
            table(
                [
                    "sku",
                    "status",
                    "enabled",
                    "consumed",
                    "free before",
                    "demand",
                    "planned",
                    "free after",
                ],
                [
                    [
                        sku_row_label(s),
                        s["capabilityStatus"],
                        s["enabled"],
                        s["consumed"],
                        s["freeBefore"],
                        s["demand"],
                        s["granted"],
                        s["freeAfter"],
                    ]
                    for s in skus
                ],
            ),
        ]
    out += render_removals(summary.get("removals") or {}, width)
    out += _subscriptions(summary)
    counts = summary.get("counts") or {}
    if counts:
        out += ["", "Decisions: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v)]
    out.append(
        f"Graph requests: {summary.get('graphRequests', 0)} "
        f"(writes {summary.get('graphWrites', 0)})"
    )
    return "\n".join(out)


def render_removals(rem: dict[str, Any], width: int = 70) -> list[str]:
    """Sudden losses, migration and reclaim reports, and every removal apply makes (or made)."""
    out: list[str] = []
    for loss in rem.get("suddenLosses") or []:
        what = "direct members" if loss["kind"] == "group-shrank" else "consumed seats"
        out.append(
            f"Sudden loss ({loss['kind']}): {loss['name']}: {what} {loss['before']} -> "
            f"{loss['now']} (-{loss['lost']}, -{loss['percent']} %)"
        )
    if rem.get("removalsBlocked"):
        out.append(f"Removals blocked: {rem['removalsBlocked']}")
    migration = rem.get("migration") or []
    if migration:
        out += [
            "",
            "Direct assignments held by members of tagged groups (" + rem["seatsNote"] + ")",
            table(
                ["group", "licence", "direct holders", "redundant", "not redundant (why)"],
                [
                    [
                        m["displayName"],
                        m["productName"],
                        m["directHolders"],
                        m["redundant"],
                        "; ".join(f"{u['upn']}: {u['whyNot']}" for u in m["users"] if u["whyNot"]),
                    ]
                    for m in migration
                ],
                width,
            ),
        ]
    outside = rem.get("outsideGroupLicensing")
    if outside:
        out += [
            "",
            "Outside group licensing (profile licences held only directly, in no tagged group)",
            table(
                ["licence", "users", "first users"],
                [[o["productName"], o["count"], ", ".join(o["users"])] for o in outside],
                width,
            ),
        ]
    disabled = rem.get("disabledMembers") or []
    if disabled:
        out += [
            "",
            "Disabled accounts holding licences through tagged groups",
            table(
                ["group", "disabled", "seats held", "longest seen disabled"],
                [
                    [
                        d["displayName"],
                        d["disabledMembers"],
                        ", ".join(f"{n} {p}" for p, n in sorted(d["seatsHeld"].items())),
                        f"{max(u['daysDisabled'] for u in d['users'])} day(s)",
                    ]
                    for d in disabled
                ],
                width,
            ),
        ]
    removals = rem.get("removals") or []
    if removals:
        out += [
            "",
            f"Removals ({len(removals)})",
            table(
                ["kind", "user", "group", "licences", "frees", "outcome", "reason"],
                [
                    [
                        r["kind"],
                        r["upn"],
                        r["groupName"],
                        ", ".join(r["skus"]),
                        ", ".join(r["frees"]) or "-",
                        r.get("outcome", ""),
                        r.get("outcomeDetail") or r["reason"],
                    ]
                    for r in removals
                ],
                width,
            ),
        ]
    return out


def _subscriptions(summary: dict[str, Any]) -> list[str]:
    """Where the seats come from, as the run read them; says so when it could not."""
    subs = summary.get("subscriptions")
    if subs is None:
        return [] if "subscriptions" not in summary else ["", "Subscriptions: not read"]
    if not subs:
        return ["", "Subscriptions: none listed"]
    rows = [
        [
            sku_label(s.get("skuId"), s.get("skuPartNumber")),
            s.get("status"),
            s.get("totalLicenses"),
            "yes" if s.get("isTrial") else "",
            str(s.get("nextLifecycleDateTime") or "")[:10],
        ]
        for s in subs
    ]
    return [
        "",
        "Subscriptions",
        table(["sku", "status", "seats", "trial", "next lifecycle (unless renewed)"], rows),
    ]


def render_status(status: dict[str, Any]) -> str:
    """Human report of shared.api.build_status: seats and forecasts, latest run, open alerts."""
    source = "Graph, now" if status.get("seatsSource") == "graph" else "the latest run"
    out = [f"Seats per SKU (from {source})"]
    out.append(
        table(
            ["sku", "status", "enabled", "consumed", "free", "demand", "forecast"],
            [
                [
                    sku_row_label(s),
                    s.get("capabilityStatus"),
                    s["enabled"],
                    s["consumed"],
                    s["free"],
                    s.get("demand", 0),
                    (s.get("forecast") or {}).get("text", ""),
                ]
                for s in status.get("skus") or []
            ],
        )
    )
    for warning in status.get("warnings") or []:
        out.append(f"Warning: {warning}")
    run = status.get("latestRun")
    out += [
        "",
        "Latest run: "
        + (
            f"{run['runId']}  mode={run['mode']}  trigger={run['trigger']}  status={run['status']}"
            if run
            else "none recorded"
        ),
    ]
    alerts = status.get("openAlerts") or []
    out += ["", f"Open alerts: {len(alerts)}"]
    if alerts:
        out.append(
            table(
                ["severity", "kind", "subject", "since"],
                [[a["severity"], a["kind"], a["subject"], a.get("since") or ""] for a in alerts],
            )
        )
    return "\n".join(out)
