"""One enforcement run: load policy -> read -> plan -> (apply) -> record -> alert.

The single entry point shared by the timer, the HTTP API and the command line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from azure.core.credentials import TokenCredential
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, StatusCode, Tracer, TracerProvider
from opentelemetry.trace import Status as SpanStatus

from shared import alerts as alerts_mod
from shared import waiting as waiting_mod
from shared.collect import IN_CLAUSE_LIMIT, collect
from shared.credentials import credential_for
from shared.errors import ConfigurationError, GraphReadError, PolicyError
from shared.executor import Outcome, apply_plan, apply_removals, budget_problem
from shared.graph import GraphClient, required_roles
from shared.model import Sku, Snapshot
from shared.names import sku_product_name
from shared.planner import Decision, Plan, make_plan
from shared.policy import Policy, ResolvedPolicy, load_policy, resolve
from shared.removals import Baseline, RemovalKind, plan_removals, removal_summary
from shared.settings import Mode, Settings
from shared.store import (
    LEASE_ROW,
    LIVENESS_PREFIX,
    RunRowChanged,
    TableStore,
    as_json,
    clip,
    from_properties,
    iso,
    new_run_id,
    pack_json,
    parse_time,
    run_from_entity,
    run_to_entity,
    to_properties,
    unpack_json,
)
from shared.subscriptions import Subscription
from shared.subscriptions import from_row as subscription_from_row
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
    removal_outcomes: dict[str, Outcome] = field(default_factory=dict)  # Removal.key -> outcome
    skus_after: dict[str, Sku] = field(default_factory=dict)
    graph_requests: int = 0
    graph_writes: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    limited_to: tuple[str, ...] = ()  # the groupIds the run was limited to; () = every group
    requested_by: str = ""
    # GET /directory/subscriptions; None: not read (unknown, never "no subscriptions")
    subscriptions: list[Subscription] | None = None
    subscriptions_error: str = ""
    row_etag: str | None = None  # of the run row as this run last wrote it (conditional writes)
    waiting: dict[str, Any] | None = None  # the waiting list's counts (shared/waiting.py)
    tenant_id: str | None = None  # None: the implicit tenant of a single-tenant install
    tenant_name: str = ""

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
                    "missingPermissions": list(outcome.missing_permissions) if outcome else [],
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
                    "productName": sku_product_name(s.sku_id, s.part_number),
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

    def warnings(self) -> list[str]:
        out = list(self.plan.warnings) if self.plan else []
        if self.subscriptions_error:
            out.append(
                f"{self.subscriptions_error}; subscription alerts keep their state and the "
                "forecast leaves subscription end dates out this run"
            )
        return out

    def headline(self) -> dict[str, Any]:
        """The run's own fields (who, when, status, counts): the head of `summary()` and of the
        run's Table row, without the per-group and per-SKU rows."""
        plan = self.plan
        return {
            "runId": self.run_id,
            "tenantId": self.tenant_id,
            "tenantName": self.tenant_name,
            "mode": self.mode,
            "trigger": self.trigger,
            "requestedBy": self.requested_by,
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
        }

    def summary(self) -> dict[str, Any]:
        plan = self.plan
        return {
            **self.headline(),
            "groups": self.group_rows(),
            "skus": self.sku_rows(),
            "alerts": self.alerts,
            "subscriptions": (
                None if self.subscriptions is None else [s.row() for s in self.subscriptions]
            ),
            "subscriptionsError": self.subscriptions_error or None,
            "warnings": self.warnings(),
            "requestedNotTagged": plan.requested_not_tagged if plan else [],
            "removals": removal_summary(plan.removals if plan else None, self.removal_outcomes),
            "waiting": self.waiting,
        }


# Renewed every LEASE_TTL / 3 while the run works, so the TTL need not outlast the function
# timeout: it bounds how long a crashed run blocks the next one.
LEASE_TTL = timedelta(minutes=10)
STALE_AFTER = timedelta(minutes=5)  # a claimed run with no live liveness row by then has died
# A queued run not started by then never will be: the host gives a message maxDequeueCount (5)
# deliveries of at most functionTimeout (30 min) each before it moves it to the poison queue.
QUEUED_FOR_TOO_LONG = timedelta(hours=3)
ABANDONED = (
    "the run stopped before it finished (its worker stopped, its lease expired); a later run took "
    "over. Groups it had not recorded were not changed by it, or are checked again by later runs."
)


class LeaseGuard:
    """The leases a run holds (its liveness row; for an apply also the tenant's apply lease),
    renewed on a timer while it works. The executor asks `still_holds()` before each group's
    writes: a run that lost the apply lease (taken over after it expired) writes nothing more."""

    def __init__(
        self,
        store: TableStore,
        holder: str,
        leases: dict[str, int],
        ttl: timedelta,
        renew_every: timedelta | None = None,
    ) -> None:
        self.store, self.holder, self.ttl = store, holder, ttl
        self.leases = dict(leases)  # row name -> generation (the fencing token)
        self.renew_every = renew_every or ttl / 3
        self.expires = datetime.now(UTC) + ttl
        self.lost: str | None = None  # why the run no longer holds the apply lease
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def renew(self) -> bool:
        """Renew every lease; False once the apply lease is lost (it stays lost)."""
        async with self._lock:
            if self.lost:
                return False
            now = datetime.now(UTC)
            for name, generation in list(self.leases.items()):
                try:
                    expires = await asyncio.to_thread(
                        self.store.renew_lease, self.holder, generation, self.ttl, now, name
                    )
                except Exception as exc:  # storage unreachable: unknown, so not confirmed
                    log.warning("run %s could not renew its lease %s: %s", self.holder, name, exc)
                    if name == LEASE_ROW and now >= self.expires:
                        return False  # not lost (yet), but no longer known to be ours
                    continue
                if expires is None and name == LEASE_ROW:
                    state = await asyncio.to_thread(self.store.lease_state, name)
                    self.lost = (
                        f"the run lost the tenant's run lease to {state.get('Holder')}"
                        if state
                        else "the run's lease was removed"
                    ) + " (its lease expired before it was renewed)"
                    log.error("run %s: %s; it stops writing", self.holder, self.lost)
                    return False
                if expires is not None and name == LEASE_ROW:
                    self.expires = expires
            return True

    async def still_holds(self) -> bool:
        """True when the apply lease is confirmed ours right now (checked in storage)."""
        if self.lost:
            return False
        now = datetime.now(UTC)
        try:
            state = await asyncio.to_thread(self.store.lease_state, LEASE_ROW)
        except Exception as exc:
            log.warning("run %s could not read its lease: %s", self.holder, exc)
            return False
        state = state or {}
        expires = state.get("ExpiresAt")
        ours = state.get("Holder") == self.holder and int(
            state.get("Generation") or 0
        ) == self.leases.get(LEASE_ROW)
        if ours and isinstance(expires, datetime) and expires > now:
            return True
        return await self.renew()  # expired but nobody took it: renew (conditional) or lose it

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every.total_seconds())
            await self.renew()

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for name in self.leases:
            try:
                await asyncio.to_thread(self.store.release_lease, self.holder, name)
            except Exception as exc:  # it expires on its own
                log.warning("run %s could not release lease %s: %s", self.holder, name, exc)


def _close_abandoned_run(store: TableStore, run_id: str) -> None:
    """A run whose lease expired never finished (its process stopped): say so on its row.

    Conditional on the row as read: if the old run records itself meanwhile, its record stands."""
    store.close_run(run_id, ("running", "queued"), ABANDONED)


def _close_dead_runs(store: TableStore, current: str, now: datetime) -> None:
    """Close rows whose worker died: `running` with no live liveness row, `queued` for too long.

    Every run does this when it starts, so nothing stays `running` or `queued` forever."""
    for row in store.list_runs(50):
        run_id, status = str(row.get("RunId")), row.get("Status")
        if run_id == current or status not in ("running", "queued"):
            continue
        started = parse_time(row.get("ClaimedAt")) or parse_time(row.get("StartedAt"))
        if started is None:
            continue
        if status == "queued" and now - started > QUEUED_FOR_TOO_LONG:
            store.close_run(
                run_id,
                ("queued",),
                f"the run never started: it was queued at "
                f"{iso(row.get('StartedAt')) or '(unknown)'} and no worker took it within "
                f"{QUEUED_FOR_TOO_LONG} (its message was lost or moved to "
                "the poison queue; see docs/runbook.md). Start it again if it is still wanted.",
            )
        elif (
            status == "running"
            and now - started > STALE_AFTER
            and not store.run_is_alive(run_id, now)
        ):
            store.close_run(run_id, ("running",), ABANDONED)


# Between polls of the written groups' licenseProcessingState; then every MEASURE_POLL_MAX_S.
MEASURE_POLLS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
MEASURE_POLL_MAX_S = 10.0
MEASURE_CONCURRENCY = 8  # processing-state queries in flight at once
PROCESSING_COMPLETE = "ProcessingComplete"


async def measure_after_writes(
    graph: GraphClient, report: RunReport, wait_s: float
) -> dict[str, Sku]:
    """The seats after the writes, read once Graph has processed every group written.

    assignLicense answers 202 and Graph assigns the members' licences afterwards
    (docs/graph-facts.md), so seats read straight away are the seats before. This polls the
    written groups' licenseProcessingState for up to `wait_s` seconds, then reads the SKUs.
    {} when processing has not finished in time or a read failed: the report then shows the
    planned figures, labelled "planned", and alerts use them (docs/decisions.md).
    """
    plan = report.plan
    written = {
        g.group_id
        for g in (plan.changes if plan else [])
        if (g.add_licenses or g.remove_licenses)
        # applied, or accepted and then one of its users' reprocessing failed: Entra assigns
        and report.outcomes.get(g.group_id, Outcome("not-applied")).licences_written
    }
    # A member removed: Entra takes the group's licences back when it processes the change.
    written |= {
        r.group_id
        for r in (plan.removals.removals if plan and plan.removals else [])
        if r.kind is RemovalKind.GROUP_MEMBER
        and report.removal_outcomes.get(r.key, Outcome("not-applied")).status == "applied"
    }
    deadline = time.monotonic() + wait_s
    polls = iter(MEASURE_POLLS_S)
    try:
        while written:
            written -= await _processed_groups(graph, sorted(written))
            if not written:
                break
            delay = next(polls, MEASURE_POLL_MAX_S)
            if time.monotonic() + delay > deadline:
                log.info(
                    "run %s: %d group(s) still in licence processing after %s s; seats after "
                    "the run are the planned figures",
                    report.run_id,
                    len(written),
                    wait_s,
                )
                return {}
            await asyncio.sleep(delay)
        return {s.sku_id: s for s in await graph.list_skus()}
    except GraphReadError:
        return {}  # the planned figures stand; the next run measures again


async def _processed_groups(graph: GraphClient, group_ids: list[str]) -> set[str]:
    """Which of these groups Graph reports as ProcessingComplete (15 ids per `in` clause).

    The queries go side by side (a few at a time, paced as any read): a run that wrote hundreds
    of groups would otherwise wait for dozens of round trips in a row before it measures."""
    done: set[str] = set()
    gate = asyncio.Semaphore(MEASURE_CONCURRENCY)

    async def poll(chunk: list[str]) -> None:
        ids = ",".join("'" + g.replace("'", "''") + "'" for g in chunk)
        async with gate:
            found = await graph.find_groups(f"id in ({ids})")
        for raw in found:
            state = raw.get("licenseProcessingState")
            # An object {state} in the v1.0 metadata, a plain string on the resource page.
            value = state.get("state") if isinstance(state, dict) else state
            if value == PROCESSING_COMPLETE:
                done.add(str(raw["id"]).lower())

    # Every query answers (or fails) before this decides; a cancelled run cancels them all.
    # A failed read fails the measurement (the planned figures stand); anything else is a bug.
    outcomes = await asyncio.gather(
        *(
            poll(group_ids[n : n + IN_CLAUSE_LIMIT])
            for n in range(0, len(group_ids), IN_CLAUSE_LIMIT)
        ),
        return_exceptions=True,
    )
    errors = [e for e in outcomes if isinstance(e, BaseException)]
    for error in errors:
        if not isinstance(error, GraphReadError):
            raise error
    if errors:
        raise errors[0]
    return done


async def _read_subscriptions(graph: GraphClient, report: RunReport) -> None:
    """Where the seats come from; a failed read leaves them unknown and the run goes on (seats
    and demand are read from subscribedSkus and the groups, not from here)."""
    try:
        report.subscriptions = await graph.list_subscriptions()
    except GraphReadError as exc:
        report.subscriptions, report.subscriptions_error = None, str(exc)
        log.warning("run %s: %s", report.run_id, exc)


def run_scope(report: RunReport, resolved: ResolvedPolicy | None) -> alerts_mod.RunScope:
    """What this run read completely, for the alert layer: only that can be resolved."""
    plan = report.plan
    if plan is None:  # the run stopped before its reads were complete: nothing is known
        return alerts_mod.RunScope()
    limited = bool(report.limited_to)
    groups = plan.groups
    unread = [g for g in groups if g.decision is Decision.UNKNOWN]
    # An unread group's demand is unknown, so every SKU of its profile is not known completely.
    unread_skus = {
        rs.sku_id
        for g in unread
        for rs in (
            resolved.profiles[g.profile].skus if resolved and g.profile in resolved.profiles else ()
        )
    }
    policy_blocked = (Decision.UNKNOWN, Decision.BLOCKED_POLICY)
    scope = alerts_mod.RunScope(
        complete=_finish_status(report) == "succeeded",
        # Read whole or not at all (GraphClient.list_subscriptions). A run limited to groupIds
        # keeps them but leaves the tenant-wide supply alerts to the full runs.
        subscriptions_read=report.subscriptions is not None and not limited,
        limited=limited,
        # A run limited to some groups does not know the others' demand for any SKU.
        sku_ids_known=frozenset() if limited else frozenset(s.sku_id for s in plan.skus),
        groups_listed=frozenset(g.group_id for g in groups),
        guests_checked=frozenset(g.group_id for g in groups if g.decision not in policy_blocked),
        errors_checked=frozenset(
            g.group_id
            for g in groups
            if g.decision not in (*policy_blocked, Decision.BLOCKED_GUESTS)
        ),
    )
    # The seat ledger's unknown headroom: an unread group carries the SKU (in its profile or not).
    ledger_unknown = {s.sku_id for s in plan.skus if s.headroom_unknown}
    return scope.without_skus({*unread_skus, *ledger_unknown})


def _finish_status(report: RunReport) -> Status:
    if report.plan is None or report.status == "failed":
        return "failed"
    if report.refused_reason:
        return "refused"
    unknown = any(g.decision.value == "unknown" for g in report.plan.groups)
    failed = any(
        o.status == "failed" for o in (*report.outcomes.values(), *report.removal_outcomes.values())
    )
    return "partial" if unknown or failed else "succeeded"


# CPython collects its youngest generation every 700 allocations. A run on a large tenant
# allocates tens of millions of small objects that live until it ends (the users it read), and
# the collector's passes over them were ~45 % of an L run's CPU (docs/performance.md). Collected
# less often: the same memory, as they are not garbage, for a fraction of the CPU.
GC_THRESHOLDS = (100_000, 20, 10)


def tune_gc() -> None:
    """Raise the collector's thresholds for the process, unless someone already raised them."""
    if gc.get_threshold()[0] < GC_THRESHOLDS[0]:
        gc.set_threshold(*GC_THRESHOLDS)


class _SnapshotFreeze:
    """gc.freeze is process-wide and two runs may share a process (host.json batchSize 2): the
    heap is unfrozen only when the last run that froze it ends, never by a run that did not."""

    def __init__(self) -> None:
        self._runs: set[str] = set()
        self._lock = threading.Lock()

    def freeze(self, run_id: str) -> None:
        with self._lock:
            gc.freeze()
            self._runs.add(run_id)

    def release(self, run_id: str) -> None:
        with self._lock:
            if run_id not in self._runs:
                return
            self._runs.discard(run_id)
            if not self._runs:
                gc.unfreeze()


SNAPSHOT_FREEZE = _SnapshotFreeze()


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
    requested_by: str = "",
    lease_ttl: timedelta = LEASE_TTL,
    lease_renew_every: timedelta | None = None,
) -> RunReport:
    """Run once and record it. Raises only when the run cannot even be recorded (storage down).

    run_id: a pre-made id (a queued run recorded before it starts); default: a new one.
    progress: called with ProgressEvents (members read, decided, writes applied).
    requested_by: who asked for the run (the HTTP caller), kept on its row.
    lease_ttl, lease_renew_every: the leases' lifetime and renewal period (default TTL / 3).
    """
    tune_gc()
    tracer = get_tracer(tracer_provider)
    run_metrics = RunMetrics(meter_provider)
    clock = time.monotonic()
    now = datetime.now(UTC)
    report = RunReport(
        run_id or new_run_id(now),
        mode,
        trigger,
        now,
        policy_file=str(settings.policy_path),
        limited_to=tuple(group_ids or ()),
        requested_by=requested_by,
        tenant_id=settings.tenant_id,
        tenant_name=settings.tenant_name,
    )
    with tracer.start_as_current_span(
        SPAN_RUN,
        attributes={
            "licensing.run_id": report.run_id,
            "licensing.mode": mode,
            "licensing.trigger": trigger,
            "licensing.tenant_id": settings.tenant_id or "",
        },
    ) as span:
        store = store or TableStore.from_settings(settings)
        if store.tenant_id != settings.tenant_id:
            raise ValueError(
                f"the store is tenant {store.tenant_id}'s but the run is for {settings.tenant_id}"
            )
        await asyncio.to_thread(store.ensure_tables)
        report.row_etag = await asyncio.to_thread(store.put_run, _run_entity(report))
        # Every run keeps a liveness row while it works; only an apply (which writes to Graph)
        # takes the tenant's apply lease, so a plan never makes the nightly apply refused.
        alive = await asyncio.to_thread(
            store.acquire_lease, report.run_id, lease_ttl, now, LIVENESS_PREFIX + report.run_id
        )
        leases = {LIVENESS_PREFIX + report.run_id: alive.generation}
        guard = LeaseGuard(store, report.run_id, leases, lease_ttl, lease_renew_every)
        guard.start()
        try:
            if mode == "apply":
                lease = await asyncio.to_thread(store.acquire_lease, report.run_id, lease_ttl, now)
                if not lease.acquired:
                    report.status = "refused"
                    report.refused_reason = (
                        f"another run ({lease.holder}) is in progress on this tenant; its lease "
                        f"expires at {iso(lease.expires_at) or '(unknown)'} if it never finishes"
                    )
                    await _alert_refused(report, settings, store, credential, tracer)
                    await _record(store, report, None)
                    span.set_attribute("licensing.status", report.status)
                    return report
                guard.leases[LEASE_ROW] = lease.generation
                guard.expires = lease.expires_at
                if lease.taken_over_from:
                    await asyncio.to_thread(_close_abandoned_run, store, lease.taken_over_from)
            await asyncio.to_thread(_close_dead_runs, store, report.run_id, now)
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
                guard=guard,
                tracer_provider=tracer_provider,
            )
        finally:
            SNAPSHOT_FREEZE.release(report.run_id)  # frozen in _execute_leased
            await guard.stop()


def mail_client(settings: Settings, credential: TokenCredential | None = None) -> GraphClient:
    """Graph for alert mail, always as the deployment's own tenant: a customer tenant's run mails
    from the deployment's mailbox, so customers consent to reading and licensing, never Mail.Send.
    `credential`: the implicit tenant's, when the caller has one (tests, the CLI)."""
    if settings.tenant_id is None:
        cred = credential or credential_for(settings, required_roles())
        return GraphClient(cred, settings.graph_base_url)
    home = dataclasses.replace(settings, tenant_id=None, tenant_name="")
    return GraphClient(credential_for(home, ["Mail.Send"]), settings.graph_base_url)


async def _alert_refused(
    report: RunReport,
    settings: Settings,
    store: TableStore,
    credential: TokenCredential | None,
    tracer: Tracer,
) -> None:
    """A timer apply refused for the lease is a run problem operators hear of (mail)."""
    if report.trigger != "timer" or not settings.alert_mailbox:
        return
    graph: GraphClient | None = None
    try:
        graph = mail_client(settings, credential)
        with tracer.start_as_current_span(SPAN_ALERT):
            report.alerts = await alerts_mod.process_alerts(
                # A refused run read nothing: its scope covers nothing, so it resolves nothing.
                report,
                "refused",
                settings,
                graph,
                store,
                None,
                None,
                alerts_mod.RunScope(),
            )
    except Exception as exc:  # the refusal is recorded and fails the timer either way
        log.warning("run %s: the refused-run alert could not be processed: %s", report.run_id, exc)
    finally:
        if graph is not None:
            await graph.close()


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
    tracer_provider: TracerProvider | None = None,
    guard: LeaseGuard,
) -> RunReport:
    """The run proper, while it holds the lease: read, plan, (apply), alert, record."""
    graph: InstrumentedGraphClient | None = None
    policy: Policy | None = None
    resolved: ResolvedPolicy | None = None
    try:
        try:
            # Before any Graph call; a tenant's overrides are merged and validated with it.
            policy = load_policy(settings.policy_path, settings.policy_overrides)
            report.policy_digest = policy.digest
            # Opt-in permissions only when the policy turns the opt-in on (graph.OPT_IN_OPERATIONS).
            cred = credential or credential_for(settings, required_roles(policy.opt_in_keys()))
            graph = InstrumentedGraphClient(
                cred,
                settings.graph_base_url,
                tracer=tracer,
                tracer_provider=tracer_provider,
                run_metrics=run_metrics,
                progress=progress,
                tenant_id=settings.tenant_id,
            )
            with tracer.start_as_current_span(SPAN_COLLECT):
                skus = await graph.list_skus()
                await _read_subscriptions(graph, report)
                resolved = resolve(policy, skus)
                wanted = {g.lower() for g in group_ids} if group_ids else None
                sizes = await _recorded_sizes(store)
                snapshot = await collect(
                    graph, policy, skus, settings.max_concurrency, wanted, sizes
                )
                # The snapshot (every member of every group) lives until the run ends: frozen,
                # the collections planning and recording set off do not walk it each time.
                # Unfrozen when the run ends (execute_run).
                SNAPSHOT_FREEZE.freeze(report.run_id)
            with tracer.start_as_current_span(SPAN_PLAN) as plan_span:
                report.plan = make_plan(snapshot, resolved)
                await _plan_removals(report, snapshot, resolved, store)
                if policy.migration.report_outside_groups:
                    await _outside_group_licensing(report, snapshot, resolved, graph)
                decision_events(plan_span, report.plan)
            run_metrics.record_plan(report.plan, mode)
            if progress:
                n = len(report.plan.groups)
                progress(ProgressEvent("decided", n, n))
            removals = report.plan.removals.removals if report.plan.removals else []
            if mode == "apply" and (report.plan.changes or removals):
                report.refused_reason = budget_problem(report.plan, policy.change_budget)
                if not report.refused_reason:
                    with tracer.start_as_current_span(SPAN_APPLY):
                        graph.start_apply(report.plan)
                        try:
                            report.outcomes = await apply_plan(
                                report.plan, graph, settings.max_concurrency, guard
                            )
                            report.removal_outcomes = await apply_removals(
                                report.plan, graph, settings.max_concurrency, guard
                            )
                        finally:
                            graph.end_apply(report.outcomes)
                    if guard.lost:  # stopped writing: said on the run and on each group left
                        report.status = "failed"
                        report.error = f"{guard.lost}; it stopped writing"
                    report.skus_after = await measure_after_writes(
                        graph, report, settings.measure_wait_s
                    )
            report.waiting = await record_waiting(store, report, snapshot, resolved)
        except (PolicyError, ConfigurationError, GraphReadError) as exc:
            report.error = str(exc)
        # Also for a failed run, once Graph was reachable; a bad policy file stops before any
        # Graph call, mail included (the run is recorded and the timer reports the failure).
        if settings.alert_mailbox and graph is not None:
            mailer = graph if settings.tenant_id is None else mail_client(settings)
            try:
                with tracer.start_as_current_span(SPAN_ALERT):
                    report.alerts = await alerts_mod.process_alerts(
                        report,
                        _finish_status(report),
                        settings,
                        mailer,
                        store,
                        policy,
                        resolved,
                        run_scope(report, resolved),
                    )
            finally:
                if mailer is not graph:
                    await mailer.close()
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


async def record_waiting(
    store: TableStore, report: RunReport, snapshot: Snapshot, resolved: ResolvedPolicy
) -> dict[str, Any] | None:
    """Derive this run's waiting list, date it from the first-seen rows, record it; its counts.

    A storage failure here is a warning on the run, not a failed enforcement."""
    assert report.plan is not None
    applied = (
        frozenset(g for g, o in report.outcomes.items() if o.status == "applied")
        if report.mode == "apply"
        else None
    )
    listed = waiting_mod.waiting_list(snapshot, report.plan, resolved, applied, report.limited_to)
    now = datetime.now(UTC)
    try:
        seen = await asyncio.to_thread(store.waiting_since)
        stored = waiting_mod.stored_list(listed, seen, now)
        summary = stored.summary
        head = {
            "RunId": report.run_id,
            "Mode": report.mode,
            "StartedAt": report.started_at.isoformat(),
            "GeneratedAt": now.isoformat(),
            "SummaryJson": as_json(summary),
        }
        await asyncio.to_thread(store.replace_waiting_since, stored.keep)
        await asyncio.to_thread(
            store.put_waiting_list, report.run_id, head, stored.rows, not report.limited_to
        )
    except Exception as exc:  # the enforcement stands; the list is recorded next run
        log.warning("run %s: the waiting list could not be recorded: %s", report.run_id, exc)
        report.plan.warnings.append(f"the waiting list could not be recorded: {exc}")
        return None
    return summary


async def _recorded_sizes(store: TableStore) -> dict[str, int]:
    """The member counts the last runs recorded, to read the largest groups first; without them
    (storage hiccup) the run reads in its default order rather than fail."""
    try:
        return await asyncio.to_thread(store.last_member_counts)
    except Exception as exc:  # ordering is an optimisation: never a reason to fail the run
        log.warning("member counts of the last runs could not be read (%s); default order", exc)
        return {}


async def _record(store: TableStore, report: RunReport, graph: GraphClient | None) -> None:
    if graph is not None:
        report.graph_requests = graph.stats.requests
        report.graph_writes = graph.stats.writes
    report.finished_at = datetime.now(UTC)
    if report.status == "running":
        report.status = _finish_status(report)
    rows: list[dict[str, Any]] = []
    for g in report.group_rows():
        rows.append({"RowKey": f"group-{g['groupId']}", "Kind": "group", **to_properties(g)})
    for s in report.sku_rows():
        rows.append({"RowKey": f"sku-{s['skuId']}", "Kind": "sku", **to_properties(s)})
    await asyncio.to_thread(store.put_group_results, report.run_id, rows)
    snapshot_rows = [
        {
            "PartitionKey": s["skuId"],
            "At": report.started_at.isoformat(),
            "Mode": report.mode,
            **to_properties(s),
        }
        for s in report.sku_rows()
    ]
    await asyncio.to_thread(store.put_sku_snapshots, report.run_id, snapshot_rows)
    await _record_removals(store, report)
    if report.subscriptions is not None:
        subscription_rows = [
            {"At": report.started_at.isoformat(), "RunId": report.run_id, **to_properties(s.row())}
            for s in report.subscriptions
        ]
        await asyncio.to_thread(store.put_subscriptions, report.run_id, subscription_rows)
    # The run row last: a run marked finished has all its rows. Conditional on the row this run
    # wrote: if another run closed it meanwhile (this one lost its lease), that closure stands.
    try:
        report.row_etag = await asyncio.to_thread(
            store.put_run, _run_entity(report), report.row_etag
        )
    except RunRowChanged:
        log.error(
            "run %s: its row was closed by another run meanwhile; this late record is dropped "
            "(its groups' results are kept under its run id)",
            report.run_id,
        )


def _run_entity(report: RunReport) -> dict[str, Any]:
    return {
        **run_to_entity(
            {
                **report.headline(),  # not the whole summary: its group and SKU rows are rows
                "alerts": report.alerts,
                "warnings": report.warnings(),
                "requestedNotTagged": report.plan.requested_not_tagged if report.plan else [],
                "waiting": report.waiting,
            }
        ),
        # Whether this run read the subscriptions (absent on older runs: unknown)
        "SubscriptionsRead": report.subscriptions is not None,
        "SubscriptionsError": clip(report.subscriptions_error),
    }


def read_run(store: TableStore, run_id: str) -> dict[str, Any] | None:
    """A recorded run as the same summary dict a live run produces (for reports and the API)."""
    entity = store.get_run(run_id)
    if entity is None:
        return None
    groups: list[dict[str, Any]] = []
    skus: list[dict[str, Any]] = []
    removals: dict[str, Any] = {}
    for row in store.get_group_results(run_id):
        item = from_properties(row)
        if row.get("Kind") == REMOVALS_KIND:
            # Packed; earlier versions wrote ReportJson, cut when too long (then unreadable)
            report = unpack_json(row) if "Parts" in row else item.get("report")
            removals = _removals_read_back(
                report if isinstance(report, dict) else {}, store.get_removals(run_id)
            )
            continue
        (groups if row.get("Kind") == "group" else skus).append(item)
    groups.sort(key=lambda g: (str(g.get("displayName", "")).lower(), g.get("groupId", "")))
    subscriptions: list[dict[str, Any]] | None = None
    if entity.get("SubscriptionsRead"):  # runs before subscriptions were read: unknown
        subscriptions = sorted(
            (subscription_from_row(r).row() for r in store.run_subscriptions(run_id)),
            key=lambda s: (str(s["skuPartNumber"]), str(s["subscriptionId"])),
        )
    skus.sort(key=lambda s: str(s.get("skuPartNumber", "")))
    for s in skus:  # runs recorded before productName existed
        s.setdefault("productName", sku_product_name(s.get("skuId"), s.get("skuPartNumber")))
    return {
        **run_from_entity(entity),
        "groups": groups,
        "skus": skus,
        "removals": removals,
        "subscriptions": subscriptions,
        "subscriptionsError": entity.get("SubscriptionsError") or None,
    }


# -- removals (shared/removals.py): inputs from the store, records per user -----------------------

REMOVALS_KIND = "removals"  # the run's removal reports: one row in its group-results partition
REMOVAL_ROW_FIELDS = (
    "kind",
    "userId",
    "upn",
    "groupId",
    "groupName",
    "skus",
    "frees",
    "reason",
    "outcome",
    "outcomeDetail",
)


def _baseline(store: TableStore, run_id: str) -> Baseline | None:
    """The last successful run's direct member counts (groups it read) and consumed seats."""
    row = store.last_successful_run(run_id)
    if row is None:
        return None
    groups: dict[str, int] = {}
    skus: dict[str, int] = {}
    for r in store.get_group_results(str(row["RunId"])):
        if r.get("Kind") == "group" and r.get("Decision") != "unknown":
            groups[str(r.get("GroupId"))] = int(r.get("MemberCount") or 0)
        elif r.get("Kind") == "sku":
            skus[str(r.get("SkuId"))] = int(r.get("Consumed") or 0)
    return Baseline(str(row["RunId"]), groups, skus)


async def _plan_removals(
    report: RunReport, snapshot: Any, resolved: ResolvedPolicy, store: TableStore
) -> None:
    """Attach the removal reports and removals to the plan (first-seen rows, the baseline)."""
    assert report.plan is not None
    first_seen = await asyncio.to_thread(store.disabled_first_seen)
    baseline = await asyncio.to_thread(_baseline, store, report.run_id)
    plan_removals(
        snapshot,
        resolved,
        report.plan,
        now=report.started_at,
        first_seen_disabled=first_seen,
        baseline=baseline,
    )


async def _record_removals(store: TableStore, report: RunReport) -> None:
    """A row per removal (planned or done, with its outcome), the reports, first-seen rows."""
    plan = report.plan
    if plan is None or plan.removals is None:
        return
    summary = removal_summary(plan.removals, report.removal_outcomes)
    rows = [
        {"RowKey": r.key, **to_properties({k: item[k] for k in REMOVAL_ROW_FIELDS})}
        for r, item in zip(plan.removals.removals, summary["removals"], strict=True)
    ]
    await asyncio.to_thread(store.put_removals, report.run_id, rows)
    reports = {k: v for k, v in summary.items() if k != "removals"}
    try:  # packed: a large tenant's reports run to hundreds of thousands of characters
        stored = pack_json(reports)
    except ValueError:  # too large even packed: cut to one property, as before
        stored = to_properties({"report": reports})
    await asyncio.to_thread(
        store.put_group_results,
        report.run_id,
        [
            {
                "RowKey": "removals-report",
                "Kind": REMOVALS_KIND,
                **stored,
            }
        ],
    )
    known = await asyncio.to_thread(store.disabled_first_seen)
    new = {
        d.user_id: (report.started_at, d.upn)
        for d in plan.removals.disabled
        if d.user_id not in known
    }
    disabled_now = {d.user_id for d in plan.removals.disabled}
    complete = not report.limited_to and not any(
        g.decision is Decision.UNKNOWN for g in plan.groups
    )
    # A row goes when its user is read enabled, or (a complete run) is no longer seen disabled.
    forget = [
        uid
        for uid in known
        if uid not in disabled_now and (complete or uid in plan.removals.seen_enabled)
    ]
    await asyncio.to_thread(store.note_disabled, new, forget)


def _removals_read_back(report: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(report)
    # "Kind" is a reserved column name for from_properties (group/sku rows): carried over by hand.
    out["removals"] = sorted(
        ({**from_properties(r), "kind": r.get("Kind")} for r in rows),
        key=lambda r: (str(r.get("kind")), str(r.get("groupName")), str(r.get("upn"))),
    )
    return out


OUTSIDE_LISTED = 10  # first UPNs shown per SKU


async def _outside_group_licensing(
    report: RunReport, snapshot: Any, resolved: ResolvedPolicy, graph: GraphClient
) -> None:
    """Profile SKUs held only directly by users in no tagged group (migration.reportOutsideGroups).

    A tenant-wide read of each SKU's holders (decisions.md). Not read in a run limited to some
    groups, nor when a tagged group was not read (its members would be counted as outside): the
    report then says it was not read, never an empty list."""
    plan = report.plan
    assert plan is not None and plan.removals is not None
    if report.limited_to or any(g.decision is Decision.UNKNOWN for g in plan.groups):
        plan.warnings.append(
            "outside group licensing was not read: the run did not read every tagged group"
        )
        return
    members = {u.id for m in snapshot.members.values() for u in m.users}
    sku_ids = sorted({rs.sku_id for p in resolved.profiles.values() for rs in p.skus})
    outside: dict[str, tuple[int, list[str]]] = {}
    try:
        for sid in sku_ids:
            holders = await graph.list_sku_holders(sid)
            upns = sorted(upn for uid, upn, only in holders if only and uid not in members)
            sku = snapshot.sku(sid)
            outside[sku.part_number if sku else sid] = (len(upns), upns[:OUTSIDE_LISTED])
    except GraphReadError as exc:
        plan.warnings.append(f"outside group licensing could not be read: {exc}")
        return
    plan.removals.outside = outside
