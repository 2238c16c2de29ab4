"""`make demo`: one apply-mode enforcement of the demo tenant, through the timer's own entry point.

Starts Azurite (persisting under .run/azurite) and the Graph simulator on free loopback ports, calls
function_app's timer function with a real azure.functions TimerRequest, prints the run as recorded
in Table Storage, writes the sent alert mails to .run/mail/, and stops what it started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

from azure.functions.timer import TimerRequest

from localdev.services import ROOT, Azurite, Simulator, app_settings
from shared.report import table

RUN_DIR = ROOT / ".run"
TENANT = ROOT / "simulator" / "tenants" / "demo.json"


def main() -> int:
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    mail_dir = RUN_DIR / "mail"
    mail_dir.mkdir(parents=True)
    azurite = Azurite(location=RUN_DIR / "azurite").start()
    sim = Simulator(TENANT).start()
    try:
        env = app_settings(azurite, sim, LICENSING_TIMER_MODE="apply")
        os.environ.update(env)
        import function_app  # after the settings exist: it reads them once
        from shared.report import render_run
        from shared.run import read_run
        from shared.store import TableStore

        print(f"Graph simulator: {sim.url} (tenant {TENANT.relative_to(ROOT)})")
        print(
            f"Azurite Tables:  http://127.0.0.1:{azurite.table_port}/devstoreaccount1 "
            f"(data kept in {(RUN_DIR / 'azurite').relative_to(ROOT)}/)\n"
        )
        asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))

        store = TableStore.from_settings(function_app.settings())
        latest = store.list_runs(1)[0]
        recorded = read_run(store, latest["RunId"])
        assert recorded is not None
        print(render_run(recorded))

        outbox = sim.admin("GET", "/_sim/outbox")["value"]
        for i, mail in enumerate(outbox, 1):
            msg = mail["message"]
            (mail_dir / f"{i:02d}.html").write_text(msg["body"]["content"], encoding="utf-8")
        print("\nAlert mails sent (simulator outbox):")
        print(
            table(
                ["#", "from", "to", "subject"],
                [
                    [
                        i,
                        m["from"],
                        ", ".join(
                            r["emailAddress"]["address"] for r in m["message"]["toRecipients"]
                        ),
                        m["message"]["subject"],
                    ]
                    for i, m in enumerate(outbox, 1)
                ],
            )
            if outbox
            else "  none"
        )
        names = store.names
        print(
            f"\nRecorded in Table Storage: run {latest['RunId']} in table {names['runs']}, "
            f"group and SKU results in {names['groups']} (PartitionKey {latest['RunId']}), "
            f"seat history in {names['skus']}, alert state in {names['alerts']}."
        )
        print(
            f"Mail bodies written to {mail_dir.relative_to(ROOT)}/; the Table data stays in "
            f"{(RUN_DIR / 'azurite').relative_to(ROOT)}/ (start Azurite with --location on it "
            "to browse it)."
        )
        return 0 if recorded["status"] in ("succeeded", "partial") else 1
    finally:
        sim.stop()
        azurite.stop()


if __name__ == "__main__":
    sys.exit(main())
