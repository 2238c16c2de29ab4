"""The waiting list: who waits for a seat, for which SKUs, in which group, since when, and their
group's place in the order the planner serves groups (docs/architecture.md "The waiting list").

`waiting_list` is pure (snapshot + plan + resolved policy -> WaitingList). `with_since` applies
the since-dates kept in Table Storage (first run that saw someone waiting) to it, also pure; the
run reads and writes those rows (shared/run.py `record_waiting`, shared/store.py). A run records
the dated list with `stored_list`: the same rows and counts in one pass.

Who waits:
- a member of a tagged group whose assignment of a SKU by that group is in `CountViolation`,
  and who does not hold the SKU from anywhere else;
- a member of a `blocked-seats` group who lacks one of its profile's SKUs (and is not in an error
  more seats will not fix).
A group whose members could not be read is listed in `unread_groups`: who waits there is unknown,
so the list is not complete (never an empty group).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from shared.model import Snapshot
from shared.names import sku_label
from shared.planner import SEAT_ERRORS, Decision, Plan
from shared.policy import ResolvedPolicy

# What the run does about a waiting person's seat.
SEAT_NONE = "waits"  # nothing this run: no seats, or the group is blocked
SEAT_PLANNED = "planned"  # the plan gives them a seat (a plan run: what apply would do)
SEAT_GIVEN = "given"  # this apply run wrote it (reprocess or the group's assignment)


@dataclass(frozen=True)
class WaitingSku:
    sku_id: str
    part_number: str

    @cached_property
    def label(self) -> str:  # one WaitingSku per SKU in a list (waiting_list): named once
        return sku_label(self.sku_id, self.part_number)


@dataclass(frozen=True)
class Waiter:
    user_id: str
    upn: str
    group_id: str
    group_name: str
    skus: tuple[WaitingSku, ...]
    reason: str  # "CountViolation" or "blocked-seats"
    decision: str  # the group's decision this run
    place: int | None  # the group's place in the planner's order (1 first); None: not served
    seat: str = SEAT_NONE
    graph_since: datetime | None = None  # earliest lastUpdatedDateTime of the states in error
    since: datetime | None = None  # set by with_since
    since_source: str = ""  # "graph" (lastUpdatedDateTime) or "first-seen" (a run saw it)

    @property
    def key(self) -> str:
        """Stable identity (ids only, safe as a Table RowKey)."""
        return f"{self.user_id}_{self.group_id}"

    @property
    def waiting(self) -> bool:
        return self.seat != SEAT_GIVEN


@dataclass(frozen=True)
class WaitingList:
    entries: tuple[Waiter, ...] = ()
    unread_groups: tuple[tuple[str, str], ...] = ()  # (id, name): members unknown
    limited_to: tuple[str, ...] = ()  # the run read only these groups
    read_group_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def complete(self) -> bool:
        return not self.unread_groups and not self.limited_to


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def waiting_list(
    snapshot: Snapshot,
    plan: Plan,
    policy: ResolvedPolicy,
    applied_group_ids: frozenset[str] | None = None,
    limited_to: tuple[str, ...] = (),
) -> WaitingList:
    """Who waits for a seat after this run's plan.

    applied_group_ids: groups whose writes this (apply) run made; None for a plan run (then a
    seat the plan gives is `planned`). Places come from the planner's own order
    (`Plan.service_order`), not re-derived here.
    """
    plans = {g.group_id: g for g in plan.groups}
    place = {gid: i + 1 for i, gid in enumerate(plan.service_order)}
    reprocessed_by = {uid: g.group_id for g in plan.groups for uid in g.reprocess_user_ids}
    part = {s.sku_id: s.part_number for s in snapshot.skus}
    skus: dict[str, WaitingSku] = {}  # shared by every waiter of the SKU

    def waiting_sku(sku_id: str) -> WaitingSku:
        if (ws := skus.get(sku_id)) is None:
            ws = skus[sku_id] = WaitingSku(sku_id, part.get(sku_id, sku_id))
        return ws

    def seat(user_id: str, group_id: str) -> str:
        gp = plans.get(group_id)
        by = reprocessed_by.get(user_id)
        if by is None and gp is not None and gp.decision in (Decision.ASSIGN, Decision.REPAIR):
            by = group_id  # the group's own write gives every member lacking it a seat
        if by is None:
            return SEAT_NONE
        if applied_group_ids is None:
            return SEAT_PLANNED
        return SEAT_GIVEN if by in applied_group_ids else SEAT_NONE

    stamps_read: dict[str, datetime | None] = {}  # many states share a lastUpdatedDateTime

    def when(value: str | None) -> datetime | None:
        if value is None:
            return None
        if value not in stamps_read:
            stamps_read[value] = _when(value)
        return stamps_read[value]

    # What a member waits for, as (sku, reason) pairs -> their sorted SKUs and the reason: most
    # members of a group wait for the same SKUs.
    waiting_for: dict[tuple[tuple[str, str], ...], tuple[tuple[WaitingSku, ...], str]] = {}

    def skus_and_reason(waits: dict[str, str]) -> tuple[tuple[WaitingSku, ...], str]:
        found = waiting_for.get(pairs := tuple(waits.items()))
        if found is None:
            ordered = tuple(waiting_sku(s) for s in sorted(waits, key=lambda s: part.get(s, s)))
            reason = "CountViolation" if "CountViolation" in waits.values() else "blocked-seats"
            found = waiting_for[pairs] = (ordered, reason)
        return found

    entries: dict[str, tuple[tuple[Any, ...], Waiter]] = {}  # key -> (order_key, waiter)
    unread: list[tuple[str, str]] = []
    read: set[str] = set()
    for group in snapshot.groups:
        membership = snapshot.members.get(group.id)
        gp = plans.get(group.id)
        if membership is None or gp is None:
            continue
        if not membership.known:
            unread.append((group.id, group.display_name))
            continue
        read.add(group.id)
        profile = policy.profiles.get(group.profile)
        blocked = gp.decision is Decision.BLOCKED_SEATS and profile is not None
        gid, name, decision = group.id, group.display_name, gp.decision.value
        at = place.get(gid)
        group_order = (at is None, at or 0, name.lower())  # order_key's group part
        for user in membership.users:  # every member of every group: kept lean
            waits: dict[str, str] = {}  # sku -> reason
            stamps = []
            for st in user.license_states:
                if (
                    st.assigned_by_group == gid
                    and st.error in SEAT_ERRORS
                    and st.sku_id not in user.held_skus
                ):
                    waits[st.sku_id] = "CountViolation"
                    if (stamp := when(st.last_updated)) is not None:
                        stamps.append(stamp)
            if blocked and profile is not None:
                errors = user.errors_from_group(gid) if user.license_states else {}
                for rs in profile.skus:
                    if rs.sku_id in user.held_skus or rs.sku_id in waits:
                        continue
                    error = errors.get(rs.sku_id)
                    if error and error not in SEAT_ERRORS:
                        continue  # more seats will not fix it: reported with advice instead
                    waits[rs.sku_id] = "blocked-seats"
            if not waits:
                continue
            wanted, reason = skus_and_reason(waits)
            w = Waiter(
                user_id=user.id,
                upn=user.upn,
                group_id=gid,
                group_name=name,
                skus=wanted,
                reason=reason,
                decision=decision,
                place=at,
                seat=seat(user.id, gid),
                graph_since=min(stamps) if stamps else None,
            )
            key = w.key
            entries[key] = ((*group_order, user.upn.lower(), key), w)
    ordered = [w for _, w in sorted(entries.values(), key=lambda e: e[0])]
    return WaitingList(tuple(ordered), tuple(unread), tuple(limited_to), frozenset(read))


def order_key(w: Waiter) -> tuple[Any, ...]:
    """The planner's group order first (groups it does not serve last), then UPN."""
    return (w.place is None, w.place or 0, w.group_name.lower(), w.upn.lower(), w.key)


def with_since(
    wl: WaitingList, first_seen: dict[str, datetime], now: datetime
) -> tuple[WaitingList, dict[str, datetime]]:
    """Since-dates: the earlier of Graph's lastUpdatedDateTime and the first run that saw the
    person waiting (`first_seen`, by Waiter.key); a person seen for the first time is since now.

    Returns the list with dates, and the first-seen rows to keep: every listed person, plus the
    rows of groups this run did not read (unread, or outside a limited run): those people may
    still wait. Everyone else has left the list (they hold the licence, left the group, or the
    group is no longer tagged).
    """
    out = []
    keep: dict[str, datetime] = {}
    for w in wl.entries:
        since, source = _since(w, first_seen.get(w.key), now)
        out.append(replace(w, since=since, since_source=source))
        keep[w.key] = since
    _keep_unread(wl, first_seen, keep)
    return replace(wl, entries=tuple(out)), keep


def _since(w: Waiter, seen: datetime | None, now: datetime) -> tuple[datetime, str]:
    candidates = [t for t in (seen, w.graph_since) if t is not None]
    since = min(candidates) if candidates else now
    source = "graph" if w.graph_since is not None and since == w.graph_since else "first-seen"
    return since, source


def _keep_unread(
    wl: WaitingList, first_seen: dict[str, datetime], keep: dict[str, datetime]
) -> None:
    unread = {gid for gid, _ in wl.unread_groups}
    for key, seen in first_seen.items():
        group_id = key.rsplit("_", 1)[-1]
        # Not read this run: its members may still wait. In a run over every group, a group
        # neither read nor unread is no longer tagged: nobody waits there for us any more.
        not_read = group_id in unread or (bool(wl.limited_to) and group_id not in wl.read_group_ids)
        if key not in keep and not_read:
            keep[key] = seen


def days_waiting(since: datetime | None, now: datetime) -> int:
    return max(0, (now - since).days) if since else 0


def sku_counts(entries: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Per SKU: people waiting (distinct users; seats given this run excluded), the longest wait.

    `entries` are the API's waiting items (dicts), so the dashboard, the mail and the command
    line count the same way from a stored list."""
    return _count_skus(
        ((e["userId"], e.get("seat"), _when(e.get("since")), e.get("skus") or []) for e in entries),
        now,
    )


def _count_skus(
    entries: Iterable[tuple[str, str | None, datetime | None, list[dict[str, Any]]]], now: datetime
) -> list[dict[str, Any]]:
    """sku_counts on (userId, seat, since, skus) of each item."""
    by_sku: dict[str, dict[str, Any]] = {}
    for user_id, seat, since, skus in entries:
        if seat == SEAT_GIVEN:
            continue
        for s in skus:
            item = by_sku.get(s["skuId"])
            if item is None:
                item = by_sku[s["skuId"]] = {
                    "skuId": s["skuId"],
                    "skuPartNumber": s["skuPartNumber"],
                    "productName": s.get("productName")
                    or sku_label(s["skuId"], s["skuPartNumber"]),
                    "users": set(),
                    "longestSince": None,
                }
            item["users"].add(user_id)
            if since and (item["longestSince"] is None or since < item["longestSince"]):
                item["longestSince"] = since
    out = []
    for item in sorted(by_sku.values(), key=lambda i: (-len(i["users"]), i["skuPartNumber"])):
        longest = item["longestSince"]
        out.append(
            {
                "skuId": item["skuId"],
                "skuPartNumber": item["skuPartNumber"],
                "productName": item["productName"],
                "waiting": len(item["users"]),
                "longestSince": longest.isoformat() if longest else None,
                "longestDays": days_waiting(longest, now),
            }
        )
    return out


def waiting_sentence(count: dict[str, Any], complete: bool = True) -> str:
    """E.g. "12 people wait for Office 365 E5 (ENTERPRISEPREMIUM), the longest for 6 days"."""
    n, days = int(count["waiting"]), int(count["longestDays"])
    who = f"{'at least ' if not complete else ''}{n} {'person waits' if n == 1 else 'people wait'}"
    how_long = "less than a day" if days < 1 else f"{days} day{'s' if days != 1 else ''}"
    longest = "" if n == 0 else f", the {'only one' if n == 1 else 'longest'} for {how_long}"
    return f"{who} for {count['productName']}{longest}"


def entry_json(w: Waiter) -> dict[str, Any]:
    """A waiting person as the API, the command line and the stored list show them."""
    return {
        "userId": w.user_id,
        "userPrincipalName": w.upn,
        "groupId": w.group_id,
        "group": w.group_name,
        "skus": _skus_json(w),
        "reason": w.reason,
        "decision": w.decision,
        "place": w.place,
        "seat": w.seat,
        "since": w.since.isoformat() if w.since else None,
        "sinceSource": w.since_source,
    }


def _skus_json(w: Waiter) -> list[dict[str, Any]]:
    return [
        {"skuId": s.sku_id, "skuPartNumber": s.part_number, "productName": s.label} for s in w.skus
    ]


def summary_json(
    wl: WaitingList, now: datetime, items: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """What a run's summary (and its run row) says about the list: counts, never the names.
    `items`: the entries' entry_json when the caller has them already (a list of 23,000 people
    costs a noticeable fraction of a second to turn into JSON)."""
    if items is None:
        items = [entry_json(w) for w in wl.entries]
    return _summary(wl, len(items), sku_counts(items, now))


def _summary(wl: WaitingList, entries: int, skus: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "complete": wl.complete,
        "unreadGroups": [{"groupId": gid, "displayName": name} for gid, name in wl.unread_groups],
        "limitedTo": list(wl.limited_to),
        "people": len({w.user_id for w in wl.entries if w.waiting}),
        "entries": entries,
        "skus": skus,
    }


_ROW_FIELDS = (
    "userId",
    "userPrincipalName",
    "groupId",
    "group",
    "reason",
    "decision",
    "place",
    "seat",
    "since",
    "sinceSource",
)


def to_row(item: dict[str, Any]) -> dict[str, Any]:
    """An entry_json item as Table properties (names are values, never keys)."""
    row = {f[0].upper() + f[1:]: item[f] for f in _ROW_FIELDS}
    row["SkusJson"] = json.dumps(item["skus"], sort_keys=True)
    return row


def from_row(row: dict[str, Any]) -> dict[str, Any]:
    item = {f: row.get(f[0].upper() + f[1:]) for f in _ROW_FIELDS}
    item["skus"] = json.loads(row.get("SkusJson") or "[]")
    return {k: item[k] for k in (*_ROW_FIELDS[:4], "skus", *_ROW_FIELDS[4:])}


def waiting_item_position(row_key: str) -> int:
    return int(row_key.rsplit("-", 1)[-1])


@dataclass(frozen=True)
class StoredList:
    rows: list[dict[str, Any]]  # each entry's Table properties, in order
    keep: dict[str, datetime]  # the first-seen rows to keep
    summary: dict[str, Any]


def stored_list(wl: WaitingList, first_seen: dict[str, datetime], now: datetime) -> StoredList:
    """What a run records of its list, in one pass: the same as
    `to_row(entry_json(w))` for each entry of `with_since(wl, first_seen, now)`, its first-seen
    rows and `summary_json`, without a dated copy of every Waiter and its JSON twice over (a
    tenant's list of 23,000 people cost the run most of a second that way)."""
    rows: list[dict[str, Any]] = []
    keep: dict[str, datetime] = {}
    counted: list[tuple[str, str, datetime, list[dict[str, Any]]]] = []
    skus_of: dict[tuple[WaitingSku, ...], tuple[list[dict[str, Any]], str]] = {}
    # Most people share a since-date (first seen by one run): its text by object, not value
    # (equal times in other offsets are written as they are).
    iso: dict[int, str] = {}
    for w in wl.entries:
        key = w.key
        since, source = _since(w, first_seen.get(key), now)
        keep[key] = since
        if (known := skus_of.get(w.skus)) is None:
            items = _skus_json(w)
            known = skus_of[w.skus] = (items, json.dumps(items, sort_keys=True))
        if (text := iso.get(id(since))) is None:
            text = iso[id(since)] = since.isoformat()
        rows.append(
            {
                "UserId": w.user_id,
                "UserPrincipalName": w.upn,
                "GroupId": w.group_id,
                "Group": w.group_name,
                "Reason": w.reason,
                "Decision": w.decision,
                "Place": w.place,
                "Seat": w.seat,
                "Since": text,
                "SinceSource": source,
                "SkusJson": known[1],
            }
        )
        counted.append((w.user_id, w.seat, since, known[0]))
    _keep_unread(wl, first_seen, keep)
    return StoredList(rows, keep, _summary(wl, len(rows), _count_skus(counted, now)))
