"""Names people recognise for SKUs and service plans.

Microsoft publishes "Product names and service plan identifiers for licensing"
(https://learn.microsoft.com/en-us/entra/identity/users/licensing-service-plan-reference); a copy of
that table lives in ``shared/licensing/`` (source and date in its README). Graph itself only gives
``skuPartNumber`` and ``servicePlanName``, which people do not read ("ENTERPRISEPREMIUM").
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

_DATA = Path(__file__).with_name("licensing")


@cache
def _products() -> tuple[dict[str, str], dict[str, str]]:
    by_id: dict[str, str] = {}
    by_part: dict[str, str] = {}
    with (_DATA / "products.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            name = row["productName"].strip()
            if not name:
                continue
            by_id.setdefault(row["skuId"].lower(), name)
            # MCOPSTN5 is listed twice with two ids; the first name is as good as the second.
            by_part.setdefault(row["skuPartNumber"].upper(), name)
    return by_id, by_part


@cache
def _plans() -> tuple[dict[str, str], dict[str, str]]:
    by_id: dict[str, str] = {}
    by_name: dict[str, str] = {}
    with (_DATA / "service-plans.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            name = row["friendlyName"].strip()
            if not name:
                continue
            by_id.setdefault(row["servicePlanId"].lower(), name)
            if row["servicePlanName"]:
                by_name.setdefault(row["servicePlanName"].upper(), name)
    return by_id, by_name


def product_name(sku_id: str | None = None, part_number: str | None = None) -> str | None:
    """Microsoft's product name for a SKU (by id first, then part number), or None if unlisted."""
    by_id, by_part = _products()
    if sku_id and (name := by_id.get(sku_id.lower())):
        return name
    if part_number:
        return by_part.get(part_number.upper())
    return None


def sku_label(sku_id: str | None = None, part_number: str | None = None) -> str:
    """E.g. "Office 365 E5 (ENTERPRISEPREMIUM)"; the part number (or id) alone if unlisted."""
    return _joined(product_name(sku_id, part_number), part_number or sku_id or "?")


def sku_product_name(sku_id: str | None, part_number: str | None) -> str:
    """The `productName` of an API SKU row: Microsoft's name, else the part number (or id)."""
    return product_name(sku_id, part_number) or part_number or sku_id or "?"


def sku_row_label(row: Mapping[str, Any]) -> str:
    """The label of a SKU row (run summary, status): its `productName` with its part number.
    Rows recorded before `productName` existed are named from the table."""
    part = row.get("skuPartNumber") or row.get("skuId") or "?"
    name = row.get("productName") or product_name(row.get("skuId"), row.get("skuPartNumber"))
    return _joined(name, str(part))


def _joined(name: str | None, code: str) -> str:
    if name and name.upper() != code.upper():
        return f"{name} ({code})"
    return code


def plan_label(plan_id: str | None = None, plan_name: str | None = None) -> str:
    """E.g. "Exchange Foundation (EXCHANGE_S_FOUNDATION)"; the plan name alone if unlisted."""
    by_id, by_name = _plans()
    name = (by_id.get(plan_id.lower()) if plan_id else None) or (
        by_name.get(plan_name.upper()) if plan_name else None
    )
    code = plan_name or plan_id or "?"
    if name and name.upper() != code.upper():
        return f"{name} ({code})"
    return code
