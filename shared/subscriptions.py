"""The tenant's commercial subscriptions (`GET /directory/subscriptions`, companySubscription):
where the seats of each SKU come from and when they may go. Pure: parsing, the rows a run keeps,
and the supply changes the forecast weighs (shared/forecast.py).

companySubscription resource type
(https://learn.microsoft.com/en-us/graph/api/resources/companysubscription?view=graph-rest-1.0):
`nextLifecycleDateTime` is when the subscription moves to the next state of `status` if not
renewed (Enabled -> Warning -> Suspended -> Deleted); Graph does not say whether it will renew.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.forecast import SupplyChange

# Statuses whose seats count in subscribedSku.prepaidUnits.enabled (the headroom the planner
# weighs); Warning seats are already outside it (docs/graph-facts.md).
ENABLED = "Enabled"
STATUSES = ("Enabled", "Warning", "Suspended", "Deleted", "LockedOut")
# The status a subscription moves to at nextLifecycleDateTime if not renewed.
NEXT_STATUS = {"Enabled": "Warning", "Warning": "Suspended", "Suspended": "Deleted"}
SELECT = [
    "id",
    "commerceSubscriptionId",
    "skuId",
    "skuPartNumber",
    "status",
    "totalLicenses",
    "isTrial",
    "nextLifecycleDateTime",
]


@dataclass(frozen=True)
class Subscription:
    id: str
    sku_id: str
    part_number: str
    status: str
    total: int
    is_trial: bool | None  # None: Graph did not say (never taken for "not a trial")
    next_lifecycle: datetime | None
    commerce_id: str = ""

    def row(self) -> dict[str, Any]:
        """As a run's summary (and the subscriptions table) keeps it."""
        return {
            "subscriptionId": self.id,
            "commerceSubscriptionId": self.commerce_id,
            "skuId": self.sku_id,
            "skuPartNumber": self.part_number,
            "status": self.status,
            "totalLicenses": self.total,
            "isTrial": self.is_trial,
            "nextLifecycleDateTime": (
                self.next_lifecycle.isoformat() if self.next_lifecycle else None
            ),
        }


def parse(item: Any) -> Subscription:
    """One companySubscription from Graph; ValueError/TypeError on anything it cannot trust."""
    if not isinstance(item, dict):
        raise TypeError(f"a subscription is not an object: {item!r}")
    sub_id, sku_id = item.get("id"), item.get("skuId")
    if not isinstance(sub_id, str) or not sub_id or not isinstance(sku_id, str) or not sku_id:
        raise ValueError(f"a subscription without id or skuId: {item!r}")
    status = item.get("status")
    if not isinstance(status, str) or not status:
        raise ValueError(f"subscription {sub_id} has no status")
    total = item.get("totalLicenses")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise ValueError(f"subscription {sub_id} has no valid totalLicenses: {total!r}")
    trial = item.get("isTrial")
    if trial is not None and not isinstance(trial, bool):
        raise ValueError(f"subscription {sub_id}: isTrial is not a boolean: {trial!r}")
    return Subscription(
        id=sub_id.lower(),
        sku_id=sku_id.lower(),
        part_number=str(item.get("skuPartNumber") or ""),
        status=status,
        total=total,
        is_trial=trial,
        next_lifecycle=_time(item.get("nextLifecycleDateTime"), sub_id),
        commerce_id=str(item.get("commerceSubscriptionId") or ""),
    )


def from_row(row: Mapping[str, Any]) -> Subscription:
    """A subscription as a run recorded it (summary dict or Table entity, either casing)."""

    def get(name: str) -> Any:
        return row.get(name, row.get(name[0].upper() + name[1:]))

    raw_total = get("totalLicenses")
    return Subscription(
        id=str(get("subscriptionId") or ""),
        sku_id=str(get("skuId") or "").lower(),
        part_number=str(get("skuPartNumber") or ""),
        status=str(get("status") or ""),
        total=int(raw_total) if raw_total is not None else 0,
        is_trial=get("isTrial"),
        next_lifecycle=_time(get("nextLifecycleDateTime") or None, str(get("subscriptionId"))),
        commerce_id=str(get("commerceSubscriptionId") or ""),
    )


def _time(raw: Any, sub_id: str) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if not isinstance(raw, str):
        raise ValueError(f"subscription {sub_id}: nextLifecycleDateTime is not a string")
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def supply_changes(subs: Iterable[Subscription], sku_id: str) -> list[SupplyChange]:
    """The known dates on which a SKU's enabled seats drop: every Enabled subscription of it
    leaves `enabled` at its nextLifecycleDateTime unless renewed (it moves to Warning, whose
    seats are not headroom)."""
    out = []
    for s in subs:
        if s.sku_id != sku_id.lower() or s.status != ENABLED or s.next_lifecycle is None:
            continue
        if s.total <= 0:
            continue
        kind = "trial" if s.is_trial else "subscription"
        out.append(
            SupplyChange(
                s.next_lifecycle,
                -s.total,
                f"a {kind} of {s.total} seat(s) ends on {s.next_lifecycle:%Y-%m-%d} unless renewed",
            )
        )
    return sorted(out, key=lambda c: c.at)


def of_summary(summary: Mapping[str, Any]) -> list[Subscription] | None:
    """The subscriptions a run read; None when it could not read them (unknown, not none)."""
    rows: Sequence[Mapping[str, Any]] | None = summary.get("subscriptions")
    if rows is None:
        return None
    return [from_row(r) for r in rows]
