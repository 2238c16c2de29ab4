"""`make demo`: one apply-mode enforcement of the demo tenant, through the timer's own entry point.

Starts Azurite (persisting under .run/azurite) and the Graph simulator on free loopback ports, calls
function_app's timer function with a real azure.functions TimerRequest, prints the run as recorded
in Table Storage, writes the sent alert mails to .run/mail/, and stops what it started.

`make demo TENANTS=3` (`python -m localdev.demo --tenants 3`): one deployment enforcing three
customer tenants (Contoso, the home tenant; Fabrikam; Northwind): the timer queues one run per
tenant and the queue worker runs each, as the Functions host would deliver the messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from typing import Any

from azure.functions.timer import TimerRequest

from localdev.services import ROOT, Azurite, Simulator, app_settings
from shared.report import table

RUN_DIR = ROOT / ".run"
TENANT = ROOT / "simulator" / "tenants" / "demo.json"
MORE_TENANTS = (
    ROOT / "simulator" / "tenants" / "fabrikam.json",
    ROOT / "simulator" / "tenants" / "northwind.json",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.demo", description=__doc__)
    parser.add_argument(
        "--tenants", type=int, choices=(1, 3), default=1, help="1 (default) or 3 tenants"
    )
    args = parser.parse_args(argv)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    mail_dir = RUN_DIR / "mail"
    mail_dir.mkdir(parents=True)
    azurite = Azurite(location=RUN_DIR / "azurite").start()
    sim = Simulator(TENANT, tenants=MORE_TENANTS if args.tenants == 3 else ()).start()
    try:
        if args.tenants == 3:
            return _many(azurite, sim, mail_dir)
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
        _print_outbox(outbox)
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


def _print_outbox(outbox: list[dict[str, Any]]) -> None:
    print("\nAlert mails sent (simulator outbox):")
    print(
        table(
            ["#", "from", "to", "subject"],
            [
                [
                    i,
                    m["from"],
                    ", ".join(r["emailAddress"]["address"] for r in m["message"]["toRecipients"]),
                    m["message"]["subject"],
                ]
                for i, m in enumerate(outbox, 1)
            ],
        )
        if outbox
        else "  none"
    )


def _many(azurite: Azurite, sim: Simulator, mail_dir: Any) -> int:
    """Three tenants from one timer tick, through the queue."""
    from azure.functions.queue import QueueMessage

    from shared.queue import queue_client
    from shared.settings import Settings
    from shared.tenants import Tenant, TenantsFile

    tenants_file = RUN_DIR / "tenants.yaml"
    env = app_settings(
        azurite,
        sim,
        LICENSING_TENANTS_FILE=str(tenants_file),
        AzureWebJobsStorage=azurite.connection_string,
    )
    os.environ.update(env)
    records = TenantsFile(tenants_file)
    for served in sim.tenant_list():
        records.put(Tenant(served["tenantId"], served["displayName"], mode="apply"))
    import function_app
    from shared.report import render_run
    from shared.run import read_run
    from shared.store import TableStore

    print(f"Graph simulator: {sim.url}, serving {len(records.list())} tenants")
    print(f"Tenants file:    {tenants_file.relative_to(ROOT)} (python -m shared tenants list)\n")
    asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))
    queue = queue_client(Settings.from_env(env).run_queue)
    taken = list(queue.receive_messages(max_messages=32, visibility_timeout=300))
    print(f"The timer queued {len(taken)} runs, one per tenant; the worker runs each:\n")

    async def work() -> None:
        await asyncio.gather(
            *(
                function_app.run_worker(
                    QueueMessage(id=m.id, body=m.content.encode(), dequeue_count=1)
                )
                for m in taken
            )
        )

    asyncio.run(work())
    for m in taken:
        queue.delete_message(m)
    base = TableStore.from_settings(function_app.settings())
    rows, ok = [], True
    for tenant in records.list():
        store = base.for_tenant(tenant.tenant_id)
        recorded = read_run(store, store.list_runs(1)[0]["RunId"])
        assert recorded is not None
        print(f"== {tenant.display_name} ({tenant.tenant_id})")
        print(render_run(recorded) + "\n")
        rows.append([tenant.display_name, recorded["runId"], recorded["status"]])
        ok = ok and recorded["status"] in ("succeeded", "partial")
    print(table(["tenant", "run", "status"], rows))
    outbox = sim.admin("GET", "/_sim/outbox")["value"]
    for i, mail in enumerate(outbox, 1):
        (mail_dir / f"{i:02d}.html").write_text(mail["message"]["body"]["content"], "utf-8")
    _print_outbox(outbox)
    print(
        f"\nEach tenant's rows are in the same tables ({base.names['runs']}, ...), their "
        "PartitionKeys prefixed with its tenant id; alerts left from the home tenant's mailbox."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
