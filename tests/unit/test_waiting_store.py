"""How the waiting list is kept in Table Storage: what a run costs to record it, and that what is
read back is exactly what was written (shared/store.py, the waiting section).

Each run records its whole list and the first-seen dates. Written as one entity per person, a
tenant-sized list (23,000 people on the M benchmark tenant) cost 47,000 entity writes per run:
minutes of Table Storage work (Azurite spends O(partition) per write, so it was quadratic there),
for a plan run whose Graph reads take seconds. These tests count the work on an in-memory Table
service that also enforces the service's size limits, so a packed format cannot cheat on them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TransactionOperation

from shared.store import WAITING_SINCE_PARTITION, TableStore, waiting_item_key
from shared.waiting import from_row, to_row

NOW = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
RUN = "20261203T060000Z-abcdef"

# Azure Table Storage limits (learn.microsoft.com, "Understanding the Table service data model").
MAX_PROPERTY_CHARS = 32 * 1024  # a string property: 64 KiB of UTF-16
MAX_BINARY_BYTES = 64 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTIES = 252
MAX_TRANSACTION_OPS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024

_CLAUSE = re.compile(r"^(\w+) (eq|ne|gt|ge|lt|le) @(\w+)$")
_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _entity_bytes(entity: dict[str, Any]) -> int:
    size = 0
    for name, value in entity.items():
        size += 2 * len(name) + 8
        if isinstance(value, str):
            size += 2 * len(value)
        else:
            size += len(value) if isinstance(value, bytes) else 8
    return size


def _wire(value: Any) -> str:
    """How a value goes on the wire: bytes as base64 (Edm.Binary)."""
    return base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)


class FakeTable:
    """What the store uses of a TableClient, in memory, counting requests and entities touched."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.counts = counts

    def _check(self, entity: dict[str, Any]) -> None:
        custom = [k for k in entity if k not in ("PartitionKey", "RowKey")]
        assert len(custom) <= MAX_PROPERTIES, f"{len(custom)} properties"
        for name, value in entity.items():
            if isinstance(value, str):
                assert len(value) <= MAX_PROPERTY_CHARS, f"{name}: {len(value)} chars"
            if isinstance(value, bytes):
                assert len(value) <= MAX_BINARY_BYTES, f"{name}: {len(value)} bytes"
        assert _entity_bytes(entity) <= MAX_ENTITY_BYTES, f"entity {_entity_bytes(entity)} B"

    def _write(self, entity: dict[str, Any]) -> None:
        self._check(entity)
        self.counts["entity_writes"] += 1
        self.rows[(entity["PartitionKey"], entity["RowKey"])] = dict(entity)

    def upsert_entity(self, entity: dict[str, Any], mode: Any = None) -> dict[str, Any]:
        self.counts["requests"] += 1
        self._write(entity)
        return {"etag": "x"}

    def submit_transaction(self, operations: list[Any]) -> list[dict[str, Any]]:
        self.counts["requests"] += 1
        ops = list(operations)
        assert 0 < len(ops) <= MAX_TRANSACTION_OPS, f"{len(ops)} operations in a transaction"
        assert len({op[1]["PartitionKey"] for op in ops}) == 1, "one partition per transaction"
        body = sum(len(json.dumps(op[1], default=_wire)) for op in ops)
        assert body <= MAX_TRANSACTION_BYTES, f"transaction of {body} bytes"
        for op in ops:
            kind, entity = op[0], op[1]
            if kind == TransactionOperation.DELETE:
                self.counts["entity_writes"] += 1
                self.rows.pop((entity["PartitionKey"], entity["RowKey"]), None)
            else:
                self._write(entity)
        return [{} for _ in ops]

    def delete_entity(self, partition_key: str, row_key: str) -> None:
        self.counts["requests"] += 1
        self.counts["entity_writes"] += 1
        if self.rows.pop((partition_key, row_key), None) is None:
            raise ResourceNotFoundError("not found")

    def get_entity(self, partition_key: str, row_key: str) -> dict[str, Any]:
        self.counts["requests"] += 1
        row = self.rows.get((partition_key, row_key))
        if row is None:
            raise ResourceNotFoundError("not found")
        return dict(row)

    def query_entities(
        self,
        query_filter: str,
        parameters: dict[str, Any] | None = None,
        results_per_page: int | None = None,
        **_: Any,
    ) -> Iterator[dict[str, Any]]:
        params = parameters or {}
        clauses = []
        for part in query_filter.split(" and "):
            m = _CLAUSE.match(part.strip())
            assert m, f"the fake does not understand {part!r}"
            clauses.append((m.group(1), _OPS[m.group(2)], params[m.group(3)]))
        found = sorted(
            (r for r in self.rows.values() if all(op(r.get(f), v) for f, op, v in clauses)),
            key=lambda r: (r["PartitionKey"], r["RowKey"]),
        )
        page = results_per_page or 1000
        for i, row in enumerate(found):
            if i % page == 0:
                self.counts["requests"] += 1  # each page is a round trip
            self.counts["entities_read"] += 1
            yield dict(row)


class FakeService:
    def __init__(self) -> None:
        self.counts = {"requests": 0, "entity_writes": 0, "entities_read": 0}
        self.tables: dict[str, FakeTable] = {}

    def get_table_client(self, name: str) -> FakeTable:
        return self.tables.setdefault(name, FakeTable(self.counts))

    def create_table(self, name: str) -> None:
        self.tables.setdefault(name, FakeTable(self.counts))


def _store() -> tuple[TableStore, FakeService]:
    service = FakeService()
    return TableStore(service, "t"), service  # type: ignore[arg-type]


def _item(n: int, skus: int = 2) -> dict[str, Any]:
    """A waiting person as record_waiting stores them (waiting.to_row of entry_json)."""
    return to_row(
        {
            "userId": f"{n:08d}-0000-4000-8000-000000000000",
            "userPrincipalName": f"given.surname{n}@contoso-sim.onmicrosoft.com",
            "groupId": "0000aaaa-0000-4000-8000-000000000000",
            "group": f"Department {n % 40} — Ünïcode",
            "skus": [
                {
                    "skuId": f"{k:08d}-1111-4000-8000-000000000000",
                    "skuPartNumber": "ENTERPRISEPREMIUM",
                    "productName": "Office 365 E5 (ENTERPRISEPREMIUM)",
                }
                for k in range(skus)
            ],
            "reason": "CountViolation",
            "decision": "blocked-seats",
            "place": n % 7 or None,
            "seat": "waits",
            "since": (NOW - timedelta(days=n % 30)).isoformat(),
            "sinceSource": "graph",
        }
    )


def _record(store: TableStore, items: list[dict[str, Any]], run_id: str = RUN) -> None:
    """What shared/run.py record_waiting asks of the store for one run."""
    keep = {f"{i['UserId']}_{i['GroupId']}": datetime.fromisoformat(i["Since"]) for i in items}
    store.replace_waiting_since(keep)
    store.put_waiting_list(run_id, {"RunId": run_id, "SummaryJson": "{}"}, items, True)


def test_recording_a_tenant_sized_waiting_list_takes_a_few_table_operations_not_one_per_person():
    store, service = _store()
    people = 5000
    _record(store, [_item(n) for n in range(people)])
    # One entity per person (twice: the first-seen date and the list item) made a plan run on
    # the M tenant spend minutes in Table Storage; packed, the cost is a few entities per
    # thousand people.
    assert service.counts["entity_writes"] <= people // 50, service.counts
    assert service.counts["requests"] <= 20, service.counts


def test_an_unchanged_rerun_rewrites_no_first_seen_dates():
    store, service = _store()
    items = [_item(n) for n in range(3000)]
    _record(store, items)
    before = service.counts["entity_writes"]
    store.replace_waiting_since(store.waiting_since())
    assert service.counts["entity_writes"] == before


def test_the_list_reads_back_in_order_with_its_positions_whole_and_page_by_page():
    store, _ = _store()
    items = [_item(n, skus=1 + n % 3) for n in range(1234)]
    _record(store, items)
    rows, more = store.waiting_items(RUN)
    assert not more
    assert [r["RowKey"] for r in rows] == [waiting_item_key(p) for p in range(1, 1235)]
    assert [from_row(r) for r in rows] == [from_row(i) for i in items]
    pages = [(1, 0), (100, 0), (100, 99), (100, 100), (37, 1190), (50, 1234), (7, 5000)]
    for limit, after in pages:
        page, more = store.waiting_items(RUN, limit, after)
        want = items[after : after + limit]
        assert [from_row(r) for r in page] == [from_row(i) for i in want], (limit, after)
        assert [r["RowKey"] for r in page] == [
            waiting_item_key(p) for p in range(after + 1, after + 1 + len(want))
        ]
        assert more == (after + limit < len(items)), (limit, after)


def test_an_empty_list_reads_back_empty_and_a_run_without_a_list_has_no_items():
    store, _ = _store()
    _record(store, [])
    assert store.waiting_items(RUN) == ([], False)
    assert store.waiting_since() == {}
    assert store.waiting_items("20261203T070000Z-000000", 10, 0) == ([], False)


def test_first_seen_dates_round_trip_and_people_who_left_lose_theirs():
    store, _ = _store()
    keep = {f"u{n}_g": NOW - timedelta(days=n, microseconds=n) for n in range(2500)}
    store.replace_waiting_since(keep)
    assert store.waiting_since() == keep
    fewer = {k: v for k, v in keep.items() if not k.startswith("u1")}
    store.replace_waiting_since(fewer)
    assert store.waiting_since() == fewer
    store.replace_waiting_since({})
    assert store.waiting_since() == {}


def test_a_missing_part_of_the_first_seen_dates_is_an_error_not_fewer_people():
    store, service = _store()
    store.replace_waiting_since({f"u{n}_g": NOW for n in range(2500)})
    table = service.tables["twaiting"]
    chunk = next(k for k in table.rows if k[0] == WAITING_SINCE_PARTITION and k[1] != "set")
    del table.rows[chunk]
    with pytest.raises(RuntimeError, match="first-seen"):
        store.waiting_since()


def test_a_missing_part_of_a_list_is_an_error_not_a_shorter_list():
    store, service = _store()
    _record(store, [_item(n) for n in range(450)])
    table = service.tables["twaiting"]
    chunks = sorted(k for k in table.rows if k[0] == RUN and k[1].startswith("items-"))
    del table.rows[chunks[1]]
    with pytest.raises(RuntimeError, match="waiting list"):
        store.waiting_items(RUN)
    with pytest.raises(RuntimeError, match="waiting list"):
        store.waiting_items(RUN, 10, 150)
    del table.rows[chunks[-1]]  # the last part: the list would end early
    with pytest.raises(RuntimeError, match="waiting list"):
        store.waiting_items(RUN, 100, 380)


def test_rows_written_one_per_person_by_earlier_versions_are_still_read_then_replaced():
    store, service = _store()
    table = service.get_table_client("twaiting")
    old = {f"u{n}_g": NOW - timedelta(days=n) for n in range(5)}
    for key, since in old.items():
        table.rows[(WAITING_SINCE_PARTITION, key)] = {
            "PartitionKey": WAITING_SINCE_PARTITION,
            "RowKey": key,
            "Since": since,
        }
    items = [_item(n) for n in range(3)]
    for pos, item in enumerate(items, 1):
        key = waiting_item_key(pos)
        table.rows[(RUN, key)] = {"PartitionKey": RUN, "RowKey": key, **item}
    assert store.waiting_since() == old
    rows, more = store.waiting_items(RUN)
    assert [from_row(r) for r in rows] == [from_row(i) for i in items] and not more
    page, more = store.waiting_items(RUN, 2, 0)
    assert [r["RowKey"] for r in page] == [waiting_item_key(1), waiting_item_key(2)] and more
    page, more = store.waiting_items(RUN, 2, 2)
    assert [r["RowKey"] for r in page] == [waiting_item_key(3)] and not more

    store.replace_waiting_since({"u1_g": old["u1_g"]})
    assert store.waiting_since() == {"u1_g": old["u1_g"]}
    assert not [k for k in table.rows if k[0] == WAITING_SINCE_PARTITION and "_" in k[1]]
