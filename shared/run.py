"""One enforcement run: load policy -> read -> plan -> (apply) -> record -> alert.

The single entry point shared by the timer, the HTTP API and the command line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from azure.core.credentials import TokenCredential
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, StatusCode, Tracer, TracerProvider
from opentelemetry.trace import Status as SpanStatus

from shared import alerts as alerts_mod
from shared.collect import collect
from shared.credentials import credential_for
from shared.errors import ConfigurationError, GraphReadError, PolicyError
from shared.executor import Outcome, apply_plan, budget_problem
from shared.graph import GraphClient, required_roles
from shared.model import Sku
from shared.planner import Plan, make_plan
from shared.policy import Policy, ResolvedPolicy, load_policy, resolve
from shared.settings import Mode, Settings
from shared.store import TableStore, as_json, clip, new_run_id
from shared.telemetry import (
    SPAN_ALERT,
    SPAN_APPLY,
    SPAN_COLLECT,
    SPAN_PLAN,
    SPAN_RECORD,
    SPAN_RUN,
    InstrumentedGraphClient,
    ProgressCallback,
    ProgressEvent,
    RunMetrics,
    decision_events,
    get_tracer,
)

log = logging.getLogger("licensing")

Status = Literal["running", "succeeded", "partial", "failed", "refused"]


@dataclass
class RunReport:
    run_id: str
    mode: Mode
    trigger: str
    started_at: datetime
    status: Status = "running"
    finished_at: datetime | None = None
    policy_file: str = ""
    policy_digest: str = ""
    error: str | None = None
    refused_reason: str | None = None
    plan: Plan | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    skus_after: dict[str, Sku] = field(default_factory=dict)
    graph_requests: int = 0
    graph_writes: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def group_rows(self) -> list[dict[str, Any]]:
        rows = []
        for g in self.plan.groups if self.plan else []:
            outcome = self.outcomes.get(g.group_id)
            rows.append(
                {
                    "groupId": g.group_id,
                    "displayName": g.display_name,
                    "profile": g.profile,
                    "decision": g.decision.value,
                    "reason": g.reason,
                    "outcome": outcome.status if outcome else "not-applied",
                    "outcomeDetail": outcome.detail if outcome else "",
                    "memberCount": g.member_count,
                    "guestCount": g.guest_count,
                    "guests": list(g.guests),
                    "nestedGroupCount": g.nested_group_count,
                    "demand": g.demand,
                    "shortfall": g.shortfall,
                    "notes": g.notes,
                    "addLicenses": [c.part_number for c in g.add_licenses],
                    "removeLicenses": list(g.remove_licenses),
                    "reprocessUsers": len(g.reprocess_user_ids),
                    "priority": g.priority,
                    "processingState": g.processing_state,
                    "licenseErrors": g.license_errors,
                }
            )
        return rows

    def sku_rows(self) -> list[dict[str, Any]]:
        rows = []
        for s in self.plan.skus if self.plan else []:
            after = self.skus_after.get(s.sku_id)
            rows.append(
                {
                    "skuId": s.sku_id,
                    "skuPartNumber": s.part_number,
                    "capabilityStatus": s.capability_status,
                    "enabled": s.enabled,
                    "consumed": s.consumed,
                    "reserve": s.reserve,
                    "freeBefore": s.free_before,
                    "demand": s.demand,
                    "committed": s.committed,
                    "granted": s.granted,
                    "shortfall": s.shortfall,
                    "headroomUnknown": s.headroom_unknown,
                    "freeAfter": after.free if after else s.free_after,
                    "freeAfterSource": "measured" if after else "planned",
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "runId": self.run_id,
            "mode": self.mode,
            "trigger": self.trigger,
            "status": self.status,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "policyFile": self.policy_file,
            "policyDigest": self.policy_digest,
            "error": self.error,
            "refusedReason": self.refused_reason,
            "counts": plan.counts() if plan else {},
            "groupsChanged": plan.groups_changed if plan else 0,
            "usersAffected": plan.users_affected if plan else 0,
            "graphRequests": self.graph_requests,
            "graphWrites": self.graph_writes,
            "groups": self.group_rows(),
            "skus": self.sku_rows(),
            "alerts": self.alerts,
            "warnings": plan.warnings if plan else [],
        }


LEASE_TTL = timedelta(minutes=45)  # longer than host.json's functionTimeout (30 min)


def _close_abandoned_run(store: TableStore, run_id: str) -> None:
    """A run whose lease expired never finished (its process stopped): say so on its row."""
    entity = store.get_run(run_id)
    if entity is None or entity.get("Status") not in ("running", "queued"):
        return
    row = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}
    row["Status"] = "failed"
    row["Error"] = (
        "the run stopped before it finished (its lease expired); a later run took over. "
        "Groups it had not recorded were not changed by it, or are checked again by later runs."
    )
    store.put_run(row)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _finish_status(report: RunReport) -> Status:
    if report.plan is None:
        return "failed"
    if report.refused_reason:
        return "refused"
    unknown = any(g.decision.value == "unknown" for g in report.plan.groups)
    failed = any(o.status == "failed" for o in report.outcomes.values())
    return "partial" if unknown or failed else "succeeded"


async def execute_run(
    settings: Settings,
    mode: Mode,
    trigger: str,
    *,
    credential: TokenCredential | None = None,
    group_ids: list[str] | None = None,
    store: TableStore | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    progress: ProgressCallback | None = None,
    run_id: str | None = None,
) -> RunReport:
    """Run once and record it. Raises only when the run cannot even be recorded (storage down).

    run_id: a pre-made id (a queued run recorded before it starts); default: a new one.
    progress: called with ProgressEvents (members read, decided, writes applied).
    """
    tracer = get_tracer(tracer_provider)
    run_metrics = RunMetrics(meter_provider)
    clock = time.monotonic()
    now = datetime.now(UTC)
    report = RunReport(
        run_id or new_run_id(now, secrets.token_hex(3)),
        mode,
        trigger,
        now,
        policy_file=str(settings.policy_path),
    )
    with tracer.start_as_current_span(
        SPAN_RUN,
        attributes={
            "licensing.run_id": report.run_id,
            "licensing.mode": mode,
            "licensing.trigger": trigger,
        },
    ) as span:
        store = store or TableStore.from_settings(settings)
        await asyncio.to_thread(store.ensure_tables)
        await asyncio.to_thread(store.put_run, _run_entity(report))
        lease = await asyncio.to_thread(store.acquire_lease, report.run_id, LEASE_TTL, now)
        if not lease.acquired:
            report.status = "refused"
            report.refused_reason = (
                f"another run ({lease.holder}) is in progress on this tenant; its lease "
                f"expires at {_iso(lease.expires_at)} if it never finishes"
            )
            await _record(store, report, None)
            span.set_attribute("licensing.status", report.status)
            return report
        if lease.taken_over_from:
            await asyncio.to_thread(_close_abandoned_run, store, lease.taken_over_from)
        try:
            return await _execute_leased(
                report,
                settings,
                mode,
                store,
                span,
                tracer,
                run_metrics,
                clock,
                credential=credential,
                group_ids=group_ids,
                progress=progress,
            )
        finally:
            await asyncio.to_thread(store.release_lease, report.run_id)


async def _execute_leased(
    report: RunReport,
    settings: Settings,
    mode: Mode,
    store: TableStore,
    span: Span,
    tracer: Tracer,
    run_metrics: RunMetrics,
    clock: float,
    *,
    credential: TokenCredential | None,
    group_ids: list[str] | None,
    progress: ProgressCallback | None,
) -> RunReport:
    """The run proper, while it holds the lease: read, plan, (apply), alert, record."""
    graph: InstrumentedGraphClient | None = None
    policy: Policy | None = None
    resolved: ResolvedPolicy | None = None
    try:
        try:
            policy = load_policy(settings.policy_path)  # before any Graph call
            report.policy_digest = policy.digest
            cred = credential or credential_for(settings, required_roles())
            graph = InstrumentedGraphClient(
                cred,
                settings.graph_base_url,
                tracer=tracer,
                run_metrics=run_metrics,
                progress=progress,
            )
            with tracer.start_as_current_span(SPAN_COLLECT):
                skus = await graph.list_skus()
                resolved = resolve(policy, skus)
                wanted = {g.lower() for g in group_ids} if group_ids else None
                snapshot = await collect(graph, policy, skus, settings.max_concurrency, wanted)
            with tracer.start_as_current_span(SPAN_PLAN) as plan_span:
                report.plan = make_plan(snapshot, resolved)
                decision_events(plan_span, report.plan)
            run_metrics.record_plan(report.plan, mode)
            if progress:
                n = len(report.plan.groups)
                progress(ProgressEvent("decided", n, n))
            if mode == "apply" and report.plan.changes:
                report.refused_reason = budget_problem(report.plan, policy.change_budget)
                if not report.refused_reason:
                    with tracer.start_as_current_span(SPAN_APPLY):
                        graph.start_apply(report.plan)
                        try:
                            report.outcomes = await apply_plan(
                                report.plan, graph, settings.max_concurrency
                            )
                        finally:
                            graph.end_apply(report.outcomes)
                    try:  # measured seats after the writes, for the report
                        report.skus_after = {s.sku_id: s for s in await graph.list_skus()}
                    except GraphReadError:
                        pass  # the planned figures stand; the next run measures again
        except (PolicyError, ConfigurationError, GraphReadError) as exc:
            report.error = str(exc)
        # Also for a failed run, once Graph was reachable; a bad policy file stops before any
        # Graph call, mail included (the run is recorded and the timer reports the failure).
        if settings.alert_mailbox and graph is not None:
            with tracer.start_as_current_span(SPAN_ALERT):
                report.alerts = await alerts_mod.process_alerts(
                    report, _finish_status(report), settings, graph, store, policy, resolved
                )
    except Exception as exc:  # record any failure rather than lose the run; re-raised below
        report.error = f"{type(exc).__name__}: {exc}"
        report.status = "failed"
        await _record(store, report, graph)
        span.set_status(SpanStatus(StatusCode.ERROR, report.error))
        raise
    finally:
        if graph is not None:
            await graph.close()
    with tracer.start_as_current_span(SPAN_RECORD):
        await _record(store, report, graph)
    span.set_attribute("licensing.status", report.status)
    if graph is not None:
        span.set_attribute("licensing.graph_requests", report.graph_requests)
        span.set_attribute("licensing.graph_throttled", graph.throttled)
    if report.status == "failed":
        span.set_status(SpanStatus(StatusCode.ERROR, report.error or "failed"))
    run_metrics.record_seats(report.sku_rows())
    run_metrics.record_end(time.monotonic() - clock, mode, report.status)
    # Inside the run span: the log record carries the run's trace id.
    log.info("run %s (%s, %s) ended %s", report.run_id, mode, report.trigger, report.status)
    return report


async def _record(store: TableStore, report: RunReport, graph: GraphClient | None) -> None:
    if graph is not None:
        report.graph_requests = graph.stats.requests
        report.graph_writes = graph.stats.writes
    report.finished_at = datetime.now(UTC)
    if report.status == "running":
        report.status = _finish_status(report)
    rows: list[dict[str, Any]] = []
    for g in report.group_rows():
        rows.append({"RowKey": f"group-{g['groupId']}", "Kind": "group", **_flatten(g)})
    for s in report.sku_rows():
        rows.append({"RowKey": f"sku-{s['skuId']}", "Kind": "sku", **_flatten(s)})
    await asyncio.to_thread(store.put_group_results, report.run_id, rows)
    snapshot_rows = [
        {
            "PartitionKey": s["skuId"],
            "At": report.started_at.isoformat(),
            "Mode": report.mode,
            **_flatten(s),
        }
        for s in report.sku_rows()
    ]
    await asyncio.to_thread(store.put_sku_snapshots, report.run_id, snapshot_rows)
    # The run row last: a run marked finished has all its rows.
    await asyncio.to_thread(store.put_run, _run_entity(report))


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    """Table properties: scalars as they are, everything else as JSON (clipped to Table limits)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = key[0].upper() + key[1:]
        if isinstance(value, str):
            out[name] = clip(value)
        elif isinstance(value, (bool, int, float)) or value is None:
            out[name] = value
        else:
            out[name + "Json"] = as_json(value)
    return out


def _run_entity(report: RunReport) -> dict[str, Any]:
    s = report.summary()
    return {
        "RunId": report.run_id,
        "Mode": report.mode,
        "Trigger": report.trigger,
        "Status": report.status,
        "StartedAt": s["startedAt"],
        "FinishedAt": s["finishedAt"],
        "PolicyFile": clip(report.policy_file),
        "PolicyDigest": report.policy_digest,
        "Error": clip(report.error or ""),
        "RefusedReason": clip(report.refused_reason or ""),
        "CountsJson": as_json(s["counts"]),
        "GroupsChanged": s["groupsChanged"],
        "UsersAffected": s["usersAffected"],
        "GraphRequests": report.graph_requests,
        "GraphWrites": report.graph_writes,
        "AlertsJson": as_json(report.alerts),
        "WarningsJson": as_json(report.plan.warnings if report.plan else []),
    }


def read_run(store: TableStore, run_id: str) -> dict[str, Any] | None:
    """A recorded run as the same summary dict a live run produces (for reports and the API)."""
    entity = store.get_run(run_id)
    if entity is None:
        return None
    groups: list[dict[str, Any]] = []
    skus: list[dict[str, Any]] = []
    for row in store.get_group_results(run_id):
        item = _unflatten(row)
        (groups if row.get("Kind") == "group" else skus).append(item)
    groups.sort(key=lambda g: (str(g.get("displayName", "")).lower(), g.get("groupId", "")))
    skus.sort(key=lambda s: str(s.get("skuPartNumber", "")))
    return {
        "runId": entity["RunId"],
        "mode": entity["Mode"],
        "trigger": entity["Trigger"],
        "status": entity["Status"],
        "startedAt": entity["StartedAt"],
        "finishedAt": entity.get("FinishedAt"),
        "policyFile": entity.get("PolicyFile", ""),
        "policyDigest": entity.get("PolicyDigest", ""),
        "error": entity.get("Error") or None,
        "refusedReason": entity.get("RefusedReason") or None,
        "counts": json.loads(entity.get("CountsJson") or "{}"),
        "groupsChanged": entity.get("GroupsChanged", 0),
        "usersAffected": entity.get("UsersAffected", 0),
        "graphRequests": entity.get("GraphRequests", 0),
        "graphWrites": entity.get("GraphWrites", 0),
        "groups": groups,
        "skus": skus,
        "alerts": json.loads(entity.get("AlertsJson") or "[]"),
        "warnings": json.loads(entity.get("WarningsJson") or "[]"),
    }


def _unflatten(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("PartitionKey", "RowKey", "Kind", "Timestamp", "etag") or key.startswith(
            "odata"
        ):
            continue
        if key.endswith("Json") and isinstance(value, str):
            key = key[: -len("Json")]
            try:
                value = json.loads(value)
            except ValueError:
                pass  # a clipped value stays a string
        out[key[0].lower() + key[1:]] = value
    return out
