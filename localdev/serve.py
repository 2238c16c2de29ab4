"""`make serve`: the app's HTTP API and dashboard on a loopback port, for trying them locally.

A development tool: it starts Azurite (data under .run/serve/azurite) and the Graph simulator with
the demo tenant, records one plan run through the timer function so the dashboard has something
to show, and puts localdev/front.py in front of function_app (HTTP routes from the triggers'
metadata, a function key, the queue worker on Azurite's queue). It prints the dashboard URL and
runs until Ctrl-C. Deployments use the real Functions host.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import threading
from types import FrameType

from azure.functions.timer import TimerRequest

from localdev.services import ROOT, Azurite, Simulator, app_settings

RUN_DIR = ROOT / ".run" / "serve"
TENANT = ROOT / "simulator" / "tenants" / "demo.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make serve", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7071, help="loopback port (0: any free one)")
    parser.add_argument("--key", default="", help="the function key (default: a random one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("licensing", "licensing.front"):  # runs and requests; not every SDK call
        logging.getLogger(name).setLevel(logging.INFO)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    azurite = Azurite(location=RUN_DIR / "azurite").start()
    sim = Simulator(TENANT).start()
    front = None
    try:
        os.environ.update(
            app_settings(azurite, sim, LICENSING_HTTP_APPLY_WITHOUT_AUTH="true"),
            AzureWebJobsStorage=azurite.connection_string,
        )
        import function_app  # after the settings exist: it reads them once
        from localdev.front import Front

        asyncio.run(function_app.nightly_enforcement(TimerRequest(past_due=False)))
        front = Front(function_app.app, port=args.port, **({"key": args.key} if args.key else {}))
        front.start()
        print(
            f"\nGraph simulator: {sim.url} (tenant {TENANT.relative_to(ROOT)})\n"
            f"Function key:    {front.key} (x-functions-key header or ?code=)\n"
            f"API:             {front.url} (docs/openapi.yaml)\n"
            f"Dashboard:       {front.url}/dashboard?code={front.key}\n"
            f"Try:             curl -s -X POST -H 'x-functions-key: {front.key}' "
            f'-d \'{{"mode": "plan"}}\' {front.url}/runs\n'
            "Ctrl-C stops it.",
            flush=True,
        )
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        stop.wait()
        return 0
    finally:
        if front is not None:
            front.stop()
        sim.stop()
        azurite.stop()


if __name__ == "__main__":
    sys.exit(main())
