"""Run ids sort newest first in the runs table, also for runs started within the same second
(a plan run of a small tenant takes well under a second)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.api import RUN_ID_RE
from shared.store import new_run_id, run_row_key


def test_runs_started_in_the_same_second_are_listed_newest_first() -> None:
    start = datetime(2026, 12, 3, 12, 35, 8, 1_000, tzinfo=UTC)
    ids = [new_run_id(start + timedelta(milliseconds=ms)) for ms in (0, 1, 250, 998)]
    assert all(RUN_ID_RE.match(i) for i in ids)
    assert len({i.split("-")[0] for i in ids}) == 1  # the same second
    listed = sorted(ids, key=run_row_key)  # the runs table's order (RowKey ascending)
    assert listed == ids[::-1]


def test_a_later_second_still_sorts_first() -> None:
    a = new_run_id(datetime(2026, 12, 3, 12, 35, 8, 999_000, tzinfo=UTC))
    b = new_run_id(datetime(2026, 12, 3, 12, 35, 9, 0, tzinfo=UTC))
    assert sorted([a, b], key=run_row_key) == [b, a]
