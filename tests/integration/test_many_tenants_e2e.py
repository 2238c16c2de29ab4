"""One deployment, three customer tenants: one timer tick, the queue, three workers.

The simulator serves the three tenants at once (a token names its tenant); the tenants file is
the deployment's list; the Azurite queue carries one message per tenant, delivered the way the
Functions host delivers them. Each tenant's rows, lease, pacing and alerts stay its own, and a
tenant that fails does not stop the others."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage  # what the host hands the function
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

import function_app
from localdev.services import Azurite, Simulator, app_settings
from shared.graph import forget_pacers, pacer_for
from shared.queue import queue_client
from shared.settings import Settings
from shared.store import TableStore
from shared.tenants import Tenant, TenantError, TenantsFile
from tests.integration.conftest import CONTOSO, FABRIKAM, NORTHWIND, msp_simulator


class Deployment:
    def __init__(self, sim: Simulator, settings: Settings, queue: QueueClient, file: Path) -> None:
        self.sim, self.settings, self.queue = sim, settings, queue
        self.tenants = TenantsFile(file)
        self.base = TableStore.from_settings(settings)

    def store(self, tenant_id: str | None) -> TableStore:
        return self.base.for_tenant(tenant_id)

    def requests(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = self.sim.admin_for(tenant_id, "GET", "/requests")["value"]
        return [r for r in rows if r["path"].startswith("/v1.0")]

    def outbox(self) -> list[dict[str, Any]]:
        return self.sim.admin("GET", "/_sim/outbox")["value"]  # the home tenant's mailbox

    def deliver_all(self) -> list[str]:
        """Take every message and run the workers concurrently, as several instances would."""
        taken = list(self.queue.receive_messages(max_messages=32, visibility_timeout=120))

        async def work() -> None:
            await asyncio.gather(
                *(
                    function_app.run_worker(
                        QueueMessage(
                            id=m.id,
                            body=m.content.encode(),
                            pop_receipt=m.pop_receipt,
                            dequeue_count=m.dequeue_count,
                        )
                    )
                    for m in taken
                )
            )

        asyncio.run(work())
        for m in taken:
            self.queue.delete_message(m)
        return [m.content for m in taken]


@pytest.fixture
def deployment(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    sim = msp_simulator("--processing-delay-s", "0.2")
    file = tmp_path / "tenants.yaml"
    queue_name = "runs-" + secrets.token_hex(4)
    env = app_settings(
        azurite,
        sim,
        LICENSING_TABLE_PREFIX="t" + secrets.token_hex(6),
        LICENSING_TENANTS_FILE=str(file),
        LICENSING_RUN_QUEUE=queue_name,
        LICENSING_MEASURE_WAIT_SECONDS="5",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    function_app.settings.cache_clear()
    forget_pacers()
    client = queue_client(queue_name)
    d = Deployment(sim, Settings.from_env(env), client, file)
    for tid, name in ((CONTOSO, "Contoso"), (FABRIKAM, "Fabrikam"), (NORTHWIND, "Northwind")):
        d.tenants.put(Tenant(tid, name, mode="apply"))
    yield d
    client.close()
    function_app.settings.cache_clear()
    sim.stop()


def test_one_tick_enforces_each_tenant_apart_and_a_failing_tenant_stops_no_other(
    deployment: Deployment,
) -> None:
    d = deployment
    # Fabrikam's admin withdrew consent: its run cannot get a token.
    d.sim.admin_for(FABRIKAM, "POST", "/consent", {"consented": False})
    # Northwind's budget is tiny: its run is throttled, which must not slow or throttle the others.
    d.sim.admin_for(NORTHWIND, "PATCH", "/config", {"ruLimit": 12})

    asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))
    queued = {t: d.store(t).list_runs(5) for t in (CONTOSO, FABRIKAM, NORTHWIND)}
    assert all(rows and rows[0]["Status"] == "queued" for rows in queued.values())
    assert d.requests(CONTOSO) == [], "the timer only queues: nothing is read yet"

    messages = d.deliver_all()
    assert len(messages) == 3

    runs = {t: d.store(t).list_runs(5) for t in (CONTOSO, FABRIKAM, NORTHWIND)}
    assert {t: [r["Status"] for r in rows] for t, rows in runs.items()} == {
        CONTOSO: ["partial"] if runs[CONTOSO][0]["Status"] == "partial" else ["succeeded"],
        FABRIKAM: ["failed"],
        NORTHWIND: [runs[NORTHWIND][0]["Status"]],
    }
    assert runs[NORTHWIND][0]["Status"] in ("succeeded", "partial")
    assert all(
        rows[0]["Trigger"] == "timer" and rows[0]["Mode"] == "apply" for rows in runs.values()
    )
    assert "AADSTS700016" in runs[FABRIKAM][0]["Error"]
    # Each run's row carries its tenant; the implicit tenant's partition stays empty.
    assert {rows[0]["TenantId"] for rows in runs.values()} == {CONTOSO, FABRIKAM, NORTHWIND}
    assert d.store(None).list_runs(5) == []

    # Each tenant was read and written as itself: its own directory, its own writes.
    contoso_writes = [r for r in d.requests(CONTOSO) if r["method"] != "GET"]
    assert any("assignLicense" in r["path"] for r in contoso_writes)
    assert d.requests(FABRIKAM) == []
    # Pacing: Graph budgets each app per tenant, and so does the engine. Northwind's pacer felt
    # its tiny budget (usage reported above 0.8, or 429s); Contoso's, in the same process, not.
    url = d.settings.graph_base_url
    north, home = pacer_for(url, tenant_id=NORTHWIND), pacer_for(url, tenant_id=CONTOSO)
    assert north.pressure + north.throttled > 0, "Northwind's own budget slowed it"
    assert (home.pressure, home.throttled) == (0, 0)
    assert not any(r["status"] == 429 for r in d.requests(CONTOSO))

    # Alerts: from the deployment's mailbox, to each tenant's recipients, naming the tenant.
    subjects = sorted(m["message"]["subject"] for m in d.outbox())
    assert any(s.startswith("[Licensing] Fabrikam: ") and "failed" in s for s in subjects)
    assert any(s.startswith("[Licensing] Northwind: ") for s in subjects), subjects
    assert not any(s.startswith("[Licensing] Contoso: ") and "failed" in s for s in subjects)
    for tid in (FABRIKAM, NORTHWIND):
        assert d.sim.admin_for(tid, "GET", "/outbox")["value"] == [], "customers send no mail"
    assert (
        d.store(FABRIKAM).alert_states()
        and d.store(CONTOSO).alert_states() != d.store(FABRIKAM).alert_states()
    )


def test_a_broken_tenants_file_fails_the_tick_naming_it_and_queues_no_tenant(
    deployment: Deployment,
) -> None:
    d = deployment
    text = d.tenants.path.read_text()
    d.tenants.path.write_text(text.replace("mode: apply", "mode: sometimes", 1))
    with pytest.raises(TenantError) as caught:
        asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))
    assert str(d.tenants.path) in str(caught.value) and "mode" in str(caught.value)
    # Nothing half-done: no tenant was queued (rather than some silently skipped).
    try:
        waiting = list(d.queue.peek_messages(max_messages=32))
    except ResourceNotFoundError:  # not even made: nothing was sent
        waiting = []
    assert waiting == []
    d.base.ensure_tables()  # (not made by the failed tick) so they can be read: no run rows
    assert all(d.store(t).list_runs(5) == [] for t in (CONTOSO, FABRIKAM, NORTHWIND))


def test_a_tenant_disabled_after_its_run_was_queued_is_not_enforced(
    deployment: Deployment,
) -> None:
    d = deployment
    asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))
    fabrikam = d.tenants.get(FABRIKAM)
    assert fabrikam is not None
    d.tenants.put(dataclasses.replace(fabrikam, enabled=False))
    d.deliver_all()
    [run] = d.store(FABRIKAM).list_runs(5)
    assert run["Status"] == "refused" and "is disabled" in run["RefusedReason"]
    assert d.requests(FABRIKAM) == [], "nothing was read in a disabled tenant"
    assert d.store(CONTOSO).list_runs(5)[0]["Status"] in ("succeeded", "partial")
