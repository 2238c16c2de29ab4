"""The seat dashboard in real headless Chromium: the demo tenant's seats, history and forecast.

The page comes from the dashboard function behind the local front (`make serve`'s, on 127.0.0.1,
with the function key); Chromium (Debian package `chromium`, installed by `make setup`) renders it
to test-artifacts/dashboard.png and dumps the DOM.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest

import function_app
from localdev.front import Front
from localdev.services import ROOT
from shared.store import new_run_id
from tests.integration.conftest import World
from tests.integration.test_function_app import app_world, body, post_run

__all__ = ["app_world"]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
GROWTH = {"ENTERPRISEPREMIUM": 0.75, "EMSPREMIUM": 0.5}  # seats a day in the seeded history


def chromium() -> str:
    found = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    if not found:
        pytest.fail(
            "headless Chromium is needed for the dashboard test and was not found at "
            f"{CHROMIUM}: install the Debian package `chromium` (`make setup` does it on CI)",
            pytrace=False,
        )
    return found


@pytest.fixture
def served(app_world: World) -> Iterator[str]:
    """The page as a browser gets it: through the local front (localdev/front.py), which routes
    by the functions' own metadata and checks the function key, as `make serve` does."""
    front = Front(function_app.app, listen_queues=False).start()
    yield f"{front.url}/dashboard?code={front.key}"
    front.stop()


def seed_history(world: World, skus: list[dict[str, object]]) -> None:
    """Snapshots from the four weeks before the run, as nightly runs would have left them."""
    now = datetime.now(UTC)
    for days in range(28, 0, -4):
        at = now - timedelta(days=days, hours=1)
        run_id = new_run_id(at, "0ld" + f"{days:03d}")
        rows = []
        for s in skus:
            rate = GROWTH.get(str(s["skuPartNumber"]), 0)
            consumed = max(0, round(int(str(s["consumed"])) - rate * days))
            rows.append(
                {
                    "PartitionKey": s["skuId"],
                    "At": at.isoformat(),
                    "Mode": "plan",
                    "SkuPartNumber": s["skuPartNumber"],
                    "Enabled": s["enabled"],
                    "Consumed": consumed,
                }
            )
        world.store.put_sku_snapshots(run_id, rows)


def test_dashboard_in_chromium_shows_the_demo_tenants_seats(app_world: World, served: str):
    browser = chromium()
    applied = body(post_run({"mode": "apply", "wait": True}))
    seed_history(app_world, applied["skus"])
    status = body(
        asyncio.run(
            function_app.get_status(func.HttpRequest("GET", "http://x/api/status", body=b""))
        )
    )
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    profile = ARTIFACTS / "chromium-profile"
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
    ]
    try:
        dom = subprocess.run(
            [*flags, "--dump-dom", served], capture_output=True, text=True, timeout=60
        )
        subprocess.run(
            [*flags, f"--screenshot={shot}", served], capture_output=True, text=True, timeout=60
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "Group licensing: seats" in html
    assert status["skus"], "the demo tenant's SKUs are shown"
    # The demo tenant carries Microsoft's skuIds: each card is titled with the product name.
    assert "<h3>Office 365 E5 (ENTERPRISEPREMIUM)</h3>" in html
    for sku in status["skus"]:
        assert sku["productName"] and f"({sku['skuPartNumber']})</h3>" in html
        for figure in ("enabled", "consumed", "free", "demand"):
            assert f"<title>{figure}: {sku[figure]}</title>" in html, (sku["skuPartNumber"], figure)
    growing = {s["skuPartNumber"]: s["forecast"] for s in status["skus"]}
    assert growing["ENTERPRISEPREMIUM"]["state"] in ("growing", "exhausted")
    assert "Forecast: runs out 20" in html or "Forecast: no seats left" in html
    assert "LIC-Partners-E5" in html and "blocked-guests" in html
    assert 'class="history"' in html, "seat history charts are drawn from the snapshots"

    assert shot.exists(), "Chromium wrote no screenshot"
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1280, 1600)
    assert len(png) > 30_000, "the screenshot looks empty"
