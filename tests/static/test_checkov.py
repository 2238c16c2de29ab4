"""checkov passes on the Bicep, every suppression carries its reason, and every file was parsed.

checkov lives in its own venv (scripts/install-checkov.sh, run by `make setup`): it pins an old
`packaging`. It runs offline: no Prisma Cloud guideline download, no version check.

infra/app/graph-permissions.bicep and infra/app/multitenant-app.bicep are left out of the checkov
run: checkov's Bicep parser (pycep) does not know the `extension` keyword, and the files declare
only Microsoft.Graph resources, for which checkov has no checks. A test below parses the rest of
each file with pycep and checks it declares nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.static.bicep import INFRA, ROOT, bicep_files, read, resource_types

CHECKOV_VENV = Path(os.environ.get("CHECKOV_VENV", ROOT / ".venv" / "checkov"))
CHECKOV = CHECKOV_VENV / "bin" / "checkov"
NOT_SCANNED = {INFRA / "app" / "graph-permissions.bicep", INFRA / "app" / "multitenant-app.bicep"}
OFFLINE = {
    "BC_SKIP_MAPPING": "TRUE",
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",
    "CKV_PARSE_ERROR_FAIL": "TRUE",
}


def _require_checkov() -> None:
    if not CHECKOV.exists():
        pytest.fail(
            f"checkov is not installed at {CHECKOV}: run scripts/install-checkov.sh "
            "(make setup does)",
            pytrace=False,
        )


@cache
def _report() -> dict[str, Any]:
    _require_checkov()
    cmd = [
        str(CHECKOV),
        "-d",
        str(INFRA),
        "--framework",
        "bicep",
        "--compact",
        "--skip-download",
        "-o",
        "json",
    ]
    for path in sorted(NOT_SCANNED):
        cmd += ["--skip-path", str(path.relative_to(ROOT))]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE}
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"checkov printed no JSON (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    assert isinstance(report, dict), "expected one framework (bicep) in the report"
    return report


def _where(check: dict[str, Any]) -> str:
    return f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"


def test_checkov_finds_no_failed_check():
    failed = _report()["results"]["failed_checks"]
    assert not failed, "checkov failed:\n" + "\n".join(_where(c) for c in failed)


def test_checkov_parsed_every_bicep_file():
    report = _report()
    assert report["summary"]["parsing_errors"] == 0, report["results"]["parsing_errors"]
    checked = {
        c["file_path"]
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for c in report["results"][kind]
    }
    for path in bicep_files():
        if path in NOT_SCANNED:
            continue
        azure = [
            t
            for t in resource_types(read(str(path.relative_to(INFRA))))
            if t.startswith(("Microsoft.Web/", "Microsoft.Storage/"))
        ]
        if azure:
            assert "/" + str(path.relative_to(INFRA)) in checked, (
                f"checkov checked nothing in {path}"
            )


def test_each_suppression_says_why():
    skipped = _report()["results"]["skipped_checks"]
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 8, f"suppression without a real reason: {_where(check)}"


def test_the_file_checkov_skips_holds_only_graph_resources_and_parses():
    for path in NOT_SCANNED:
        text = read(str(path.relative_to(INFRA)))
        assert all(t.startswith("Microsoft.Graph/") for t in resource_types(text))
        _require_checkov()
        # pycep (checkov's parser) validates the rest of the file once the extension line is gone.
        without_extension = "\n".join(
            "" if line.strip().startswith("extension ") else line
            for line in path.read_text().splitlines()
        )
        probe = (
            "import sys\nfrom pycep import BicepParser\n"
            "BicepParser().parse(text=sys.stdin.read())\n"
        )
        proc = subprocess.run(
            [str(CHECKOV_VENV / "bin" / "python"), "-c", probe],
            input=without_extension,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"{path} does not parse:\n{proc.stderr[-2000:]}"
