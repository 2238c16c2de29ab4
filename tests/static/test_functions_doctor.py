"""azure-functions-doctor (requirements-dev.txt) finds no error in the app as it deploys to Flex
Consumption with Python 3.11.

The doctor walks every file below its --path before filtering (about 90 s here with .venv and
node_modules), so it runs on a copy of the project without the folders that never deploy (virtual
environments, node_modules, git metadata, caches: all in .funcignore). Everything it reads to judge
the app (function_app.py, shared/, host.json, requirements.txt, .funcignore, infra/) is copied.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.static.bicep import ROOT

DOCTOR = Path(sys.executable).parent / "azure-functions-doctor"
# Never deployed (.funcignore) and git-ignored. local.settings.json too: a developer's own copy must
# not change the verdict (test_local_settings_are_not_tracked covers it instead).
NOT_COPIED = {
    ".git",
    ".venv",
    "node_modules",
    ".run",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "__pycache__",
    "test-artifacts",
    ".azure",
    "local.settings.json",
}


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in NOT_COPIED or n.startswith(".venv")}


def _results(tmp: Path) -> list[dict[str, Any]]:
    if not DOCTOR.exists():
        pytest.fail(
            f"azure-functions-doctor is not installed in {sys.prefix}: "
            "it is in requirements-dev.txt (make setup)",
            pytrace=False,
        )
    app = tmp / "app"
    shutil.copytree(ROOT, app, ignore=_ignore)
    out = tmp / "doctor.json"
    proc = subprocess.run(
        [
            str(DOCTOR),
            "doctor",
            "--path",
            str(app),
            "--profile",
            "full",
            "--hosting-plan",
            "flex-consumption",
            "--target-python",
            "3.11",
            "--format",
            "json",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.exists(), f"doctor wrote no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report["metadata"]["programming_model"] == "v2"
    items = [item for group in report["results"] for item in group["items"]]
    assert proc.returncode == 0, "doctor failed:\n" + "\n".join(
        f"{i['rule_id']}: {i.get('value')}" for i in items if i["status"] == "fail"
    )
    return items


@pytest.fixture(scope="module")
def doctor(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _results(tmp_path_factory.mktemp("doctor"))


def test_doctor_finds_no_error(doctor: list[dict[str, Any]]):
    errors = [i for i in doctor if i["status"] == "fail" and i.get("severity") == "error"]
    assert not errors, "\n".join(f"{i['rule_id']}: {i.get('value')}" for i in errors)


def test_doctor_finds_no_failed_check_at_all(doctor: list[dict[str, Any]]):
    """Non-gating failures (warning severity) too: deprecated Flex settings, dev storage, ..."""
    failed = [i for i in doctor if i["status"] == "fail"]
    assert not failed, "\n".join(f"{i['rule_id']}: {i.get('value')}" for i in failed)


def test_doctor_sees_the_flex_app_and_its_requirements(doctor: list[dict[str, Any]]):
    status = {i["rule_id"]: i["status"] for i in doctor}
    # check_programming_model_v2 (0.23.1) only looks at `def` decorators, not `async def`: once
    # every trigger is async it says "warn" although the app is v2 (the metadata above says so).
    assert status.get("check_programming_model_v2") in ("pass", "warn")
    for rule in (
        "check_host_json",
        "check_extension_bundle_v4",
        "check_requirements_txt",
        "check_azure_functions_worker",
        "check_unpinned_requirements",
        "check_flex_deprecated_settings",
        "check_dev_storage_connection",
        "check_funcignore",
    ):
        assert status.get(rule) == "pass", f"{rule}: {status.get(rule)}"
    assert status.get("check_local_settings_git_tracked") in ("pass", "skip")


def test_local_settings_are_not_tracked():
    """The doctor's own check needs git in the copied tree; ask git here (read-only)."""
    assert shutil.which("git") and (ROOT / ".git").exists(), (
        "run the tests from a git checkout: this asks git whether local.settings.json is tracked"
    )
    tracked = subprocess.run(
        ["git", "ls-files", "--", "local.settings.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tracked == "", (
        "local.settings.json is committed: remove it, only the sample belongs in git"
    )
