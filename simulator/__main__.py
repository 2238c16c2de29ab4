"""`python -m simulator serve --port PORT --tenant FILE` (see docs/simulator.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from simulator.server import SimServer, is_loopback
from simulator.tenant import Tenant, TenantError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve Microsoft Graph v1.0 on loopback")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--tenant", required=True, help="tenant JSON file")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address only")
    serve.add_argument("--latency-ms", type=float, default=0, help="added to every /v1.0 call")
    serve.add_argument(
        "--processing-delay-s",
        type=float,
        default=0,
        help="licence processing delay after assignLicense (0 = done before the 202)",
    )
    serve.add_argument("--seed", type=int, default=None, help="seed for request ids and jitter")
    serve.add_argument(
        "--ru-limit",
        type=int,
        default=None,
        help="resource units per 10 s before 429 (default by tenant size; 0 = no throttling)",
    )
    args = parser.parse_args(argv)

    if not is_loopback(args.host):
        parser.error(f"--host {args.host!r} is not a loopback address; use 127.0.0.1")
    try:
        tenant = Tenant.from_file(args.tenant)
    except TenantError as exc:
        print(f"error: invalid tenant file: {exc}", file=sys.stderr)
        return 2
    server = SimServer(
        tenant,
        args.host,
        args.port,
        latency_ms=args.latency_ms,
        processing_delay_s=args.processing_delay_s,
        seed=args.seed,
        ru_limit=args.ru_limit,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so it must run on another thread.
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"simulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        tenant.cancel_pending()
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
