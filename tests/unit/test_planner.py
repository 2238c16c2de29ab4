"""The planner on plain data: every decision, and the seat arithmetic of docs/architecture.md."""

from __future__ import annotations

from shared.model import AssignedLicense, LicenseState, Membership
from shared.planner import Decision, Plan, make_plan
from tests.factories import (
    E5,
    EMS,
    PBI,
    TEAMS,
    YAMMER,
    default_skus,
    e5_full,
    group,
    resolved,
    snapshot,
    user,
)


def decisions(plan: Plan) -> dict[str, Decision]:
    return {g.display_name: g.decision for g in plan.groups}


def test_unlicensed_group_with_enough_seats_is_assigned_its_profile():
    g = group("LIC-Finance", "e5-no-yammer")
    plan = make_plan(snapshot(default_skus(), (g, [user(), user()])), resolved())
    [gp] = plan.groups
    assert gp.decision is Decision.ASSIGN
    assert {(c.part_number, c.disabled_plan_ids) for c in gp.add_licenses} == {
        ("ENTERPRISEPREMIUM", (YAMMER,)),
        ("EMSPREMIUM", ()),
    }
    assert gp.demand == {"ENTERPRISEPREMIUM": 2, "EMSPREMIUM": 2}
    e5 = next(s for s in plan.skus if s.sku_id == E5)
    assert (e5.free_before, e5.granted, e5.free_after) == (100, 2, 98)


def test_group_carrying_its_profile_with_all_members_licensed_is_compliant():
    g = group("LIC-Sales", "e5-full", e5_full())
    members = [user(holds=(E5, EMS)) for _ in range(3)]
    plan = make_plan(snapshot(default_skus(), (g, members)), resolved())
    assert plan.groups[0].decision is Decision.COMPLIANT
    assert plan.changes == []


def test_drifted_disabled_plans_are_repaired_without_new_seats():
    g = group(
        "LIC-Ops", "e5-full", (AssignedLicense(E5, frozenset({YAMMER})), AssignedLicense(EMS))
    )
    plan = make_plan(
        snapshot(default_skus(e5=1, consumed_e5=1), (g, [user(holds=(E5, EMS))])), resolved()
    )
    [gp] = plan.groups
    assert gp.decision is Decision.REPAIR
    assert gp.demand == {}
    assert {c.sku_id: c.disabled_plan_ids for c in gp.add_licenses} == {E5: (), EMS: ()}


def test_plan_drift_note_names_the_sku_and_plans_as_people_know_them():
    g = group("LIC-Ops", "e5-full", (AssignedLicense(E5, frozenset({TEAMS})), AssignedLicense(EMS)))
    plan = make_plan(
        snapshot(default_skus(e5=1, consumed_e5=1), (g, [user(holds=(E5, EMS))])), resolved()
    )
    [gp] = plan.groups
    [note] = [n for n in gp.notes if "drifted" in n]
    # The factories' E5 id is Microsoft's id of Office 365 E3; the id wins over the part number.
    assert note.startswith("Office 365 E3 (ENTERPRISEPREMIUM) disabled plans drifted")
    assert "disabled in the group, enabled by the profile: Microsoft Teams (TEAMS1)" in note


def test_group_missing_one_profile_sku_is_repaired():
    g = group("LIC-Legal", "e5-full", (AssignedLicense(E5),))
    plan = make_plan(snapshot(default_skus(), (g, [user(holds=(E5,))])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.REPAIR
    assert gp.demand == {"EMSPREMIUM": 1}


def test_guest_member_blocks_the_group_and_names_the_guest():
    guest = user("partner", guest=True, upn="partner_fabrikam.com#EXT#@contoso.example")
    g = group("LIC-Project", "e5-full")
    plan = make_plan(snapshot(default_skus(), (g, [user(), guest])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.BLOCKED_GUESTS
    assert gp.guest_count == 1 and "partner_fabrikam.com#EXT#@contoso.example" in gp.reason
    assert plan.changes == []


def test_external_member_with_member_user_type_is_still_b2b():
    # Multi-tenant organisation members have userType Member but an #EXT# UPN.
    ext = user("mto", upn="mto_fabrikam.com#EXT#@contoso.example")
    assert ext.user_type == "Member" and ext.is_b2b
    plan = make_plan(snapshot(default_skus(), (group("LIC-X", "e5-full"), [ext])), resolved())
    assert plan.groups[0].decision is Decision.BLOCKED_GUESTS


def test_not_enough_seats_blocks_with_the_shortfall():
    g = group("LIC-BI", "powerbi")
    plan = make_plan(
        snapshot(default_skus(pbi=5, consumed_pbi=3), (g, [user() for _ in range(5)])), resolved()
    )
    gp = plan.groups[0]
    assert gp.decision is Decision.BLOCKED_SEATS
    assert gp.shortfall == {"POWER_BI_PRO": 3}
    assert "buy 3" in gp.reason
    pbi = next(s for s in plan.skus if s.sku_id == PBI)
    assert (pbi.free_before, pbi.demand, pbi.granted, pbi.shortfall) == (2, 5, 0, 3)


def test_reserve_is_kept_back_from_assignment():
    policy = resolved(
        "version: 1\nprofiles: {powerbi: {skus: [{sku: POWER_BI_PRO}]}}\n"
        "selectors: [{displayNamePrefix: LIC-, profile: powerbi}]\n"
        "skus: {POWER_BI_PRO: {reserve: 2}}\n"
    )
    members = [user() for _ in range(4)]
    plan = make_plan(snapshot(default_skus(pbi=5), (group("LIC-BI", "powerbi"), members)), policy)
    assert plan.groups[0].decision is Decision.BLOCKED_SEATS
    assert "after a reserve of 2" in plan.groups[0].reason
    plan = make_plan(snapshot(default_skus(pbi=6), (group("LIC-BI", "powerbi"), members)), policy)
    assert plan.groups[0].decision is Decision.ASSIGN


def test_user_in_two_groups_needs_one_seat():
    shared_user = user("both")
    a = group("LIC-A", "powerbi")
    b = group("LIC-B", "powerbi")
    plan = make_plan(
        snapshot(default_skus(pbi=2), (a, [shared_user, user()]), (b, [shared_user])), resolved()
    )
    assert set(decisions(plan).values()) == {Decision.ASSIGN}
    pbi = next(s for s in plan.skus if s.sku_id == PBI)
    assert (pbi.demand, pbi.granted, pbi.free_after) == (2, 2, 0)


def test_smaller_demand_first_when_seats_are_short():
    big = group("LIC-Big", "powerbi")
    small = group("LIC-Small", "powerbi")
    plan = make_plan(
        snapshot(
            default_skus(pbi=3),
            (big, [user() for _ in range(3)]),
            (small, [user() for _ in range(2)]),
        ),
        resolved(),
    )
    assert decisions(plan) == {"LIC-Big": Decision.BLOCKED_SEATS, "LIC-Small": Decision.ASSIGN}


def test_policy_priority_beats_smaller_demand():
    big = group("LIC-Big", "powerbi", priority=1)
    small = group("LIC-Small", "powerbi")
    plan = make_plan(
        snapshot(
            default_skus(pbi=3),
            (big, [user() for _ in range(3)]),
            (small, [user() for _ in range(2)]),
        ),
        resolved(),
    )
    assert decisions(plan) == {"LIC-Big": Decision.ASSIGN, "LIC-Small": Decision.BLOCKED_SEATS}


def test_profile_is_all_or_nothing_across_its_skus():
    # EMS has room, E5 does not: the group gets neither (Entra assigns a group's set per user).
    g = group("LIC-Eng", "e5-full")
    plan = make_plan(snapshot(default_skus(e5=1), (g, [user(), user()])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.BLOCKED_SEATS
    assert gp.shortfall == {"ENTERPRISEPREMIUM": 1}
    ems = next(s for s in plan.skus if s.sku_id == EMS)
    assert ems.granted == 0


def test_negative_free_seats_block_and_report_the_full_shortfall():
    g = group("LIC-BI", "powerbi")
    plan = make_plan(snapshot(default_skus(pbi=10, consumed_pbi=12), (g, [user()])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.BLOCKED_SEATS
    assert gp.shortfall == {"POWER_BI_PRO": 3}  # 2 over-assigned + 1 wanted
    assert next(s for s in plan.skus if s.sku_id == PBI).free_before == -2


def test_count_violation_users_are_reprocessed_once_seats_exist():
    g = group("LIC-Sales", "powerbi", (AssignedLicense(PBI),))
    stuck = user("stuck", states=(LicenseState(PBI, g.id, "Error", "CountViolation"),))
    fine = user("fine", holds=(PBI,))
    plan = make_plan(snapshot(default_skus(pbi=5, consumed_pbi=4), (g, [stuck, fine])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.REPROCESS
    assert gp.reprocess_user_ids == (stuck.id,)
    assert gp.add_licenses == ()


def test_count_violation_users_without_seats_block_with_shortfall():
    g = group("LIC-Sales", "powerbi", (AssignedLicense(PBI),))
    stuck = [user(states=(LicenseState(PBI, g.id, "Error", "CountViolation"),)) for _ in range(2)]
    plan = make_plan(snapshot(default_skus(pbi=4, consumed_pbi=4), (g, stuck)), resolved())
    assert plan.groups[0].decision is Decision.BLOCKED_SEATS
    assert plan.groups[0].shortfall == {"POWER_BI_PRO": 2}


def test_count_violation_users_are_reprocessed_as_far_as_seats_go():
    # Reprocessing is per user: the one free seat is used, the other user waits with the shortfall.
    g = group("LIC-Sales", "powerbi", (AssignedLicense(PBI),))
    stuck = [user(states=(LicenseState(PBI, g.id, "Error", "CountViolation"),)) for _ in range(2)]
    plan = make_plan(snapshot(default_skus(pbi=5, consumed_pbi=4), (g, stuck)), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.REPROCESS
    assert gp.reprocess_user_ids == (min(u.id for u in stuck),)
    assert gp.shortfall == {"POWER_BI_PRO": 1}
    assert any("not reprocessed this run" in n and "buy 1" in n for n in gp.notes)
    assert sku_plan(plan, PBI).granted == 1


def test_other_licence_errors_are_reported_with_advice_not_reprocessed():
    g = group("LIC-Sales", "powerbi", (AssignedLicense(PBI),))
    bad = user("clash", states=(LicenseState(PBI, g.id, "Error", "MutuallyExclusiveViolation"),))
    plan = make_plan(snapshot(default_skus(), (g, [bad, user(holds=(PBI,))])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.COMPLIANT
    assert any("MutuallyExclusiveViolation" in n and "conflicting licence" in n for n in gp.notes)


def test_suspended_sku_is_not_assignable():
    skus = tuple(
        s
        if s.sku_id != PBI
        else s.__class__(s.sku_id, s.part_number, "Suspended", s.applies_to, s.enabled, s.consumed)
        for s in default_skus()
    )
    plan = make_plan(snapshot(skus, (group("LIC-BI", "powerbi"), [user()])), resolved(skus=skus))
    assert plan.groups[0].decision is Decision.BLOCKED_POLICY
    assert "Suspended" in plan.groups[0].reason


def test_sku_in_warning_is_still_assignable():
    skus = tuple(
        s
        if s.sku_id != PBI
        else s.__class__(s.sku_id, s.part_number, "Warning", s.applies_to, s.enabled, s.consumed)
        for s in default_skus()
    )
    plan = make_plan(snapshot(skus, (group("LIC-BI", "powerbi"), [user()])), resolved(skus=skus))
    assert plan.groups[0].decision is Decision.ASSIGN


def test_group_that_is_not_security_enabled_is_refused():
    plan = make_plan(
        snapshot(default_skus(), (group("LIC-DL", "powerbi", security=False), [user()])), resolved()
    )
    assert plan.groups[0].decision is Decision.BLOCKED_POLICY
    assert "security" in plan.groups[0].reason


def test_unknown_profile_tag_is_a_policy_block_naming_the_profile():
    plan = make_plan(snapshot(default_skus(), (group("LIC-X", "e7-typo"), [user()])), resolved())
    assert plan.groups[0].decision is Decision.BLOCKED_POLICY
    assert "'e7-typo'" in plan.groups[0].reason


def test_unreadable_members_make_the_group_unknown_and_untouched():
    g = group("LIC-Broken", "powerbi")
    plan = make_plan(snapshot(default_skus(), (g, Membership(error="HTTP 503"))), resolved())
    assert plan.groups[0].decision is Decision.UNKNOWN
    assert "HTTP 503" in plan.groups[0].reason
    assert plan.changes == []


def test_empty_group_that_needs_its_licences_is_assigned_without_seats():
    plan = make_plan(snapshot(default_skus(pbi=0), (group("LIC-New", "powerbi"), [])), resolved())
    assert plan.groups[0].decision is Decision.ASSIGN
    assert plan.groups[0].demand == {}


def test_unlisted_licence_is_reported_and_only_removed_on_opt_in():
    g = group("LIC-BI", "powerbi", (AssignedLicense(PBI), AssignedLicense(EMS)))
    members = [user(holds=(PBI, EMS))]
    plan = make_plan(snapshot(default_skus(), (g, members)), resolved())
    assert plan.groups[0].decision is Decision.COMPLIANT
    assert any("EMSPREMIUM" in n and "left in place" in n for n in plan.groups[0].notes)
    from tests.factories import POLICY

    opted = resolved(POLICY + "removeUnlistedLicenses: true\n")
    plan = make_plan(snapshot(default_skus(), (g, members)), opted)
    assert plan.groups[0].decision is Decision.REPAIR
    assert plan.groups[0].remove_licenses == (EMS,)


def test_nested_groups_are_noted():
    m = Membership(users=(user(),), nested_group_ids=("x",))
    plan = make_plan(snapshot(default_skus(), (group("LIC-N", "powerbi"), m)), resolved())
    assert any("nested" in n for n in plan.groups[0].notes)


def test_processing_in_progress_counts_members_as_taking_seats():
    busy = group("LIC-Busy", "powerbi", (AssignedLicense(PBI),), processing="ProcessingInProgress")
    new = group("LIC-New", "powerbi")
    plan = make_plan(
        snapshot(default_skus(pbi=2), (busy, [user(), user()]), (new, [user()])), resolved()
    )
    assert decisions(plan) == {"LIC-Busy": Decision.COMPLIANT, "LIC-New": Decision.BLOCKED_SEATS}


# -- the seat ledger: groups that already carry a SKU keep taking seats, whatever we decide ----


def stuck_on(g, sku_id: str, **kw):
    return user(states=(LicenseState(sku_id, g.id, "Error", "CountViolation"),), **kw)


def sku_plan(plan: Plan, sku_id: str):
    return next(s for s in plan.skus if s.sku_id == sku_id)


def test_guest_blocked_group_carrying_a_sku_keeps_its_seats_from_a_new_group():
    partner = user("partner", guest=True, upn="partner_fabrikam.com#EXT#@contoso.example")
    mixed = group("LIC-Mixed", "powerbi", (AssignedLicense(PBI),))
    new = group("LIC-New", "powerbi")
    plan = make_plan(
        snapshot(
            default_skus(pbi=3),
            (mixed, [stuck_on(mixed, PBI), partner]),
            (new, [user(), user()]),
        ),
        resolved(),
    )
    assert decisions(plan) == {
        "LIC-Mixed": Decision.BLOCKED_GUESTS,
        "LIC-New": Decision.BLOCKED_SEATS,
    }
    pbi = sku_plan(plan, PBI)
    assert (pbi.committed, pbi.granted) == (2, 0)
    assert plan.groups[1].shortfall == {"POWER_BI_PRO": 1}
    assert "committed" in plan.groups[1].reason


def test_tag_problem_group_carrying_a_sku_keeps_its_seats():
    tangled = group("LIC-Tangled", "powerbi", (AssignedLicense(PBI),), tag_problem="two profiles")
    new = group("LIC-New", "powerbi")
    plan = make_plan(
        snapshot(default_skus(pbi=1), (tangled, [stuck_on(tangled, PBI)]), (new, [user()])),
        resolved(),
    )
    assert decisions(plan) == {
        "LIC-Tangled": Decision.BLOCKED_POLICY,
        "LIC-New": Decision.BLOCKED_SEATS,
    }


def test_processing_group_that_does_not_fit_still_takes_the_seats_it_can():
    busy = group("LIC-Busy", "powerbi", (AssignedLicense(PBI),), processing="ProcessingInProgress")
    new = group("LIC-New", "powerbi")
    plan = make_plan(
        snapshot(default_skus(pbi=2), (busy, [user(), user(), user()]), (new, [user()])),
        resolved(),
    )
    assert decisions(plan)["LIC-New"] is Decision.BLOCKED_SEATS
    assert plan.changes == []
    busy_plan = plan.groups[0]
    assert "processing" in busy_plan.reason and busy_plan.shortfall == {"POWER_BI_PRO": 1}


def test_seat_blocked_carrying_group_is_charged_before_a_new_group():
    # LIC-Old has 3 stuck users and 2 free seats: 2 are reprocessed; LIC-New gets none of them.
    old = group("LIC-Old", "powerbi", (AssignedLicense(PBI),), priority=200)
    new = group("LIC-New", "powerbi", priority=0)
    plan = make_plan(
        snapshot(
            default_skus(pbi=2),
            (old, [stuck_on(old, PBI) for _ in range(3)]),
            (new, [user()]),
        ),
        resolved(),
    )
    assert decisions(plan) == {"LIC-Old": Decision.REPROCESS, "LIC-New": Decision.BLOCKED_SEATS}
    assert len(plan.groups[0].reprocess_user_ids) == 2
    assert plan.groups[1].shortfall == {"POWER_BI_PRO": 2}
    pbi = sku_plan(plan, PBI)
    assert (pbi.committed, pbi.demand, pbi.shortfall) == (3, 4, 2)


def test_unread_group_carrying_a_sku_makes_its_headroom_unknown():
    broken = group("LIC-Broken", "powerbi", (AssignedLicense(PBI),))
    new_bi = group("LIC-NewBI", "powerbi")
    new_e5 = group("LIC-NewE5", "e5-full")
    plan = make_plan(
        snapshot(
            default_skus(),
            (broken, Membership(error="HTTP 503")),
            (new_bi, [user()]),
            (new_e5, [user()]),
        ),
        resolved(),
    )
    assert decisions(plan) == {
        "LIC-Broken": Decision.UNKNOWN,
        "LIC-NewBI": Decision.BLOCKED_SEATS,
        "LIC-NewE5": Decision.ASSIGN,
    }
    reason = plan.groups[1].reason
    assert (
        "POWER_BI_PRO" in reason
        and "unknown" in reason
        and "LIC-Broken" in reason
        and "LIC-Broken" in reason
    )
    assert plan.groups[1].shortfall == {}
    pbi = sku_plan(plan, PBI)
    assert pbi.headroom_unknown and "LIC-Broken" in pbi.headroom_unknown
    assert pbi.granted == 0


def test_unread_group_blocks_a_reprocess_that_needs_its_sku():
    broken = group("LIC-Broken", "powerbi", (AssignedLicense(PBI),))
    sales = group("LIC-Sales", "powerbi", (AssignedLicense(PBI),))
    plan = make_plan(
        snapshot(
            default_skus(), (broken, Membership(error="timeout")), (sales, [stuck_on(sales, PBI)])
        ),
        resolved(),
    )
    assert decisions(plan)["LIC-Sales"] is Decision.BLOCKED_SEATS
    assert plan.changes == []


def test_unread_group_does_not_block_a_repair_that_needs_no_seats():
    broken = group("LIC-Broken", "e5-full", e5_full())
    ops = group(
        "LIC-Ops", "e5-full", (AssignedLicense(E5, frozenset({YAMMER})), AssignedLicense(EMS))
    )
    plan = make_plan(
        snapshot(
            default_skus(), (broken, Membership(error="timeout")), (ops, [user(holds=(E5, EMS))])
        ),
        resolved(),
    )
    assert decisions(plan)["LIC-Ops"] is Decision.REPAIR


def test_over_used_sku_reports_the_true_number_of_seats_to_buy():
    # enabled 10, consumed 12, 3 users waiting: 2 over plus 3 wanted = 5 to buy.
    g = group("LIC-BI", "powerbi")
    plan = make_plan(
        snapshot(default_skus(pbi=10, consumed_pbi=12), (g, [user(), user(), user()])),
        resolved(),
    )
    assert plan.groups[0].shortfall == {"POWER_BI_PRO": 5}
    assert sku_plan(plan, PBI).shortfall == 5


def test_over_used_sku_row_in_the_run_summary_says_seats_to_buy():
    from shared.run import RunReport

    g = group("LIC-BI", "powerbi")
    plan = make_plan(
        snapshot(default_skus(pbi=10, consumed_pbi=12), (g, [user(), user(), user()])),
        resolved(),
    )
    report = RunReport.__new__(RunReport)
    report.plan, report.skus_after = plan, {}
    row = next(r for r in report.sku_rows() if r["skuId"] == PBI)
    assert (row["shortfall"], row["committed"], row["headroomUnknown"]) == (5, 0, None)


def test_user_stuck_in_two_groups_is_reprocessed_once_and_counted_once():
    a = group("LIC-A", "powerbi", (AssignedLicense(PBI),))
    b = group("LIC-B", "e5-full", e5_full())
    both = user(
        "both",
        holds=(E5,),
        states=(
            LicenseState(PBI, a.id, "Error", "CountViolation"),
            LicenseState(EMS, b.id, "Error", "CountViolation"),
        ),
    )
    plan = make_plan(snapshot(default_skus(), (a, [both]), (b, [both])), resolved())
    reprocessed = [u for g in plan.groups for u in g.reprocess_user_ids]
    assert reprocessed == [both.id]
    assert plan.users_affected == 1
    other = next(g for g in plan.groups if not g.reprocess_user_ids)
    assert any("reprocessed with LIC-" in n for n in other.notes)
    # The other group makes no write of its own: it is not a change, nor "reprocessed 0 user(s)".
    assert other.decision is Decision.COMPLIANT and plan.groups_changed == 1


def test_user_in_two_assigned_groups_counts_once_in_the_change_budget():
    shared_user = user("shared")
    a, b = group("LIC-A", "powerbi"), group("LIC-B", "e5-full")
    plan = make_plan(
        snapshot(default_skus(), (a, [shared_user, user()]), (b, [shared_user])), resolved()
    )
    assert decisions(plan) == {"LIC-A": Decision.ASSIGN, "LIC-B": Decision.ASSIGN}
    assert plan.users_affected == 2


# -- who holds a licence ---------------------------------------------------------------------


def test_disabled_assignment_is_reported_not_reprocessed():
    g = group("LIC-Sales", "powerbi", (AssignedLicense(PBI),))
    off = user("off", states=(LicenseState(PBI, g.id, "Disabled", None),))
    plan = make_plan(snapshot(default_skus(), (g, [off])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.COMPLIANT
    assert gp.license_errors == {"Disabled": [off.upn]}


def test_internal_guest_blocks_the_group_and_is_named_as_internal():
    internal = user("contractor", user_type="Guest")
    g = group("LIC-Staff", "powerbi")
    plan = make_plan(snapshot(default_skus(), (g, [user(), internal])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.BLOCKED_GUESTS
    assert "internal guest" in gp.reason and internal.upn in gp.reason
    assert "B2B" not in gp.reason


def test_member_signing_in_through_another_issuer_is_b2b():
    ext = user("mto", external_issuer="ExternalAzureAD")
    plan = make_plan(snapshot(default_skus(), (group("LIC-X", "powerbi"), [ext])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.BLOCKED_GUESTS
    assert "ExternalAzureAD" in gp.reason


def test_sku_without_capability_status_is_not_assignable():
    skus = tuple(
        s
        if s.sku_id != PBI
        else s.__class__(s.sku_id, s.part_number, "", s.applies_to, s.enabled, s.consumed)
        for s in default_skus()
    )
    plan = make_plan(snapshot(skus, (group("LIC-BI", "powerbi"), [user()])), resolved(skus=skus))
    assert plan.groups[0].decision is Decision.BLOCKED_POLICY
    assert "capabilityStatus" in plan.groups[0].reason


def test_a_licence_entra_kept_after_the_group_dropped_it_is_reported_with_its_error():
    # The group no longer carries E5 (removed as unlisted), but Entra could not take it from one
    # member: a licence they hold directly needs one of E5's plans (DependencyViolation).
    g = group("LIC-Move", "powerbi", (AssignedLicense(PBI),))
    kept = user(
        "kept",
        holds=(PBI, E5),
        states=(
            LicenseState(PBI, g.id, "Active", None),
            LicenseState(E5, g.id, "ActiveWithError", "DependencyViolation"),
        ),
    )
    plan = make_plan(snapshot(default_skus(), (g, [kept, user(holds=(PBI,))])), resolved())
    gp = plan.groups[0]
    assert gp.decision is Decision.COMPLIANT
    assert gp.license_errors == {"DependencyViolation": [kept.upn]}
    assert any("DependencyViolation" in n and kept.upn in n for n in gp.notes)
