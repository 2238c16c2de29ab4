"""The operators' command line against the demo tenant: verbs, output and exit codes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.cli import main
from tests.integration.conftest import World


@pytest.fixture
def cli_world(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    yield world


def test_plan_apply_runs_and_show(cli_world: World, capsys: pytest.CaptureFixture[str]):
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "mode=plan" in out and "LIC-Partners-E5" in out and "blocked-guests" in out
    assert cli_world.licence_writes() == []

    time.sleep(1.1)  # run ids (and so the newest-first order) have one-second resolution
    assert main(["apply"]) == 0
    applied = capsys.readouterr().out
    assert "mode=apply" in applied and "applied" in applied
    run_id = applied.split()[1]

    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert listing.index(run_id) < listing.index("plan")  # newest first
    assert main(["show", run_id]) == 0
    shown = capsys.readouterr().out
    assert "LIC-Partners-E5" in shown and "blocked-guests" in shown
    assert main(["show", "20991231T000000Z-abcdef"]) == 1


def test_validate_offline_and_against_the_tenant(
    cli_world: World, capsys: pytest.CaptureFixture[str]
):
    assert main(["validate"]) == 0
    assert "valid (3 profiles, 1 selectors)" in capsys.readouterr().out
    assert main(["validate", "--tenant"]) == 0
    out = capsys.readouterr().out
    assert "resolved against the tenant" in out
    assert "LIC-AllHands-E5" in out and "NO" in out  # the group that is not security-enabled


def test_bad_policy_exits_2_naming_file_and_key(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nprofiles: {p: {skus: [{sku: X}]}}\nselectors: [{prefix: A}]\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "selectors[0].prefix" in err


def test_unknown_sku_fails_validation_against_the_tenant(
    cli_world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\nprofiles: {p: {skus: [{sku: VISIOCLIENT}]}}\n"
        "selectors: [{displayNamePrefix: LIC-, profile: p}]\n"
    )
    assert main(["validate", str(policy)]) == 0  # offline it is well-formed
    capsys.readouterr()
    assert main(["validate", str(policy), "--tenant"]) == 2
    assert "VISIOCLIENT" in capsys.readouterr().err


def test_status_progress_and_dashboard_on_the_demo_tenant(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["apply", "--progress"]) == 0
    captured = capsys.readouterr()
    run_id = captured.out.split()[1]
    progress = captured.err.splitlines()
    assert any("groups read" in line for line in progress)
    assert progress[-1].endswith(tuple(f"writes {n}/{n}" for n in range(1, 100)))
    assert "decided 10/10" in progress[-1]

    assert main(["status"]) == 0
    status = capsys.readouterr().out
    # No history yet, but the demo's second E5 subscription (10 seats) ends in 12 days: the
    # forecast gives that date rather than "not enough history yet".
    assert "Office 365 E5 (ENTERPRISEPREMIUM)" in status
    assert "a subscription of 10 seat(s) ends on" in status
    # Guests and Power BI seats, plus the demo's subscriptions: E5's ending one (and the low
    # forecast it causes), the Power BI trial users rely on, suspended Project.
    assert f"Latest run: {run_id}" in status and "Open alerts: 6" in status
    for kind in ("subscription-ending", "subscription-trial", "subscription-status", "sku-low"):
        assert kind in status
    assert main(["status", "--json"]) == 0
    assert '"seatsSource": "graph"' in capsys.readouterr().out

    out = tmp_path / "seats.html"
    assert main(["dashboard", "--out", str(out)]) == 0
    html = out.read_text()
    assert "<h3>Office 365 E5 (ENTERPRISEPREMIUM)</h3>" in html and "LIC-Partners-E5" in html


def test_seats_table_and_mail_name_skus_as_microsoft_does(
    cli_world: World, capsys: pytest.CaptureFixture[str]
):
    # The demo tenant carries Microsoft's real skuIds; the table and the mail name each product.
    assert main(["apply"]) == 0
    out = capsys.readouterr().out
    seats = out[out.index("\nSeats\n") :]
    rows = {line.split("  ")[0] for line in seats.splitlines()[3:] if line.strip()}
    assert "Office 365 E5 (ENTERPRISEPREMIUM)" in rows
    assert "Enterprise Mobility + Security E5 (EMSPREMIUM)" in rows
    mails = cli_world.sim.admin("GET", "/_sim/outbox")["value"]
    [mail] = [m["message"] for m in mails if "has run out" in m["message"]["subject"]]
    assert mail["subject"].startswith("[Licensing] Power BI Pro (POWER_BI_PRO) has run out")
    assert ">Licence</td><td" in mail["body"]["content"]
    assert ">Power BI Pro (POWER_BI_PRO)</td>" in mail["body"]["content"]


def test_exit_codes_a_script_can_use(cli_world: World, capsys: pytest.CaptureFixture[str]):
    assert main(["show", "not-a-run"]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["plan", "--bogus"])
    assert usage.value.code == 2
    capsys.readouterr()


def test_bad_settings_exit_2(
    cli_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("LICENSING_RUN_QUEUE", "No_Such_Queue")
    assert main(["status"]) == 2
    assert "LICENSING_RUN_QUEUE" in capsys.readouterr().err
