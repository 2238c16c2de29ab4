"""`python -m simulator serve --port PORT (--tenant FILE | --generate SPEC)` (docs/simulator.md).

`--tenant` repeated, or `--generate SPEC --generate-tenants N`, serves several tenants at once; the
first is the default tenant.

Also `python -m simulator policy --generate SPEC` prints a licensing policy for a generated tenant.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from shared.common import is_loopback_host as is_loopback
from simulator.generate import GenerateSpec, generate_tenant, parse_spec, policy_for
from simulator.server import (
    TENANT_WRITE_LIMIT,
    WRITE_LIMIT,
    SimServer,
    _parse_fault,
)
from simulator.tenant import HIDDEN_MEMBERS_MODES, MULTI_SKU_ERROR_MODES, Tenant, TenantError


def _fault_arg(text: str) -> dict[str, object]:
    """`REGEX=PROBABILITY[:STATUS]`, e.g. `/members=0.05:503`."""
    m = re.fullmatch(r"(?P<path>.+)=(?P<p>[0-9.]+)(?::(?P<status>\d{3}))?", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"expected REGEX=PROBABILITY[:STATUS], got {text!r}")
    fault: dict[str, object] = {"path": m["path"], "probability": float(m["p"])}
    if m["status"]:
        fault["status"] = int(m["status"])
    return fault


def generate_tenants(spec: GenerateSpec, count: int, seed: int) -> list[Tenant]:
    """`count` tenants of one spec, seeds `seed`, `seed + 1`, ...: the first is the tenant a
    single `--generate` gives; each has its own tenant id and a display name."""
    tenants = []
    ids: set[str] = set()
    for i in range(count):
        tenant = generate_tenant(spec, seed + i)
        if tenant.tenant_id in ids:  # a 128-bit collision: not expected, but never served twice
            raise RuntimeError(f"generated tenant id {tenant.tenant_id} twice")
        ids.add(tenant.tenant_id)
        if count > 1:
            tenant.display_name = f"Generated tenant {i + 1:03d}"
        tenants.append(tenant)
    return tenants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve Microsoft Graph v1.0 on loopback")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--tenant",
        action="append",
        help="tenant JSON file; repeat to serve several tenants (the first is the default)",
    )
    source.add_argument(
        "--generate",
        metavar="SPEC",
        help="generate a tenant: users=N,groups=G,skus=S[,guests=0.01,nested=0.05,"
        "errors=0.01,tagged=T] (deterministic with --seed)",
    )
    serve.add_argument(
        "--generate-tenants",
        type=int,
        default=1,
        metavar="N",
        help="with --generate: N tenants of that spec, seeds --seed, --seed+1, ... (distinct "
        "tenant ids; named 'Generated tenant 001', ...)",
    )
    serve.add_argument(
        "--tenants-out",
        metavar="FILE",
        help="write the served tenants as a JSON list of {tenantId, displayName}",
    )
    serve.add_argument("--host", default="127.0.0.1", help="loopback address only")
    serve.add_argument("--latency-ms", type=float, default=0, help="added to every /v1.0 call")
    serve.add_argument(
        "--processing-delay-s",
        type=float,
        default=0,
        help="licence processing delay after assignLicense (0 = done before the 202)",
    )
    serve.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for request ids, jitter, random faults and --generate (default 0 there)",
    )
    serve.add_argument(
        "--latency-jitter-ms",
        type=float,
        default=None,
        help="latency spread: uniform +-X ms (0 = fixed; default +-25 %% of --latency-ms)",
    )
    serve.add_argument(
        "--latency-per-item-ms",
        type=float,
        default=0,
        help="latency model: add X ms per object in the answer (a page of 999 users: 999 X); "
        "0 = flat --latency-ms",
    )
    serve.add_argument(
        "--write-limit",
        type=int,
        default=WRITE_LIMIT,
        help="writes per app per 150 s before 429 (default 3000; 0 = none)",
    )
    serve.add_argument(
        "--tenant-write-limit",
        type=int,
        default=TENANT_WRITE_LIMIT,
        help="writes per tenant per 300 s, all apps together, before 429 (default 18000; 0 = none)",
    )
    serve.add_argument(
        "--rejected-requests-debit",
        action="store_true",
        help="a throttled request also spends resource units (recovery takes longer)",
    )
    serve.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="throttling windows run this many times faster (10: the 10 s RU window is 1 s)",
    )
    serve.add_argument(
        "--fault",
        type=_fault_arg,
        action="append",
        default=[],
        metavar="REGEX=P[:STATUS]",
        help="random error rate for paths matching REGEX (status default 503); repeatable",
    )
    serve.add_argument(
        "--ru-limit",
        type=int,
        default=None,
        help="resource units per 10 s before 429 (default by tenant size; 0 = no throttling)",
    )
    # Behaviours Microsoft's docs leave open (docs/simulator.md "Switches").
    serve.add_argument(
        "--error-sku-in-assigned-licenses",
        action="store_true",
        help="list a SKU whose assignment is in Error in the user's assignedLicenses",
    )
    serve.add_argument(
        "--multi-sku-error",
        choices=MULTI_SKU_ERROR_MODES,
        default="all",
        help="a multi-SKU group short on one SKU: CountViolation on every SKU (all) or on the "
        "short one only, Other on the rest (short-only)",
    )
    serve.add_argument(
        "--hidden-members",
        choices=HIDDEN_MEMBERS_MODES,
        default="forbidden",
        help="members of a HiddenMembership group without Member.Read.Hidden: 403 (forbidden), "
        "none (empty) or some, silently (partial)",
    )
    policy = sub.add_parser("policy", help="print a licensing policy for a generated tenant")
    policy.add_argument("--generate", metavar="SPEC", required=True, help="as for serve")
    args = parser.parse_args(argv)

    if args.command == "policy":
        try:
            print(policy_for(parse_spec(args.generate)), end="")
        except ValueError as exc:
            parser.error(f"--generate: {exc}")
        return 0
    if not is_loopback(args.host):
        parser.error(f"--host {args.host!r} is not a loopback address; use 127.0.0.1")
    if args.generate_tenants < 1:
        parser.error("--generate-tenants must be at least 1")
    if args.generate_tenants > 1 and args.generate is None:
        parser.error("--generate-tenants needs --generate SPEC")
    tenants: list[Tenant] = []
    if args.generate is not None:
        try:
            spec: GenerateSpec = parse_spec(args.generate)
        except ValueError as exc:
            parser.error(f"--generate: {exc}")
        tenants = generate_tenants(spec, args.generate_tenants, args.seed or 0)
    else:
        for path in args.tenant:
            try:
                tenants.append(Tenant.from_file(path))
            except TenantError as exc:
                print(f"error: invalid tenant file: {exc}", file=sys.stderr)
                return 2
        seen: dict[str, str] = {}
        for path, t in zip(args.tenant, tenants, strict=True):
            if t.tenant_id in seen:
                print(
                    f"error: {path} and {seen[t.tenant_id]} are the same tenant ({t.tenant_id})",
                    file=sys.stderr,
                )
                return 2
            seen[t.tenant_id] = path
    # Millions of long-lived objects: keep them out of every future garbage collection.
    gc.freeze()
    # A members page allocates ~10,000 containers and the rendered-users cache keeps many: at
    # the default 700 the collector runs (and reaches the cache) often enough to cost a quarter
    # of a cold members read.
    gc.set_threshold(10_000, 10, 10)
    try:
        server = SimServer(
            tenants,
            args.host,
            args.port,
            latency_ms=args.latency_ms,
            processing_delay_s=args.processing_delay_s,
            seed=args.seed,
            ru_limit=args.ru_limit,
            write_limit=args.write_limit,
            tenant_write_limit=args.tenant_write_limit,
            rejected_requests_debit=args.rejected_requests_debit,
            time_scale=args.time_scale,
            latency_jitter_ms=args.latency_jitter_ms,
            latency_per_item_ms=args.latency_per_item_ms,
            error_sku_in_assigned_licenses=args.error_sku_in_assigned_licenses,
            multi_sku_error=args.multi_sku_error,
            hidden_members=args.hidden_members,
        )
    except ValueError as exc:
        parser.error(str(exc))
    # A random error rate is chaos for the whole service: every tenant gets it.
    for state in server.tenants.values():
        state.faults.extend(_parse_fault(fault) for fault in args.fault)
    if args.tenants_out:
        listing = [
            {"tenantId": s.tenant_id, "displayName": s.display_name}
            for s in server.tenants.values()
        ]
        try:
            Path(args.tenants_out).write_text(json.dumps(listing, indent=2) + "\n", "utf-8")
        except OSError as exc:
            server.httpd.server_close()
            print(f"error: cannot write --tenants-out {args.tenants_out}: {exc}", file=sys.stderr)
            return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so it must run on another thread.
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"simulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.cancel_pending()
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
