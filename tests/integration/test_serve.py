"""`make serve` end to end: the printed dashboard URL opens, POST /api/runs with the printed key
works, the queued run is carried out, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

from localdev.services import ROOT


def test_make_serve_prints_a_dashboard_url_that_opens_and_runs_can_be_started():
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.serve", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while "Dashboard" not in printed and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if ":" in line:
                name, _, value = line.partition(":")
                printed[name.strip()] = value.strip().split(" ")[0]
        dashboard, api, key = printed["Dashboard"], printed["API"], printed["Function key"]
        assert dashboard.startswith("http://127.0.0.1:") and f"code={key}" in dashboard
        with urllib.request.urlopen(dashboard, timeout=60) as page:  # loopback only
            html = page.read().decode()
        assert "Group licensing: seats" in html and "LIC-Partners-E5" in html, "the seeded run"
        start = urllib.request.Request(
            f"{api}/runs",
            data=json.dumps({"mode": "plan"}).encode(),
            method="POST",
            headers={"x-functions-key": key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(start, timeout=60) as answer:
            assert answer.status == 202
            status_url = json.loads(answer.read())["statusUrl"]
        deadline = time.monotonic() + 60
        while True:
            got = urllib.request.Request(status_url, headers={"x-functions-key": key})
            with urllib.request.urlopen(got, timeout=60) as answer:
                run = json.loads(answer.read())
            if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert run["status"] == "succeeded" and run["mode"] == "plan"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
