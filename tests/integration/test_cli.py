"""The operators' command line against the demo tenant: verbs, output and exit codes."""

from __future__ import annotations

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
