"""The seat dashboard: one server-rendered HTML page (inline CSS and SVG, no script), from the
status dict shared.api.build_status(with_details=True) returns. Every directory value is escaped."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from html import escape
from typing import Any

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

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;
color:#1c2833}
header{background:#1c2833;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c9d3dc}
main{padding:20px 28px;display:grid;gap:20px}
section{background:#fff;border-radius:8px;padding:16px 20px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h2{margin:0 0 12px;font-size:17px}
.skus{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
.sku{border:1px solid #dde3e8;border-radius:6px;padding:12px 14px}
.sku h3{margin:0 0 6px;font-size:15px} .muted{color:#5d6d7e;font-size:12px}
.fc{margin-top:6px;font-weight:600} .fc.growing{color:#d84315} .fc.flat{color:#2e7d32}
.fc.exhausted{color:#c62828} .fc.unknown{color:#5d6d7e} .fc.ending{color:#c62828}
.row{display:flex;gap:14px;align-items:flex-start} .row svg{flex:none}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:5px 8px;
border-bottom:1px solid #eef1f4;vertical-align:top} th{font-size:12px;color:#5d6d7e}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:1px 9px;font-size:12px;
white-space:nowrap}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:10px}
.warn{color:#c62828} .sev{font-weight:700}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def seat_bars(sku: dict[str, Any], width: int = 220) -> str:
    """Four horizontal bars (enabled, consumed, free, demand) on one scale."""
    figures = [(k, _num(sku.get(k))) for k in ("enabled", "consumed", "free", "demand")]
    top = max([1] + [v for _, v in figures])
    label_w, bar_h, gap = 70, 16, 6
    height = len(figures) * (bar_h + gap)
    parts = [
        f'<svg class="bars" width="{label_w + width + 60}" height="{height}" '
        f'role="img" aria-label="seats of {_e(sku.get("skuPartNumber"))}">'
    ]
    for i, (name, value) in enumerate(figures):
        y = i * (bar_h + gap)
        w = max(0, round(width * value / top))
        colour = "#c62828" if name == "free" and value < 0 else BAR_COLOURS[name]
        parts.append(
            f'<text x="0" y="{y + 12}" font-size="12" fill="#5d6d7e">{name}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" rx="3" fill="{colour}">'
            f"<title>{name}: {value}</title></rect>"
            f'<text x="{label_w + w + 6}" y="{y + 12}" font-size="12" fill="{colour}" '
            f'font-weight="600">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def history_chart(history: list[dict[str, Any]], width: int = 180, height: int = 84) -> str:
    """Consumed seats over time (line) against enabled (dashed), from the SKU snapshots."""
    points = []
    for h in history:
        try:
            points.append(
                (datetime.fromisoformat(str(h["at"])), _num(h["consumed"]), _num(h["enabled"]))
            )
        except (KeyError, ValueError):
            continue
    if len(points) < 2:
        return (
            f'<svg width="{width}" height="{height}"><text x="4" y="{height // 2}" '
            'font-size="11" fill="#5d6d7e">history: one snapshot so far</text></svg>'
        )
    points.sort()
    t0, t1 = points[0][0], points[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)
    top = max(max(c, e) for _, c, e in points) or 1
    pad_t, pad_b = 6, 16
    plot_h = height - pad_t - pad_b

    def xy(t: datetime, v: int) -> str:
        x = (t - t0).total_seconds() / span * (width - 4) + 2
        y = pad_t + plot_h - v / top * plot_h
        return f"{x:.1f},{y:.1f}"

    consumed = " ".join(xy(t, c) for t, c, _ in points)
    enabled = " ".join(xy(t, e) for t, _, e in points)
    last_x, last_y = xy(t1, points[-1][1]).split(",")
    return (
        f'<svg class="history" width="{width}" height="{height}" role="img" '
        'aria-label="consumed seats over time">'
        f'<rect x="0" y="0" width="{width}" height="{height - pad_b + 2}" fill="#f8fafb"/>'
        f'<polyline points="{enabled}" fill="none" stroke="#90a4ae" stroke-dasharray="4 3" '
        'stroke-width="1.5"/>'
        f'<polyline points="{consumed}" fill="none" stroke="#1565c0" stroke-width="2"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="3" fill="#1565c0"/>'
        f'<text x="3" y="{pad_t + 9}" font-size="10" fill="#5d6d7e">{top}</text>'
        f'<text x="0" y="{height - 3}" font-size="10" fill="#5d6d7e">{t0:%d %b}</text>'
        f'<text x="{width}" y="{height - 3}" font-size="10" fill="#5d6d7e" '
        f'text-anchor="end">{t1:%d %b}</text>'
        "</svg>"
    )


def _sku_card(sku: dict[str, Any]) -> str:
    fc = sku.get("forecast") or {}
    state = fc.get("state", "unknown")
    reserve = _num(sku.get("reserve"))
    shortfall = _num(sku.get("shortfall"))
    extra = f" · reserve {reserve}" if reserve else ""
    extra += f' · <span class="warn">short {shortfall}</span>' if shortfall else ""
    return (
        '<div class="sku">'
        f"<h3>{_e(sku.get('skuPartNumber'))}</h3>"
        f'<div class="muted">status {_e(sku.get("capabilityStatus"))}{extra}</div>'
        '<div class="row">'
        f"{seat_bars(sku)}{history_chart(sku.get('history') or [])}"
        "</div>"
        f'<div class="fc {_e(state)}">Forecast: {_e(fc.get("text", "not enough history yet"))}'
        "</div></div>"
    )


def _groups(groups: list[dict[str, Any]]) -> str:
    if not groups:
        return "<p class=muted>No run has decided any group yet.</p>"
    counts = Counter(str(g.get("decision")) for g in groups)
    order = [d for d in DECISION_ORDER if d in counts] + sorted(set(counts) - set(DECISION_ORDER))
    badges = "".join(
        f'<span class="badge" style="background:{DECISION_COLOURS.get(d, "#455a64")}">'
        f"{_e(d)} {counts[d]}</span>"
        for d in order
    )
    rank = {d: i for i, d in enumerate(order)}
    rows = "".join(
        "<tr>"
        f'<td><span class="badge" style="background:'
        f'{DECISION_COLOURS.get(str(g.get("decision")), "#455a64")}">{_e(g.get("decision"))}'
        "</span></td>"
        f"<td>{_e(g.get('displayName'))}</td><td>{_e(g.get('profile'))}</td>"
        f"<td>{_e(g.get('outcome'))}</td><td>{_e(g.get('reason'))}</td></tr>"
        for g in sorted(
            groups,
            key=lambda g: (rank.get(str(g.get("decision")), 99), str(g.get("displayName"))),
        )
    )
    return (
        f'<div class="counts">{badges}</div><table><tr><th>decision</th><th>group</th>'
        f"<th>profile</th><th>outcome</th><th>reason</th></tr>{rows}</table>"
    )


def _alerts(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return "<p class=muted>No open alerts.</p>"
    rows = "".join(
        f'<tr><td class="sev">{_e(a.get("severity"))}</td><td>{_e(a.get("kind"))}</td>'
        f"<td>{_e(a.get('subject'))}</td><td>{_e(a.get('status'))}</td>"
        f"<td>{_e((a.get('since') or '')[:16].replace('T', ' '))}</td></tr>"
        for a in alerts
    )
    return (
        "<table><tr><th>severity</th><th>kind</th><th>subject</th><th>status</th>"
        f"<th>since (UTC)</th></tr>{rows}</table>"
    )


def render_dashboard(status: dict[str, Any]) -> str:
    run = status.get("seatsRun") or status.get("latestRun")
    latest = status.get("latestRun")
    run_line = "no run recorded yet"
    if run:
        run_line = (
            f"groups and demand from run {_e(run['runId'])} ({_e(run.get('mode'))}, "
            f"{_e(run.get('status'))})"
        )
    if latest and run and latest["runId"] != run["runId"]:
        run_line += f" · latest run {_e(latest['runId'])} is {_e(latest.get('status'))}"
    source = "Graph, now" if status.get("seatsSource") == "graph" else "the latest run"
    warnings = "".join(f'<p class="warn">{_e(w)}</p>' for w in status.get("warnings") or [])
    skus = "".join(_sku_card(s) for s in status.get("skus") or []) or (
        "<p class=muted>No SKU figures yet.</p>"
    )
    generated = str(status.get("generatedAt", ""))[:19].replace("T", " ")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<title>Group licensing: seats</title>"
        f"<style>{CSS}</style></head><body>"
        "<header><h1>Group licensing: seats</h1>"
        f"<p>Generated {_e(generated)} UTC · seats from {source} · {run_line}</p></header>"
        f"<main>{warnings}"
        "<section><h2>Seats per SKU</h2>"
        '<p class="muted">Bars: enabled, consumed, free (enabled &minus; consumed) and demand '
        "of the tagged groups. Chart: consumed seats per run (line) against enabled "
        "(dashed). Forecast: when consumed reaches enabled at the least-squares growth of "
        "the last 30 days, or earlier when a subscription's seats end first (its next lifecycle "
        "date, unless renewed).</p>"
        f'<div class="skus">{skus}</div></section>'
        f"<section><h2>Groups by decision</h2>{_groups(status.get('groups') or [])}</section>"
        f"<section><h2>Open alerts</h2>{_alerts(status.get('openAlerts') or [])}</section>"
        "</main></body></html>"
    )
