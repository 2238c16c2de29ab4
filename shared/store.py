"""The only code that talks to Azure Table Storage (Azurite locally).

Tables (prefix from LICENSING_TABLE_PREFIX):
  <p>runs          PartitionKey "run", RowKey <inverted time>-<run id>: newest first
  <p>groupresults  PartitionKey <run id>, RowKey <group id>
  <p>skusnapshots  PartitionKey <sku id>, RowKey <run id>: seat history per SKU
  <p>alerts        PartitionKey "alert", RowKey <condition key>: alert lifecycle
  <p>removals      PartitionKey <run id>, RowKey <kind>-<user>-<group>-<skus>: a row per removal
  <p>disabledseen  PartitionKey "disabled", RowKey <user id>: when a run first saw it disabled
  <p>waiting       PartitionKey "since", RowKey "set" -> "set-<generation>-<n>": first run that saw
                   each person wait (packed, 1,000 to a row; one row per person before);
                   PartitionKey <run id>, RowKey "head" / "items-<n>": each run's waiting list
                   (packed, 100 people to a row; "item-<n>", one per person, before);
                   PartitionKey "latest", RowKey "list": the newest unrestricted run's list
  <p>subscriptions PartitionKey <subscription id>, RowKey <run id>: each run's subscriptions
  <p>tenants       PartitionKey "tenant", RowKey <tenant id>: the tenants one deployment enforces
Long values are truncated to Table limits with a marker; lists keep a count.

Many tenants share these tables: a store made for a tenant sees them through `TenantTable`, which
puts "<tenant id>:" before every PartitionKey it writes, reads or queries, so no method of the
store can read or overwrite another tenant's rows. The implicit tenant of a single-tenant install
has no prefix: its rows are where they always were.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
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
DISABLED_PARTITION = "disabled"
LEASE_ROW = "enforcement"  # the apply lease: one apply run per tenant at a time
WAITING_SINCE_PARTITION = "since"
LIVENESS_PREFIX = "alive-"  # + run id: every run's own heartbeat row, in the lease partition
_EPOCH_MAX = 99_999_999_999


def table_service(settings: Settings) -> TableServiceClient:
    if settings.tables_connection_string:
        return TableServiceClient.from_connection_string(settings.tables_connection_string)
    from azure.identity import DefaultAzureCredential

    assert settings.tables_endpoint is not None  # Settings enforces one of the two
    return TableServiceClient(settings.tables_endpoint, credential=DefaultAzureCredential())


def new_run_id(now: datetime, suffix: str | None = None) -> str:
    """`<UTC second>-<six hex digits>`. By default the digits start with the milliseconds left in
    that second (three hex digits), then three random ones: runs started within one second (a
    small tenant's plan takes less) still sort newest first by RowKey (`run_row_key`)."""
    if suffix is None:
        suffix = f"{999 - now.microsecond // 1000:03x}{secrets.randbelow(0x1000):03x}"
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


# -- (de)serialisation: entities <-> the summaries runs, reports and the API use -------------------

_SYSTEM = ("PartitionKey", "RowKey", "Kind", "Timestamp", "etag")


def parse_time(value: Any) -> datetime | None:
    """A time property (a datetime, or ISO text as written by this app) in UTC; None when absent
    or unreadable. Naive values are UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: Any) -> str | None:
    """A time property as ISO 8601 text, or None."""
    t = parse_time(value)
    return t.isoformat() if t else None


def to_properties(row: Mapping[str, Any]) -> dict[str, Any]:
    """camelCase fields -> Table properties: scalars as they are (text clipped to Table limits),
    everything else as JSON in `<Name>Json`."""
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


def from_properties(row: Mapping[str, Any]) -> dict[str, Any]:
    """to_properties reversed (system properties dropped); a clipped JSON value stays text."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _SYSTEM or key.startswith("odata"):
            continue
        if key.endswith("Json") and isinstance(value, str):
            key = key[: -len("Json")]
            try:
                value = json.loads(value)
            except ValueError:
                pass  # a clipped value stays a string
        out[key[0].lower() + key[1:]] = value
    return out


# The run row: (API field, Table property, stored as, read back when absent). "text" is clipped,
# and empty text reads back as the default; "json" is JSON text.
RUN_FIELDS: tuple[tuple[str, str, str, Any], ...] = (
    ("runId", "RunId", "value", None),
    ("tenantId", "TenantId", "value", None),  # None: the implicit tenant
    ("tenantName", "TenantName", "text", ""),
    ("mode", "Mode", "value", None),
    ("trigger", "Trigger", "value", None),
    ("requestedBy", "RequestedBy", "text", ""),
    ("status", "Status", "value", None),
    ("startedAt", "StartedAt", "value", None),
    ("finishedAt", "FinishedAt", "value", None),
    ("policyFile", "PolicyFile", "text", ""),
    ("policyDigest", "PolicyDigest", "value", ""),
    ("error", "Error", "text", None),
    ("refusedReason", "RefusedReason", "text", None),
    ("counts", "CountsJson", "json", {}),
    ("groupsChanged", "GroupsChanged", "value", 0),
    ("usersAffected", "UsersAffected", "value", 0),
    ("graphRequests", "GraphRequests", "value", 0),
    ("graphWrites", "GraphWrites", "value", 0),
    ("alerts", "AlertsJson", "json", []),
    ("warnings", "WarningsJson", "json", []),
    ("requestedNotTagged", "RequestedNotTaggedJson", "json", []),
    ("waiting", "WaitingJson", "json", None),
)


def run_to_entity(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's fields (those given) as its row's properties."""
    out: dict[str, Any] = {}
    for field, prop, kind, _ in RUN_FIELDS:
        if field not in run:
            continue
        value = run[field]
        if kind == "text":
            out[prop] = clip(value or "")
        elif kind == "json":
            out[prop] = as_json(value)
        else:
            out[prop] = value
    return out


def run_from_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A run row as the run's fields (every one of RUN_FIELDS)."""
    out: dict[str, Any] = {}
    for field, prop, kind, default in RUN_FIELDS:
        value = entity.get(prop)
        if kind == "text":
            out[field] = value or default
        elif kind == "json":
            out[field] = json.loads(value) if value else default
        else:
            out[field] = default if value is None else value
    return out


@dataclass(frozen=True)
class Lease:
    acquired: bool
    holder: str  # who holds it now
    expires_at: Any
    taken_over_from: str | None = None  # the holder of an expired lease we took over
    generation: int = 0  # fencing token: +1 at every acquisition, kept by renewals


class RunRowChanged(Exception):
    """A conditional run-row write found the row changed by someone else (it is not ours now)."""


def tenant_key_range(tenant_id: str) -> tuple[str, str]:
    """[low, high) of a tenant's PartitionKeys: "<id>:" up to "<id>;" (';' sorts right after
    ':'), so a range query selects exactly that tenant's rows."""
    return f"{tenant_id}:", f"{tenant_id};"


class TenantTable:
    """One tenant's view of a shared table: every partition key gets "<tenant id>:" in front.

    Covers the TableClient calls the store makes. A query names its partition as @pk, or is kept
    to the tenant's key range (a query across partitions would otherwise read every tenant's
    rows). Entities read come back with the prefix taken off, so the store's code is the same for
    one tenant or many."""

    def __init__(self, inner: TableClient, tenant_id: str) -> None:
        self._inner = inner
        self._prefix, self._after = tenant_key_range(tenant_id)

    def _pk(self, pk: str) -> str:
        return self._prefix + pk

    def _in(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        return {**entity, "PartitionKey": self._pk(str(entity["PartitionKey"]))}

    def _out(self, entity: Any) -> Any:
        pk = entity.get("PartitionKey")
        if isinstance(pk, str) and pk.startswith(self._prefix):
            entity["PartitionKey"] = pk[len(self._prefix) :]  # keeps the entity's metadata (ETag)
        return entity

    def get_entity(self, partition_key: str, row_key: str, **kw: Any) -> Any:
        return self._out(self._inner.get_entity(self._pk(partition_key), row_key, **kw))

    def delete_entity(self, partition_key: str, row_key: str, **kw: Any) -> None:
        self._inner.delete_entity(self._pk(partition_key), row_key, **kw)

    def create_entity(self, entity: Mapping[str, Any], **kw: Any) -> Any:
        return self._inner.create_entity(self._in(entity), **kw)

    def upsert_entity(self, entity: Mapping[str, Any], **kw: Any) -> Any:
        return self._inner.upsert_entity(self._in(entity), **kw)

    def update_entity(self, entity: Mapping[str, Any], **kw: Any) -> Any:
        return self._inner.update_entity(self._in(entity), **kw)

    def submit_transaction(self, operations: Iterable[Any], **kw: Any) -> Any:
        ops = [(op[0], self._in(op[1]), *op[2:]) for op in operations]
        return self._inner.submit_transaction(ops, **kw)

    def query_entities(
        self, query_filter: str, *, parameters: dict[str, Any] | None = None, **kw: Any
    ) -> Iterator[Any]:
        params = dict(parameters or {})
        if "pk" in params and "PartitionKey eq @pk" in query_filter:
            params["pk"] = self._pk(str(params["pk"]))
        else:
            # Across partitions: bounded to this tenant's key range, so it can never read another
            # tenant's rows.
            if "PartitionKey" in query_filter or "_tlo" in params or "_thi" in params:
                raise ValueError(
                    f"a tenant's query names its partition only as @pk: {query_filter!r}"
                )
            # Spaces around the inner filter: the SDK reads a parameter name up to the next space.
            query_filter = f"PartitionKey ge @_tlo and PartitionKey lt @_thi and ( {query_filter} )"
            params.update(_tlo=self._prefix, _thi=self._after)
        for entity in self._inner.query_entities(query_filter, parameters=params, **kw):
            yield self._out(entity)


class TenantsTable:
    """`<prefix>tenants`: the records of every tenant the deployment enforces (one row each, the
    record as JSON in `Record`; shared.tenants reads and validates it). Not tenant-scoped: it is
    the registry of the tenants themselves."""

    PARTITION = "tenant"

    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self._service = service
        self.name = f"{prefix}tenants"

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantsTable:
        return cls(table_service(settings), settings.table_prefix)

    def _table(self) -> TableClient:
        return self._service.get_table_client(self.name)

    def ensure(self) -> None:
        try:
            self._service.create_table(self.name)
        except ResourceExistsError:
            pass

    def list(self) -> list[dict[str, Any]]:
        try:
            rows = self._table().query_entities(
                "PartitionKey eq @pk", parameters={"pk": self.PARTITION}
            )
            return [dict(r) for r in rows]
        except ResourceNotFoundError:
            return []  # the table is made on the first `tenants add`: no tenants yet

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        try:
            return dict(self._table().get_entity(self.PARTITION, tenant_id))
        except ResourceNotFoundError:
            return None

    def put(self, tenant_id: str, properties: Mapping[str, Any]) -> None:
        self.ensure()
        row = {"PartitionKey": self.PARTITION, "RowKey": tenant_id, **properties}
        self._table().upsert_entity(row, mode=UpdateMode.REPLACE)

    def delete(self, tenant_id: str) -> None:
        try:
            self._table().delete_entity(self.PARTITION, tenant_id)
        except ResourceNotFoundError:
            pass


class TableStore:
    def __init__(
        self, service: TableServiceClient, prefix: str, tenant_id: str | None = None
    ) -> None:
        self._service = service
        # None: the implicit tenant of a single-tenant install (unprefixed partitions).
        self.tenant_id = tenant_id.lower() if tenant_id else None
        self._prefix = prefix
        self.names = {
            "runs": f"{prefix}runs",
            "groups": f"{prefix}groupresults",
            "skus": f"{prefix}skusnapshots",
            "alerts": f"{prefix}alerts",
            "removals": f"{prefix}removals",
            "disabled": f"{prefix}disabledseen",
            "waiting": f"{prefix}waiting",
            "subscriptions": f"{prefix}subscriptions",
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> TableStore:
        return cls(table_service(settings), settings.table_prefix, settings.tenant_id)

    def for_tenant(self, tenant_id: str | None) -> TableStore:
        """The same tables seen as another tenant's (None: the implicit tenant)."""
        return TableStore(self._service, self._prefix, tenant_id)

    def table(self, kind: str) -> Any:
        client = self._service.get_table_client(self.names[kind])
        return TenantTable(client, self.tenant_id) if self.tenant_id else client

    def purge_tenant(self) -> int:
        """Offboarding: delete every row of this store's tenant in every table; returns how many.
        Only a named tenant's: the implicit tenant's rows carry no prefix to select them by."""
        if not self.tenant_id:
            raise ValueError("only a named tenant's rows can be purged")
        low, high = tenant_key_range(self.tenant_id)
        deleted = 0
        for name in self.names.values():
            client = self._service.get_table_client(name)
            try:
                rows = list(
                    client.query_entities(
                        "PartitionKey ge @low and PartitionKey lt @high",
                        parameters={"low": low, "high": high},
                        select=["PartitionKey", "RowKey"],
                    )
                )
            except ResourceNotFoundError:
                continue
            by_partition: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_partition.setdefault(row["PartitionKey"], []).append(dict(row))
            for entities in by_partition.values():
                for chunk in _chunks(entities, BATCH_LIMIT):
                    client.submit_transaction([(TransactionOperation.DELETE, e) for e in chunk])
                    deleted += len(chunk)
        return deleted

    def ensure_tables(self) -> None:
        for name in self.names.values():
            try:
                self._service.create_table(name)
            except ResourceExistsError:
                pass

    # -- runs -------------------------------------------------------------------------------

    def put_run(self, entity: dict[str, Any], etag: str | None = None) -> str:
        """Write a run row; returns its new ETag. With `etag`: only if nobody changed the row since
        (RunRowChanged otherwise), so a run's late record cannot overwrite another run's closure."""
        row = {"PartitionKey": RUN_PARTITION, "RowKey": run_row_key(entity["RunId"]), **entity}
        table = self.table("runs")
        if etag is None:
            meta = table.upsert_entity(row, mode=UpdateMode.REPLACE)
        else:
            try:
                meta = table.update_entity(
                    row,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError) as exc:
                raise RunRowChanged(entity["RunId"]) from exc
        return str(meta.get("etag", ""))

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

    def last_member_counts(self, runs: int = 5) -> dict[str, int]:
        """Each group's direct member count (users + nested groups) as the latest of the last
        `runs` runs that read it recorded; a group those runs could not read has no count.

        Used only to order the member reads (largest first), never as a fact about the group."""
        counts: dict[str, int] = {}
        for run in self.list_runs(runs):
            if run.get("Status") in ("running", "queued"):
                continue
            for row in self.get_group_results(str(run.get("RunId"))):
                if row.get("Kind") != "group" or row.get("Decision") == "unknown":
                    continue  # an unread group's count of 0 is not its size
                gid = str(row.get("GroupId") or "").lower()
                if gid and gid not in counts:
                    counts[gid] = int(row.get("MemberCount") or 0) + int(
                        row.get("NestedGroupCount") or 0
                    )
        return counts

    def put_sku_snapshots(self, run_id: str, rows: Iterable[dict[str, Any]]) -> None:
        table = self.table("skus")
        for row in rows:  # one partition per SKU: no cross-partition transaction
            table.upsert_entity({"RowKey": run_id, **row}, mode=UpdateMode.REPLACE)

    def sku_history(self, sku_id: str, limit: int = 90) -> list[dict[str, Any]]:
        rows = self.table("skus").query_entities("PartitionKey eq @pk", parameters={"pk": sku_id})
        out = [dict(r) for r in rows]
        return out[-limit:]

    # -- subscriptions (GET /directory/subscriptions, per run) ---------------------------------

    def put_subscriptions(self, run_id: str, rows: Iterable[dict[str, Any]]) -> None:
        """One row per subscription the run read, in the subscription's partition (its history)."""
        table = self.table("subscriptions")
        for row in rows:
            table.upsert_entity(
                {"PartitionKey": row["SubscriptionId"], "RowKey": run_id, **row},
                mode=UpdateMode.REPLACE,
            )

    def run_subscriptions(self, run_id: str) -> list[dict[str, Any]]:
        """The subscriptions one run read (a query across partitions: the table is small, a few
        rows per subscription per run)."""
        rows = self.table("subscriptions").query_entities(
            "RowKey eq @rk", parameters={"rk": run_id}
        )
        return [dict(r) for r in rows]

    def subscription_history(self, subscription_id: str, since: datetime) -> list[dict[str, Any]]:
        """What earlier runs read of one subscription, since a time."""
        rows = self.table("subscriptions").query_entities(
            "PartitionKey eq @pk and At ge @since",
            parameters={"pk": subscription_id, "since": since.isoformat()},
        )
        return [dict(r) for r in rows]

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
        entity["ClaimedAt"] = datetime.now(UTC).isoformat()  # the worker's start, for liveness
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

    # -- the run lease: one apply run per tenant at a time; every run's liveness row ---------

    def acquire_lease(
        self, holder: str, ttl: timedelta, now: datetime, name: str = LEASE_ROW
    ) -> Lease:
        """Take the lease row `name` for `holder`, or say who holds it.

        ETag-conditional, so two runs starting together cannot both win; an expired lease (a run
        that stopped without releasing it) is taken over, and its holder is reported. Each
        acquisition raises the row's Generation: the fencing token the holder checks later.
        """
        table = self.table("runs")
        row = {
            "PartitionKey": LEASE_PARTITION,
            "RowKey": name,
            "Holder": holder,
            "AcquiredAt": now,
            "ExpiresAt": now + ttl,
            "Generation": 1,
        }
        try:
            current = table.get_entity(LEASE_PARTITION, name)
        except ResourceNotFoundError:
            try:
                table.create_entity(row)
                return Lease(True, holder, now + ttl, generation=1)
            except ResourceExistsError:
                current = table.get_entity(LEASE_PARTITION, name)
        expires = current.get("ExpiresAt")
        previous = current.get("Holder")
        if previous != holder and isinstance(expires, datetime) and expires > now:
            return Lease(False, str(previous), expires)
        generation = int(current.get("Generation") or 0) + 1
        row["Generation"] = generation
        try:  # conditional on the entity we judged expired: nobody renewed it meanwhile
            table.update_entity(
                row,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:  # another run took it between our read and write
            taken = table.get_entity(LEASE_PARTITION, name)
            return Lease(False, str(taken.get("Holder")), taken.get("ExpiresAt"))
        return Lease(
            True,
            holder,
            now + ttl,
            str(previous) if previous != holder else None,
            generation,
        )

    def renew_lease(
        self,
        holder: str,
        generation: int,
        ttl: timedelta,
        now: datetime,
        name: str = LEASE_ROW,
    ) -> datetime | None:
        """Push the lease's expiry out if `holder` still holds that generation of it.

        Returns the new expiry, or None when the lease was taken over (or removed): the holder
        has lost it and must stop writing. An expired lease nobody took yet is still ours.
        """
        table = self.table("runs")
        try:
            current = table.get_entity(LEASE_PARTITION, name)
        except ResourceNotFoundError:
            return None
        if current.get("Holder") != holder or int(current.get("Generation") or 0) != generation:
            return None
        current["ExpiresAt"] = now + ttl
        current["RenewedAt"] = now
        try:
            table.update_entity(
                current,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None  # changed between our read and write: only a takeover changes it
        return now + ttl

    def lease_state(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.table("runs").get_entity(LEASE_PARTITION, name))
        except ResourceNotFoundError:
            return None

    def release_lease(self, holder: str, name: str = LEASE_ROW) -> None:
        """Give the lease back if `holder` still holds it (never someone else's)."""
        table = self.table("runs")
        try:
            entity = table.get_entity(LEASE_PARTITION, name)
        except ResourceNotFoundError:
            return
        if entity.get("Holder") != holder:
            return
        try:
            table.delete_entity(
                LEASE_PARTITION,
                name,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # taken over after expiry, or already gone: not ours to delete

    def note_poisoned(self, run_id: str, queue: str, note: str) -> None:
        """Say on the run's row that its message goes to the poison queue `queue`; a run still
        open is closed as failed (nothing will run it now)."""
        table = self.table("runs")
        try:
            entity = table.get_entity(RUN_PARTITION, run_row_key(run_id))
        except (ResourceNotFoundError, ValueError):
            return
        error = str(entity.get("Error") or "")
        patch = {
            "PartitionKey": RUN_PARTITION,
            "RowKey": entity["RowKey"],
            "PoisonQueue": queue,
            "Error": clip(f"{error} {note}".strip()),
        }
        if entity.get("Status") in ("queued", "running"):
            patch.update(Status="failed", FinishedAt=datetime.now(UTC).isoformat())
        table.update_entity(patch, mode=UpdateMode.MERGE)

    def run_is_alive(self, run_id: str, now: datetime) -> bool:
        """True while the run's liveness row is unexpired (its worker renews it while it works)."""
        state = self.lease_state(LIVENESS_PREFIX + run_id)
        expires = state.get("ExpiresAt") if state else None
        return isinstance(expires, datetime) and expires > now

    def close_run(
        self, run_id: str, expect: tuple[str, ...], error: str, status: str = "failed"
    ) -> bool:
        """Mark a run failed with `error` if its status is one of `expect` (ETag-conditional:
        a run that records itself meanwhile keeps its own record). True if it was closed.
        status "refused": the run was not started, `error` is why (its refusedReason)."""
        table = self.table("runs")
        try:
            entity = table.get_entity(RUN_PARTITION, run_row_key(run_id))
        except (ResourceNotFoundError, ValueError):
            return False
        if entity.get("Status") not in expect:
            return False
        entity["Status"] = status
        entity["RefusedReason" if status == "refused" else "Error"] = clip(error)
        entity["FinishedAt"] = entity.get("FinishedAt") or datetime.now(UTC).isoformat()
        try:
            table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    # -- removals (shared/removals.py): per-user rows, first seen disabled, the baseline -------

    def put_removals(self, run_id: str, rows: Iterable[dict[str, Any]]) -> None:
        entities = [{"PartitionKey": run_id, **row} for row in rows]
        self._submit_batches(self.table("removals"), entities)

    def get_removals(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.table("removals").query_entities(
            "PartitionKey eq @pk", parameters={"pk": run_id}
        )
        return [dict(r) for r in rows]

    def disabled_first_seen(self) -> dict[str, datetime]:
        """User id -> when a run first saw the account disabled in a tagged group."""
        rows = self.table("disabled").query_entities(
            "PartitionKey eq @pk", parameters={"pk": DISABLED_PARTITION}
        )
        out = {}
        for r in rows:
            seen = r.get("FirstSeen")
            if isinstance(seen, datetime):
                out[str(r["RowKey"])] = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
        return out

    def note_disabled(
        self, seen: dict[str, tuple[datetime, str]], forget: Iterable[str] = ()
    ) -> None:
        """Record users first seen disabled now (id -> (time, UPN)); drop rows of `forget`."""
        table = self.table("disabled")
        ops: list[dict[str, Any]] = [
            {"PartitionKey": DISABLED_PARTITION, "RowKey": uid, "FirstSeen": at, "Upn": clip(upn)}
            for uid, (at, upn) in seen.items()
        ]
        self._submit_batches(table, ops)
        for uid in forget:
            try:
                table.delete_entity(DISABLED_PARTITION, uid)
            except ResourceNotFoundError:
                pass

    def last_successful_run(self, before_run_id: str) -> dict[str, Any] | None:
        """The newest run that succeeded, other than `before_run_id` (the baseline)."""
        rows = self.table("runs").query_entities(
            "PartitionKey eq @pk and Status eq @status",
            parameters={"pk": RUN_PARTITION, "status": "succeeded"},
            results_per_page=5,
        )
        for row in rows:  # newest first (RowKey order)
            if row.get("RunId") != before_run_id:
                return dict(row)
        return None

    # -- the waiting list (shared/waiting.py) ---------------------------------------------------

    def _since_rows(self) -> tuple[dict[str, datetime], list[str], int]:
        """The first-seen dates, every other RowKey in their partition (the current set's chunks,
        an older set's, or rows one per person as earlier versions wrote them), and the current
        set's generation (0: none yet).

        The dates are kept packed (WAITING_SINCE_PER_CHUNK to an entity) under a pointer row
        naming the current set: one entity per person cost a tenant-sized list tens of
        thousands of writes per run. A chunk missing from the set is an error, never fewer
        people (they would all start waiting again from today)."""
        rows = list(
            self.table("waiting").query_entities(
                "PartitionKey eq @pk", parameters={"pk": WAITING_SINCE_PARTITION}
            )
        )
        keys = [str(r["RowKey"]) for r in rows if r["RowKey"] != _SINCE_POINTER]
        pointer = next((r for r in rows if r["RowKey"] == _SINCE_POINTER), None)
        if pointer is None:  # none written by this version yet: the rows one per person
            out: dict[str, datetime] = {}
            for r in rows:
                since = r.get("Since")
                if isinstance(since, datetime):
                    out[str(r["RowKey"])] = since if since.tzinfo else since.replace(tzinfo=UTC)
            return out, keys, 0
        generation = int(pointer["Generation"])
        prefix = _since_chunk_prefix(generation)
        chunks = sorted(
            (r for r in rows if str(r["RowKey"]).startswith(prefix)), key=lambda r: r["RowKey"]
        )
        if len(chunks) != int(pointer["Chunks"]):
            raise RuntimeError(
                f"the waiting list's first-seen dates are incomplete: {len(chunks)} of "
                f"{pointer['Chunks']} parts of set {generation} found"
            )
        dates: dict[str, datetime] = {}
        parsed: dict[str, datetime] = {}  # most people share a date (first seen by one run)
        for chunk in chunks:
            for key, iso_since in unpack_json(chunk).items():
                if (when := parsed.get(iso_since)) is None:
                    when = parsed[iso_since] = datetime.fromisoformat(iso_since)
                dates[key] = when
        return dates, keys, generation

    def waiting_since(self) -> dict[str, datetime]:
        """Waiter key -> the first run that saw them waiting (or Graph's earlier date)."""
        return self._since_rows()[0]

    def replace_waiting_since(self, keep: dict[str, datetime]) -> None:
        """Keep exactly these first-seen dates: people who left the list lose theirs.

        Writes a new set, then points at it, then deletes the rest: a run that dies half way
        leaves the old set current. An unchanged set writes nothing."""
        table = self.table("waiting")
        existing, others, generation = self._since_rows()
        current = _since_chunk_prefix(generation)
        if existing == keep and all(k.startswith(current) for k in others):
            return
        generation += 1
        prefix = _since_chunk_prefix(generation)
        keys = sorted(keep)
        # By object, not value: equal times in other offsets are written as they are.
        text: dict[int, str] = {}
        for when in keep.values():
            if id(when) not in text:
                text[id(when)] = when.isoformat()
        entities = (
            {
                "PartitionKey": WAITING_SINCE_PARTITION,
                "RowKey": f"{prefix}{n:05d}",
                **pack_json({k: text[id(keep[k])] for k in part}),
            }
            for n, part in enumerate(_chunks(keys, WAITING_SINCE_PER_CHUNK))
        )
        _submit_packed(table, entities)
        table.upsert_entity(
            {
                "PartitionKey": WAITING_SINCE_PARTITION,
                "RowKey": _SINCE_POINTER,
                "Generation": generation,
                "Chunks": -(-len(keys) // WAITING_SINCE_PER_CHUNK),
            },
            mode=UpdateMode.REPLACE,
        )
        pk = WAITING_SINCE_PARTITION
        old: list[tuple[TransactionOperation, dict[str, Any], dict[str, Any]]] = [
            (TransactionOperation.DELETE, {"PartitionKey": pk, "RowKey": k}, {}) for k in others
        ]
        for i in range(0, len(old), BATCH_LIMIT):
            table.submit_transaction(old[i : i + BATCH_LIMIT])

    def put_waiting_list(
        self, run_id: str, head: dict[str, Any], items: list[dict[str, Any]], latest: bool
    ) -> None:
        """A run's list: the items in their order (WAITING_ITEMS_PER_CHUNK to an entity), then
        the head row; `latest` points the API at it (unless a newer run's list is already the
        latest)."""
        entities = (  # packed as they are sent: the JSON of a whole list is not held at once
            {
                "PartitionKey": run_id,
                "RowKey": _items_chunk_key(n),
                "First": n * WAITING_ITEMS_PER_CHUNK + 1,
                "Count": len(part),
                "Total": len(items),
                **pack_json(part),
            }
            for n, part in enumerate(_chunks(items, WAITING_ITEMS_PER_CHUNK))
        )
        table = self.table("waiting")
        _submit_packed(table, entities)
        table.upsert_entity(
            {"PartitionKey": run_id, "RowKey": "head", **head}, mode=UpdateMode.REPLACE
        )
        if not latest:
            return
        current = self.latest_waiting_run()
        if current is None or current <= run_id:  # run ids start with their UTC start time
            table.upsert_entity(
                {"PartitionKey": "latest", "RowKey": "list", "RunId": run_id},
                mode=UpdateMode.REPLACE,
            )

    def latest_waiting_run(self) -> str | None:
        try:
            row = self.table("waiting").get_entity("latest", "list")
        except ResourceNotFoundError:
            return None
        return str(row.get("RunId") or "") or None

    def waiting_head(self, run_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.table("waiting").get_entity(run_id, "head"))
        except ResourceNotFoundError:
            return None

    def waiting_items(
        self, run_id: str, limit: int | None = None, after: int = 0
    ) -> tuple[list[dict[str, Any]], bool]:
        """Items after position `after`, at most `limit`; True if more. Each item is a row as
        one per person used to be (RowKey waiting_item_key(position), the item's properties),
        read from the chunks that hold those positions. A chunk missing in the run's list is an
        error, never a shorter list."""
        first = after // WAITING_ITEMS_PER_CHUNK
        pages = None if limit is None else limit // WAITING_ITEMS_PER_CHUNK + 2
        chunks = self.table("waiting").query_entities(
            "PartitionKey eq @pk and RowKey ge @from and RowKey lt @end",
            parameters={"pk": run_id, "from": _items_chunk_key(first), "end": "items-~"},
            results_per_page=pages,
        )
        out: list[dict[str, Any]] = []
        expect = first * WAITING_ITEMS_PER_CHUNK + 1
        total: int | None = None
        for chunk in chunks:
            total = int(chunk["Total"])
            if int(chunk["First"]) != expect:
                raise RuntimeError(
                    f"run {run_id}'s waiting list is incomplete: positions {expect}.."
                    f"{int(chunk['First']) - 1} are missing"
                )
            expect += int(chunk["Count"])
            for i, item in enumerate(unpack_json(chunk)):
                position = int(chunk["First"]) + i
                if position > after:
                    out.append({"RowKey": waiting_item_key(position), **item})
            if limit is not None and len(out) > limit:
                break
        else:
            if total is not None and expect - 1 != total:
                raise RuntimeError(
                    f"run {run_id}'s waiting list is incomplete: {expect - 1} of {total} read"
                )
        if total is None:  # no chunk there: past the end, or a list one row per person
            return self._waiting_items_one_per_row(run_id, limit, after)
        if limit is None:
            return out, False
        return out[:limit], len(out) > limit

    def _waiting_items_one_per_row(
        self, run_id: str, limit: int | None, after: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """A list as earlier versions wrote it: one row per person."""
        rows = self.table("waiting").query_entities(
            "PartitionKey eq @pk and RowKey gt @after and RowKey lt @end",
            parameters={"pk": run_id, "after": waiting_item_key(after), "end": "item-~"},
            results_per_page=(limit + 1) if limit else None,
        )
        out: list[dict[str, Any]] = []
        for row in rows:
            out.append(dict(row))
            if limit is not None and len(out) > limit:
                break
        if limit is None:
            return out, False
        return out[:limit], len(out) > limit


def waiting_item_key(position: int) -> str:
    return f"item-{position:07d}"


# The waiting list and its first-seen dates are stored packed: zlib-compressed JSON in binary
# properties (64 KiB each), a chunk to an entity. JSON of a list repeats its keys, group names and
# SKUs, so it compresses about tenfold: the M list's 10 MB of JSON is ~1 MB to send.
WAITING_ITEMS_PER_CHUNK = 100
WAITING_SINCE_PER_CHUNK = 1000
_PACKED_PART_BYTES = 60_000  # a binary property holds 64 KiB
_PACKED_PARTS = 15  # at most 900,000 bytes: an entity holds 1 MiB
# A transaction's body may hold 4 MiB, but the SDK keeps several copies of it while sending.
_PACKED_BYTES_PER_TRANSACTION = 1_000_000
_SINCE_POINTER = "set"  # RowKeys of first-seen sets start "set-"; a waiter key is two ids


def _since_chunk_prefix(generation: int) -> str:
    return f"set-{generation:06d}-"


def _items_chunk_key(index: int) -> str:
    return f"items-{index:05d}"


# orjson writes JSON several times faster than json.dumps, and zlib level 1 compresses about
# twice as fast as level 6 for ~10% more bytes; any level decompresses alike (older rows too).
_PACK_LEVEL = 1
_PACK_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def pack_json(value: Any) -> dict[str, Any]:
    """`value` as the properties Parts, Data00, Data01, ...: its JSON, zlib-compressed (for a
    value too long for one string property: the waiting list, a run's removal reports).
    Anything not plain JSON (a datetime, say) is written as its str(), as json.dumps did.
    ValueError if even packed it exceeds an entity."""
    data = zlib.compress(orjson.dumps(value, default=str, option=_PACK_OPTIONS), _PACK_LEVEL)
    parts = [data[i : i + _PACKED_PART_BYTES] for i in range(0, len(data), _PACKED_PART_BYTES)]
    if len(parts) > _PACKED_PARTS:
        raise ValueError(f"{len(data)} compressed bytes exceed a Table entity's 1 MiB")
    return {"Parts": len(parts), **{f"Data{i:02d}": p for i, p in enumerate(parts)}}


def unpack_json(entity: Mapping[str, Any]) -> Any:
    """pack_json reversed; RuntimeError if a part is missing."""
    count = int(entity["Parts"])
    pieces = [entity.get(f"Data{i:02d}") for i in range(count)]
    if not all(isinstance(p, bytes) for p in pieces):
        raise RuntimeError(f"packed row {entity.get('RowKey')} is missing parts")
    data = zlib.decompress(b"".join(p for p in pieces if isinstance(p, bytes)))
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # what json.dumps may have written and orjson refuses (NaN)
        return json.loads(data)


def _submit_packed(table: TableClient, entities: Iterable[dict[str, Any]]) -> None:
    """Upserts in transactions of at most BATCH_LIMIT entities and ~1 MB of packed data."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entity in entities:
        weight = sum(len(v) for k, v in entity.items() if k.startswith("Data"))
        if batch and (len(batch) >= BATCH_LIMIT or size + weight > _PACKED_BYTES_PER_TRANSACTION):
            _upsert_all(table, batch)
            batch, size = [], 0
        batch.append(entity)
        size += weight
    if batch:
        _upsert_all(table, batch)


def _upsert_all(table: TableClient, entities: list[dict[str, Any]]) -> None:
    table.submit_transaction(
        [(TransactionOperation.UPSERT, e, {"mode": UpdateMode.REPLACE}) for e in entities]
    )


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
