"""The seat dashboard: one server-rendered HTML page (inline CSS and SVG, no script), from the
status dict shared.api.build_status(with_details=True) returns. The markup is
shared/templates/dashboard.html.j2 (autoescaped: every directory value is escaped); this module
only works out what it shows (labels, order, chart geometry)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from shared.names import sku_row_label
from shared.templating import render_template
from shared.waiting import waiting_sentence

DECISION_ORDER = [
    "blocked-seats",
    "blocked-guests",
    "blocked-policy",
    "unknown",
    "assign",
    "repair",
    "reprocess",
    "compliant",
]
DECISION_COLOURS = {
    "compliant": "#2e7d32",
    "assign": "#1565c0",
    "repair": "#6a1b9a",
    "reprocess": "#00838f",
    "blocked-guests": "#c62828",
    "blocked-seats": "#d84315",
    "blocked-policy": "#ad1457",
    "unknown": "#616161",
}
BAR_COLOURS = {
    "enabled": "#90a4ae",
    "consumed": "#1565c0",
    "free": "#2e7d32",
    "demand": "#ef6c00",
}


def _num(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def seat_bars(sku: dict[str, Any], width: int = 220) -> dict[str, Any]:
    """Four horizontal bars (enabled, consumed, free, demand) on one scale: their geometry."""
    figures = [(k, _num(sku.get(k))) for k in ("enabled", "consumed", "free", "demand")]
    top = max([1] + [v for _, v in figures])
    label_w, bar_h, gap = 70, 16, 6
    rows = [
        {
            "name": name,
            "value": value,
            "y": i * (bar_h + gap),
            "w": max(0, round(width * value / top)),
            "colour": "#c62828" if name == "free" and value < 0 else BAR_COLOURS[name],
        }
        for i, (name, value) in enumerate(figures)
    ]
    return {
        "width": label_w + width + 60,
        "height": len(figures) * (bar_h + gap),
        "label_w": label_w,
        "bar_h": bar_h,
        "rows": rows,
    }


def history_chart(
    history: list[dict[str, Any]], width: int = 180, height: int = 84
) -> dict[str, Any]:
    """Consumed seats over time (line) against enabled (dashed), from the SKU snapshots."""
    chart: dict[str, Any] = {"width": width, "height": height, "points": None}
    points = []
    for h in history:
        try:
            points.append(
                (datetime.fromisoformat(str(h["at"])), _num(h["consumed"]), _num(h["enabled"]))
            )
        except (KeyError, ValueError):
            continue
    if len(points) < 2:
        return chart
    points.sort()
    t0, t1 = points[0][0], points[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)
    top = max(max(c, e) for _, c, e in points) or 1
    pad_t, pad_b = 6, 16
    plot_h = height - pad_t - pad_b

    def xy(t: datetime, v: int) -> tuple[str, str]:
        x = (t - t0).total_seconds() / span * (width - 4) + 2
        y = pad_t + plot_h - v / top * plot_h
        return f"{x:.1f}", f"{y:.1f}"

    chart.update(
        points=True,
        consumed=" ".join(",".join(xy(t, c)) for t, c, _ in points),
        enabled=" ".join(",".join(xy(t, e)) for t, _, e in points),
        last=xy(t1, points[-1][1]),
        top=top,
        pad_t=pad_t,
        pad_b=pad_b,
        first_day=f"{t0:%d %b}",
        last_day=f"{t1:%d %b}",
    )
    return chart


def _sku_card(sku: dict[str, Any]) -> dict[str, Any]:
    fc = sku.get("forecast") or {}
    return {
        "label": sku_row_label(sku),
        "part": sku.get("skuPartNumber"),
        "status": sku.get("capabilityStatus"),
        "reserve": _num(sku.get("reserve")),
        "shortfall": _num(sku.get("shortfall")),
        "bars": seat_bars(sku),
        "chart": history_chart(sku.get("history") or []),
        "forecast_state": fc.get("state", "unknown"),
        "forecast_text": fc.get("text", "not enough history yet"),
    }


def _groups(groups: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(str(g.get("decision")) for g in groups)
    order = [d for d in DECISION_ORDER if d in counts] + sorted(set(counts) - set(DECISION_ORDER))
    rank = {d: i for i, d in enumerate(order)}
    rows = [
        {k: g.get(k) for k in ("decision", "displayName", "profile", "outcome", "reason")}
        for g in sorted(
            groups,
            key=lambda g: (rank.get(str(g.get("decision")), 99), str(g.get("displayName"))),
        )
    ]
    return {"counts": [(d, counts[d]) for d in order], "rows": rows}


def _run(run: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: run.get(k) for k in ("runId", "mode", "status")} if run else None


def waiting_section(waiting: dict[str, Any] | None) -> dict[str, Any] | None:
    """ "Waiting for a seat": people per SKU and the longest wait, from the latest run's list."""
    if not waiting:
        return None
    complete = bool(waiting.get("complete"))
    unread = [g.get("displayName") or g.get("groupId") for g in waiting.get("unreadGroups") or []]
    return {
        "complete": complete,
        "unread": ", ".join(str(u) for u in unread),
        "runId": waiting.get("runId") or "",
        "rows": [
            {
                "product": c.get("productName") or "",
                "waiting": c.get("waiting"),
                "since": (c.get("longestSince") or "")[:10],
                "sentence": waiting_sentence(c, complete),
            }
            for c in waiting.get("skus") or []
        ],
    }


def render_dashboard(status: dict[str, Any], tenant: Mapping[str, Any] | None = None) -> str:
    """The page (shared/templates/dashboard.html.j2, autoescaped). `tenant` (id, name, enabled,
    overview: the overview's link) on a deployment with tenant records; None: the implicit one."""
    return render_template(
        "dashboard.html.j2",
        tenant=tenant,
        generated=str(status.get("generatedAt", ""))[:19].replace("T", " "),
        source="Graph, now" if status.get("seatsSource") == "graph" else "the latest run",
        run=_run(status.get("seatsRun") or status.get("latestRun")),
        latest=_run(status.get("latestRun")),
        warnings=status.get("warnings") or [],
        skus=[_sku_card(s) for s in status.get("skus") or []],
        groups=_groups(status.get("groups") or []),
        alerts=[
            {
                **{k: a.get(k) for k in ("severity", "kind", "subject", "status")},
                "since": (a.get("since") or "")[:16].replace("T", " "),
            }
            for a in status.get("openAlerts") or []
        ],
        colours=DECISION_COLOURS,
        waiting=waiting_section(status.get("waiting")),
    )


def _overview_row(item: Mapping[str, Any], keep: Mapping[str, str]) -> dict[str, Any]:
    last = item.get("lastRun") or None
    link = None
    if item.get("tenantId"):
        link = "dashboard?" + urlencode({"tenant": item["tenantId"], **keep})
    return {
        "name": item.get("displayName") or item.get("tenantId") or "",
        "id": item.get("tenantId") or "",
        "link": link,
        "enabled": bool(item.get("enabled", True)),
        "mode": item.get("mode") or "",
        "error": item.get("error"),
        "last": (
            {
                "runId": last.get("runId"),
                "status": last.get("status"),
                "mode": last.get("mode"),
                "when": str(last.get("finishedAt") or last.get("startedAt") or "")[:16].replace(
                    "T", " "
                ),
            }
            if last
            else None
        ),
        "short": item.get("seatsShort"),
        "short_skus": ", ".join(
            f"{s.get('productName') or s.get('skuPartNumber')} {s.get('shortfall')}"
            for s in item.get("seatsShortBySku") or []
        ),
        "waiting": item.get("waiting"),
        "waiting_complete": item.get("waitingComplete"),
        "alerts": item.get("openAlerts"),
    }


def render_overview(
    items: list[dict[str, Any]], keep: Mapping[str, str], generated: datetime
) -> str:
    """The tenants overview (shared/templates/tenants.html.j2): one row per tenant the caller may
    read (shared.api.tenant_summary), each linking to that tenant's dashboard. `keep`: query
    parameters every link carries (the function key the page was opened with)."""
    return render_template(
        "tenants.html.j2",
        generated=f"{generated:%Y-%m-%d %H:%M}",
        rows=[_overview_row(i, keep) for i in items],
        colours=STATUS_COLOURS,
    )


STATUS_COLOURS = {
    "succeeded": "#2e7d32",
    "partial": "#ef6c00",
    "failed": "#c62828",
    "refused": "#ad1457",
    "queued": "#546e7a",
    "running": "#1565c0",
}
