"""Member reads start with the longest chains: known multi-page groups largest first, then groups
the last runs have no count for, then the known single-page ones."""

from __future__ import annotations

from shared.collect import read_order
from shared.model import Group


def _g(name: str) -> Group:
    return Group(
        id=name,
        display_name=name,
        security_enabled=True,
        assigned_licenses=(),
        processing_state=None,
        profile="p",
    )


def test_largest_known_first_unknown_next_small_last() -> None:
    groups = [_g(n) for n in ("a", "b", "c", "d", "e", "f")]
    sizes = {"a": 5, "b": 20_000, "d": 1_500, "f": 999}
    assert [g.id for g in read_order(groups, sizes)] == ["b", "d", "c", "e", "f", "a"]


def test_without_recorded_sizes_the_order_is_kept() -> None:
    groups = [_g(n) for n in ("z", "a", "m")]
    assert [g.id for g in read_order(groups, {})] == ["z", "a", "m"]
