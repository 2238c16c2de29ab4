"""`python -m bench.pacing [GROUPS] [RU_LIMIT] [TIME_SCALE]`: one apply under a resource-unit limit
far below the engine's budget (a small or loaded tenant, another client of the same app).

The simulator runs its throttling windows TIME_SCALE times faster and the engine's pacer is given
the same windows. Prints the wall time, requests, 429s and RU the simulator logged
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

from localdev.services import Azurite, Simulator, app_settings
from shared.graph import GraphPacer, use_pacer
from shared.run import execute_run
from shared.settings import Settings
from tests.integration.tenants import POLICY, TenantBuilder


def main(argv: list[str]) -> int:
    groups = int(argv[0]) if argv else 50
    ru_limit = int(argv[1]) if len(argv) > 1 else 100
    scale = float(argv[2]) if len(argv) > 2 else 2.0
    t = TenantBuilder(e5=groups * 2, ems=groups * 2)
    for i in range(groups):
        t.group(f"LIC-{i:03d}", "e5-full", t.users_named(f"u{i}-", 1))
    with tempfile.TemporaryDirectory() as tmp:
        tenant, policy = Path(tmp, "tenant.json"), Path(tmp, "policy.yaml")
        tenant.write_text(json.dumps(t.build()))
        policy.write_text(
            POLICY + "changeBudget: {maxGroupsChanged: 5000, maxUsersAffected: 5000}\n"
        )
        azurite = Azurite().start()
        args = ("--ru-limit", str(ru_limit), "--time-scale", str(scale))
        sim = Simulator(tenant, extra_args=args).start()
        try:
            env = app_settings(
                azurite,
                sim,
                LICENSING_TABLE_PREFIX="pace" + secrets.token_hex(4),
                LICENSING_POLICY_PATH=str(policy),
                LICENSING_ALERT_MAILBOX="",
                LICENSING_ALERT_RECIPIENTS="",
            )
            settings = Settings.from_env(env)
            pacer = GraphPacer(read_window_s=10 / scale, write_window_s=150 / scale)
            use_pacer(settings.graph_base_url, pacer)
            started = time.perf_counter()
            summary = asyncio.run(execute_run(settings, "apply", "bench")).summary()
            wall = time.perf_counter() - started
            log = [
                r
                for r in sim.admin("GET", "/_sim/requests")["value"]
                if r["path"].startswith("/v1.0")
            ]
        finally:
            sim.stop()
            azurite.stop()
    record = {
        "groups": groups,
        "ru_limit": ru_limit,
        "time_scale": scale,
        "status": summary["status"],
        "wall_s": round(wall, 2),
        "requests": len(log),
        "throttled_429": sum(r["status"] == 429 for r in log),
        "resource_units": sum(r["ru"] for r in log),
        "pressure_answers": pacer.pressure,
        "peak_usage": pacer.peak_usage,
    }
    print(json.dumps(record))
    return 0 if summary["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
