"""One GUID pattern, one loopback test, one table (de)serialisation: the shared helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from localdev.services import ROOT
from shared.common import GUID, GUID_RE, is_loopback_host
from shared.store import (
    MAX_STRING_CHARS,
    from_properties,
    iso,
    parse_time,
    run_from_entity,
    run_to_entity,
    to_properties,
)
from simulator import odata, tenant


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for v in node.values() for p in _patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []


def test_the_policy_schema_the_engine_and_the_simulator_use_the_same_guid_pattern():
    schema = json.loads((ROOT / "policy" / "licensing-policy.schema.json").read_text())
    # JSON Schema patterns are ECMA-262, which has no \Z: the schema anchors with $.
    assert f"^{GUID}$" in _patterns(schema), "explicit group ids in the policy"
    assert GUID_RE.pattern == f"^{GUID}\\Z"
    assert tenant.GUID_RE is GUID_RE
    assert "guid" in odata._TOKEN_RE.groupindex
    good, bad = "0B1C2D3E-0000-4000-8000-000000000001", "0b1c2d3e-0000-4000-8000-00000000001"
    assert GUID_RE.match(good) and not GUID_RE.match(bad)


def test_loopback_hosts():
    assert is_loopback_host("localhost") and is_loopback_host("127.0.0.9")
    assert is_loopback_host("::1")
    assert not is_loopback_host("example.com") and not is_loopback_host("10.0.0.1")


def test_times_read_back_from_datetimes_or_text_in_utc_and_absent_is_none():
    aware = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    assert parse_time(aware) == aware
    assert parse_time(aware.replace(tzinfo=None)) == aware, "naive is UTC"
    assert parse_time("2026-11-27T02:00:00+00:00") == aware
    assert parse_time("") is None and parse_time(None) is None and parse_time("soon") is None
    assert iso("2026-11-27T02:00:00") == "2026-11-27T02:00:00+00:00"
    assert iso(None) is None


def test_a_run_row_reads_back_as_the_fields_it_was_written_from():
    run = {
        "runId": "20261127T020000Z-a1b2c3",
        "mode": "apply",
        "trigger": "http",
        "requestedBy": "kim@contoso.com",
        "status": "succeeded",
        "startedAt": "2026-11-27T02:00:00+00:00",
        "finishedAt": "2026-11-27T02:01:00+00:00",
        "error": None,
        "counts": {"assign": 2},
        "alerts": [{"key": "sku-low:x"}],
    }
    back = run_from_entity(run_to_entity(run))
    assert {k: back[k] for k in run} == run
    assert back["refusedReason"] is None and back["warnings"] == [] and back["groupsChanged"] == 0
    assert run_to_entity({"error": "x" * (MAX_STRING_CHARS + 5)})["Error"].endswith("chars]")


def test_result_rows_round_trip_and_a_clipped_json_value_stays_text():
    row = {"groupId": "g", "seats": 3, "notes": ["a", "b"], "reason": "fine", "ok": True}
    assert from_properties({"PartitionKey": "r", **to_properties(row)}) == row
    assert from_properties({"NotesJson": '["a", "b'}) == {"notes": '["a", "b'}
