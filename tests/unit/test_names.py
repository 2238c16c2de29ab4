"""SKUs and plans are shown by the names in Microsoft's published table."""

from shared.names import plan_label, product_name, sku_label

E5 = "c7df2760-2c81-4ef7-b578-5b5392b571df"


def test_a_known_sku_is_shown_by_product_name_and_part_number() -> None:
    assert sku_label(E5, "ENTERPRISEPREMIUM") == "Office 365 E5 (ENTERPRISEPREMIUM)"
    # Graph ids may come upper-cased; the part number alone also finds it.
    assert sku_label(E5.upper(), "ENTERPRISEPREMIUM") == "Office 365 E5 (ENTERPRISEPREMIUM)"
    assert sku_label(None, "POWER_BI_PRO") == "Power BI Pro (POWER_BI_PRO)"


def test_an_unlisted_sku_falls_back_to_its_part_number() -> None:
    assert product_name("00000000-0000-0000-0000-000000000001", "CONTOSO_SPECIAL") is None
    assert sku_label("00000000-0000-0000-0000-000000000001", "CONTOSO_SPECIAL") == "CONTOSO_SPECIAL"
    assert sku_label("00000000-0000-0000-0000-000000000001", None) == (
        "00000000-0000-0000-0000-000000000001"
    )


def test_the_id_wins_over_a_part_number_that_names_another_product() -> None:
    # A tenant's part number is Graph's; the id is what the table is keyed on.
    assert sku_label(E5, "SOMETHING_ELSE") == "Office 365 E5 (SOMETHING_ELSE)"


def test_service_plans_get_their_friendly_names() -> None:
    assert (
        plan_label(None, "EXCHANGE_S_FOUNDATION") == "Exchange Foundation (EXCHANGE_S_FOUNDATION)"
    )
    assert plan_label("113FEB6C-3FE4-4440-BDDC-54D774BF0318", "x") == "Exchange Foundation (x)"
    # Where Microsoft's friendly name is the plan name itself, it is shown once.
    assert plan_label(None, "YAMMER_ENTERPRISE") == "YAMMER_ENTERPRISE"
    assert plan_label(None, "NOT_A_PLAN") == "NOT_A_PLAN"
