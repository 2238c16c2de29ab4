"""The nightly run over every tenant the deployment enforces: one queue message per tenant.

With tenant records, the timer only enqueues: each enabled tenant gets a queued run row and one
message, and the queue-triggered worker (api.work_queued_run) runs exactly that tenant. The
Functions host spreads the messages over its instances (host.json extensions.queues), so a
tenant that fails, throttles or hangs holds only its own message. Without records the timer runs
the one implicit tenant inline, as a single-tenant install always has.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from shared.api import RunRequest, queue_run
from shared.queue import RunQueue
from shared.run import RunReport, execute_run
from shared.settings import Settings
from shared.store import TableStore
from shared.tenants import tenants_to_enforce

log = logging.getLogger("licensing")


@dataclass
class Nightly:
    """What one timer tick did: the inline run (single tenant), or the runs it queued."""

    report: RunReport | None = None
    queued: dict[str, str] = field(default_factory=dict)  # tenant id -> run id
    failed: dict[str, str] = field(default_factory=dict)  # tenant id -> why it was not queued

    def problem(self) -> str | None:
        """Why the Functions host should see this tick as failed (None: it did its job)."""
        r = self.report
        if r is not None and r.status in ("failed", "refused"):
            reason = r.error if r.status == "failed" else r.refused_reason
            return f"run {r.run_id} {r.status}: {reason}"
        if self.failed:
            listed = "; ".join(f"{t}: {why}" for t, why in sorted(self.failed.items()))
            return f"{len(self.failed)} tenant run(s) could not be queued: {listed}"
        return None


async def nightly(
    settings: Settings, queue: RunQueue | None = None, store: TableStore | None = None
) -> Nightly:
    """One timer tick. Raises only when the tenant records cannot be read (nothing is queued
    then, rather than some tenants silently skipped)."""
    tenants = await asyncio.to_thread(tenants_to_enforce, settings)
    if tenants is None:
        return Nightly(report=await execute_run(settings, settings.timer_mode, "timer"))
    queue = queue or RunQueue.from_env(settings.run_queue)
    base = store or TableStore.from_settings(settings)
    # Once a tick, not per tenant: every tenant's rows live in the same tables.
    await asyncio.to_thread(base.ensure_tables)
    out = Nightly()
    for tenant in tenants:
        try:
            out.queued[tenant.tenant_id] = await asyncio.to_thread(
                queue_run,
                base.for_tenant(tenant.tenant_id),
                queue,
                RunRequest(tenant.mode, None, False),
                "",
                trigger="timer",
                ensure_tables=False,
            )
        except Exception as exc:  # one tenant's failure never skips the others
            out.failed[tenant.tenant_id] = str(exc)
            log.error("tenant %s: the nightly run could not be queued: %s", tenant.tenant_id, exc)
    log.info("nightly: %d tenant run(s) queued, %d failed", len(out.queued), len(out.failed))
    return out
