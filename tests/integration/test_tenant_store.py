"""Several tenants in one deployment's tables (Azurite): each sees only its own rows."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from localdev.services import Azurite
from shared.store import TableStore, TenantsTable, table_service
from shared.tenants import Tenant, TenantError, TenantsRegistry

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def tables(azurite: Azurite) -> Any:
    from shared.settings import Settings

    settings = Settings.from_env(
        {
            "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
            "LICENSING_GRAPH_BASE_URL": "http://127.0.0.1:1/v1.0",
            "LICENSING_SIM_TOKEN_URL": "http://127.0.0.1:1/_sim/token",
            "LICENSING_TABLES_CONNECTION_STRING": azurite.connection_string,
        }
    )
    return table_service(settings), "t" + secrets.token_hex(6)


def _run(run_id: str) -> dict[str, Any]:
    return {"RunId": run_id, "Mode": "plan", "Status": "succeeded", "Trigger": "timer"}


def test_each_tenant_lists_only_its_own_runs_and_holds_its_own_lease(tables: Any) -> None:
    from datetime import UTC, datetime, timedelta

    service, prefix = tables
    implicit = TableStore(service, prefix)
    implicit.ensure_tables()
    a, b = implicit.for_tenant(A), implicit.for_tenant(B)
    a.put_run(_run("20261203T010000Z-aaaaaa"))
    b.put_run(_run("20261203T010000Z-bbbbbb"))
    implicit.put_run(_run("20261203T010000Z-cccccc"))
    assert [r["RunId"] for r in a.list_runs()] == ["20261203T010000Z-aaaaaa"]
    assert [r["RunId"] for r in b.list_runs()] == ["20261203T010000Z-bbbbbb"]
    assert [r["RunId"] for r in implicit.list_runs()] == ["20261203T010000Z-cccccc"]
    assert b.get_run("20261203T010000Z-aaaaaa") is None

    now = datetime.now(UTC)
    assert a.acquire_lease("run-a", timedelta(minutes=5), now).acquired
    # Another tenant's apply is not held up by A's lease; A's second run is.
    assert b.acquire_lease("run-b", timedelta(minutes=5), now).acquired
    assert not a.acquire_lease("run-a2", timedelta(minutes=5), now).acquired


def test_a_tenants_query_reaches_only_its_own_partitions(tables: Any) -> None:
    service, prefix = tables
    store = TableStore(service, prefix, A)
    store.ensure_tables()
    store.put_run({**_run("20261203T010000Z-aaaaaa"), "Status": "failed"})
    store.for_tenant(B).put_run({**_run("20261203T010000Z-bbbbbb"), "Status": "failed"})
    # Naming no partition: kept to this tenant's partitions, not refused and not every tenant's.
    rows = list(store.table("runs").query_entities("Status eq 'failed'"))
    assert [r["RunId"] for r in rows] == ["20261203T010000Z-aaaaaa"]
    with pytest.raises(ValueError, match="@pk"):  # another partition named some other way
        list(store.table("runs").query_entities("PartitionKey eq 'run'"))


def test_the_tenants_table_keeps_records_and_names_a_bad_one(tables: Any) -> None:
    service, prefix = tables
    table = TenantsTable(service, prefix)
    registry = TenantsRegistry(table)
    assert registry.list() == []  # no table yet: no tenants (the implicit one is enforced)
    registry.put(Tenant(B, "Fabrikam", mode="apply"))
    registry.put(Tenant(A, "Contoso"))
    assert [t.display_name for t in registry.list()] == ["Contoso", "Fabrikam"]
    assert registry.get(B.upper()) == Tenant(B, "Fabrikam", mode="apply")
    registry.remove(A)
    assert [t.tenant_id for t in registry.list()] == [B]

    table.put(A, {"DisplayName": "Broken", "Enabled": True, "Record": "{not json"})
    with pytest.raises(TenantError, match=f"row {A}.*Record"):
        registry.list()


def test_a_runs_subscriptions_read_back_for_its_tenant_only(tables: Any) -> None:
    # The one query across partitions (a run's subscriptions) stays inside the tenant's rows.
    service, prefix = tables
    implicit = TableStore(service, prefix)
    implicit.ensure_tables()
    a, b = implicit.for_tenant(A), implicit.for_tenant(B)
    run_id = "20261203T010000Z-aaaaaa"
    for store, sub in ((a, "sub-a"), (b, "sub-b"), (implicit, "sub-c")):
        store.put_subscriptions(run_id, [{"SubscriptionId": sub, "At": "2026-12-03T01:00:00Z"}])
    assert [r["SubscriptionId"] for r in a.run_subscriptions(run_id)] == ["sub-a"]
    assert [r["SubscriptionId"] for r in b.run_subscriptions(run_id)] == ["sub-b"]
    assert [r["PartitionKey"] for r in a.run_subscriptions(run_id)] == ["sub-a"]
