"""Onboarding and offboarding from the command line, against a simulator serving two tenants."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev.services import Azurite, app_settings
from shared.cli import main
from shared.settings import Settings
from shared.store import TableStore
from tests.integration.conftest import FABRIKAM, NORTHWIND, msp_simulator


@pytest.fixture
def msp(azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    sim = msp_simulator()
    env = app_settings(
        azurite,
        sim,
        LICENSING_TABLE_PREFIX="t" + secrets.token_hex(6),
        LICENSING_TENANTS_FILE=str(tmp_path / "tenants.yaml"),
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield sim, TableStore.from_settings(Settings.from_env(env)), tmp_path / "tenants.yaml"
    sim.stop()


def test_onboard_run_and_offboard_a_tenant(msp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sim, store, file = msp
    assert main(["tenants", "list"]) == 0
    assert "no tenant records" in capsys.readouterr().out

    assert main(["tenants", "add", FABRIKAM, "--name", "Fabrikam", "--mode", "apply"]) == 0
    assert main(["tenants", "add", NORTHWIND.upper(), "--name", "Northwind"]) == 0
    capsys.readouterr()
    assert "Fabrikam" in file.read_text() and NORTHWIND in file.read_text()
    assert main(["tenants", "list"]) == 0
    listing = capsys.readouterr().out
    assert "Fabrikam" in listing and "apply" in listing and "Northwind" in listing

    assert main(["tenants", "check", FABRIKAM]) == 0
    assert "consented" in capsys.readouterr().out

    # With records there is no implicit tenant: a command must say which.
    assert main(["plan"]) == 2
    assert "--tenant" in capsys.readouterr().err
    assert main(["plan", "--tenant", FABRIKAM]) == 0
    planned = capsys.readouterr().out
    assert "mode=plan" in planned and f"Tenant: Fabrikam ({FABRIKAM})" in planned
    fabrikam_requests = sim.admin_for(FABRIKAM, "GET", "/requests")["value"]
    assert any(r["path"].startswith("/v1.0/groups") for r in fabrikam_requests)
    assert main(["runs", "--tenant", FABRIKAM]) == 0
    assert "plan" in capsys.readouterr().out
    assert main(["runs", "--tenant", NORTHWIND]) == 0
    assert "plan" not in capsys.readouterr().out  # Northwind has no runs of its own

    assert main(["tenants", "disable", NORTHWIND]) == 0
    assert main(["tenants", "show", NORTHWIND]) == 0
    assert '"enabled": false' in capsys.readouterr().out

    # Offboarding: the customer withdraws consent; we remove the record and its rows.
    sim.admin_for(FABRIKAM, "POST", "/consent", {"consented": False})
    assert main(["tenants", "check", FABRIKAM]) == 1
    assert "AADSTS700016" in capsys.readouterr().err
    assert store.for_tenant(FABRIKAM).list_runs(5)
    assert main(["tenants", "remove", FABRIKAM, "--purge"]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "deleted" in out
    assert store.for_tenant(FABRIKAM).list_runs(5) == []
    assert main(["tenants", "show", FABRIKAM]) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["tenants", "add", "not-a-guid", "--name", "X"], "tenantId"),
        (["tenants", "add", FABRIKAM, "--name", "X", "--recipient", "nobody"], "alertRecipients"),
        (["tenants", "add", FABRIKAM, "--name", "X", "--overrides", "{oops"], "--overrides"),
        (
            ["tenants", "add", FABRIKAM, "--name", "X", "--overrides", '{"changeBudget": 5}'],
            "changeBudget",
        ),
        (["plan", "--tenant", NORTHWIND], "no such tenant"),
    ],
)
def test_a_bad_tenant_command_says_what_is_wrong_and_records_nothing(
    msp: Any, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    _, _, file = msp
    assert main(args) == 2
    assert words in capsys.readouterr().err
    assert not file.exists()


def test_a_tenant_is_added_once(msp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tenants", "add", FABRIKAM, "--name", "Fabrikam"]) == 0
    assert main(["tenants", "add", FABRIKAM, "--name", "Other"]) == 2
    assert "already recorded" in capsys.readouterr().err
    assert main(["tenants", "add", FABRIKAM, "--name", "Fabrikam Ltd", "--replace"]) == 0
    assert main(["tenants", "show", FABRIKAM]) == 0
    assert "Fabrikam Ltd" in capsys.readouterr().out
