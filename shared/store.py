"""The only code that talks to Azure Table Storage (Azurite locally).

Tables (prefix from LICENSING_TABLE_PREFIX):
  <p>runs          PartitionKey "run", RowKey <inverted time>-<run id>: newest first
  <p>groupresults  PartitionKey <run id>, RowKey <group id>
  <p>skusnapshots  PartitionKey <sku id>, RowKey <run id>: seat history per SKU
  <p>alerts        PartitionKey "alert", RowKey <condition key>: alert lifecycle
Long values are truncated to Table limits with a marker; lists keep a count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TransactionOperation, UpdateMode

from shared.settings import Settings

MAX_STRING_CHARS = 30_000  # a string property holds 64 KiB of UTF-16: 32K chars, keep a margin
BATCH_LIMIT = 100  # operations per transaction
RUN_PARTITION = "run"
ALERT_PARTITION = "alert"
LEASE_PARTITION = "lease"  # in the runs table; list_runs reads only the "run" partition
LEASE_ROW = "enforcement"
_EPOCH_MAX = 99_999_999_999


def new_run_id(now: datetime, suffix: str) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + suffix


def run_row_key(run_id: str) -> str:
    """RowKey that sorts newest first, derivable from the run id alone."""
    started = datetime.strptime(run_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return f"{_EPOCH_MAX - int(started.timestamp()):011d}-{run_id}"


def clip(text: str, limit: int = MAX_STRING_CHARS) -> str:
    if len(text) <= limit:
        return text
    marker = f"... [truncated, {len(text)} chars]"
    return text[: limit - len(marker)] + marker


def as_json(value: Any, limit: int = MAX_STRING_CHARS) -> str:
    """JSON for a property; a list too long to fit is cut to a prefix plus a count."""
    text = json.dumps(value, sort_keys=True, default=str)
    if len(text) <= limit or not isinstance(value, list):
        return clip(text, limit)
    kept = list(value)
    while kept and len(json.dumps([*kept, "..."], default=str)) > limit - 64:
        kept = kept[: max(1, len(kept) // 2)] if len(kept) > 1 else []
    return json.dumps([*kept, f"... and {len(value) - len(kept)} more"], default=str)


@dataclass(frozen=True)
class Lease:
    acquired: bool
    holder: str  # who holds it now
    expires_at: Any
    taken_over_from: str | None = None  # the holder of an expired lease we took over


class TableStore:
    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self._service = service
        self.names = {
            "runs": f"{prefix}runs",
            "groups": f"{prefix}groupresults",
            "skus": f"{prefix}skusnapshots",
            "alerts": f"{prefix}alerts",
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> TableStore:
        if settings.tables_connection_string:
            service = TableServiceClient.from_connection_string(settings.tables_connection_string)
        else:
            from azure.identity import DefaultAzureCredential

            assert settings.tables_endpoint is not None  # Settings enforces one of the two
            service = TableServiceClient(
                settings.tables_endpoint, credential=DefaultAzureCredential()
            )
        return cls(service, settings.table_prefix)

    def table(self, kind: str) -> TableClient:
        return self._service.get_table_client(self.names[kind])

    def ensure_tables(self) -> None:
        for name in self.names.values():
            try:
                self._service.create_table(name)
            except ResourceExistsError:
                pass

    # -- runs -------------------------------------------------------------------------------

    def put_run(self, entity: dict[str, Any]) -> None:
        row = {"PartitionKey": RUN_PARTITION, "RowKey": run_row_key(entity["RunId"]), **entity}
        self.table("runs").upsert_entity(row, mode=UpdateMode.REPLACE)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        try:
            key = run_row_key(run_id)
        except ValueError:
            return None
        try:
            return dict(self.table("runs").get_entity(RUN_PARTITION, key))
        except ResourceNotFoundError:
            return None

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.table("runs").query_entities(
            "PartitionKey eq @pk", parameters={"pk": RUN_PARTITION}, results_per_page=limit
        )
        out: list[dict[str, Any]] = []
        for row in rows:
            out.append(dict(row))
            if len(out) >= limit:
                break
        return out

    # -- group results and SKU snapshots ------------------------------------------------------

    def put_group_results(self, run_id: str, rows: Iterable[dict[str, Any]]) -> None:
        entities = [{"PartitionKey": run_id, **row} for row in rows]
        self._submit_batches(self.table("groups"), entities)

    def get_group_results(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.table("groups").query_entities("PartitionKey eq @pk", parameters={"pk": run_id})
        return [dict(r) for r in rows]

    def put_sku_snapshots(self, run_id: str, rows: Iterable[dict[str, Any]]) -> None:
        table = self.table("skus")
        for row in rows:  # one partition per SKU: no cross-partition transaction
            table.upsert_entity({"RowKey": run_id, **row}, mode=UpdateMode.REPLACE)

    def sku_history(self, sku_id: str, limit: int = 90) -> list[dict[str, Any]]:
        rows = self.table("skus").query_entities("PartitionKey eq @pk", parameters={"pk": sku_id})
        out = [dict(r) for r in rows]
        return out[-limit:]

    # -- alerts -------------------------------------------------------------------------------

    def alert_states(self) -> dict[str, dict[str, Any]]:
        rows = self.table("alerts").query_entities(
            "PartitionKey eq @pk", parameters={"pk": ALERT_PARTITION}
        )
        return {r["RowKey"]: dict(r) for r in rows}

    def put_alert_state(self, key: str, entity: dict[str, Any]) -> None:
        row = {"PartitionKey": ALERT_PARTITION, "RowKey": key, **entity}
        self.table("alerts").upsert_entity(row, mode=UpdateMode.REPLACE)

    @staticmethod
    def _submit_batches(table: TableClient, entities: list[dict[str, Any]]) -> None:
        for chunk in _chunks(entities, BATCH_LIMIT):
            table.submit_transaction(
                [(TransactionOperation.UPSERT, e, {"mode": UpdateMode.REPLACE}) for e in chunk]
            )

    # -- operators' surface: paged runs, queued runs, open alerts ------------------------------

    def list_runs_page(
        self, limit: int, after_run_id: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first: `limit` runs older than `after_run_id` (keyset paging); True if more."""
        query = "PartitionKey eq @pk"
        params = {"pk": RUN_PARTITION}
        if after_run_id:
            query += " and RowKey gt @after"
            params["after"] = run_row_key(after_run_id)
        rows = self.table("runs").query_entities(
            query, parameters=params, results_per_page=limit + 1
        )
        out: list[dict[str, Any]] = []
        for row in rows:
            out.append(dict(row))
            if len(out) > limit:
                break
        return out[:limit], len(out) > limit

    def claim_queued_run(self, run_id: str) -> bool:
        """Mark a queued run running (ETag-conditional): True for exactly one caller."""
        table = self.table("runs")
        try:
            entity = table.get_entity(RUN_PARTITION, run_row_key(run_id))
        except (ResourceNotFoundError, ValueError):
            return False
        if entity.get("Status") != "queued":
            return False
        entity["Status"] = "running"
        try:
            table.update_entity(
                entity,
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def open_alerts(self) -> list[dict[str, Any]]:
        """Alert conditions that are open (or pending confirmation), most severe first."""
        rows = [r for r in self.alert_states().values() if r.get("Status") in ("open", "pending")]
        return sorted(rows, key=lambda r: (-int(r.get("Severity") or 0), str(r.get("Subject"))))

    # -- the run lease: one run per tenant at a time -------------------------------------------

    def acquire_lease(self, holder: str, ttl: timedelta, now: datetime) -> Lease:
        """Take the run lease for `holder`, or say who holds it.

        ETag-conditional, so two runs starting together cannot both win; an expired lease (a run
        that stopped without releasing it) is taken over, and its holder is reported.
        """
        table = self.table("runs")
        row = {
            "PartitionKey": LEASE_PARTITION,
            "RowKey": LEASE_ROW,
            "Holder": holder,
            "AcquiredAt": now,
            "ExpiresAt": now + ttl,
        }
        try:
            current = table.get_entity(LEASE_PARTITION, LEASE_ROW)
        except ResourceNotFoundError:
            try:
                table.create_entity(row)
                return Lease(True, holder, now + ttl)
            except ResourceExistsError:
                current = table.get_entity(LEASE_PARTITION, LEASE_ROW)
        expires = current.get("ExpiresAt")
        previous = current.get("Holder")
        if previous != holder and isinstance(expires, datetime) and expires > now:
            return Lease(False, str(previous), expires)
        try:  # conditional on the entity we judged expired: nobody renewed it meanwhile
            table.update_entity(
                row,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:  # another run took it between our read and write
            taken = table.get_entity(LEASE_PARTITION, LEASE_ROW)
            return Lease(False, str(taken.get("Holder")), taken.get("ExpiresAt"))
        return Lease(True, holder, now + ttl, str(previous) if previous != holder else None)

    def release_lease(self, holder: str) -> None:
        """Give the lease back if `holder` still holds it (never someone else's)."""
        table = self.table("runs")
        try:
            entity = table.get_entity(LEASE_PARTITION, LEASE_ROW)
        except ResourceNotFoundError:
            return
        if entity.get("Holder") != holder:
            return
        try:
            table.delete_entity(
                LEASE_PARTITION,
                LEASE_ROW,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # taken over after expiry, or already gone: not ours to delete


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
