"""`make bench` / `python -m bench`: the engine on generated tenants, against the Graph simulator.

For each size (BENCH_SIZES, default S,M; L on request) it starts the simulator with 20 ms latency
and the large-tenant resource-unit budget, runs plan, apply, then apply again (each in its own
process, for its peak RSS), and times the reference strategy (bench/reference.py). Prints a table
and writes JSON records to BENCH_OUT (default bench/results/).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.reference import estimate
from localdev.services import ROOT, Azurite, Simulator, app_settings
from shared.report import table

SIZES = {
    "S": "users=1000,groups=80,skus=5,tagged=20",
    "M": "users=100000,groups=2000,skus=20,tagged=500",
    "L": "users=1000000,groups=8000,skus=50,tagged=2000",
}
LATENCY_MS = 20
RU_LIMIT = 8000  # per 10 s: Microsoft's budget for tenants over 500 users
SEED = 7
REFERENCE_SAMPLE_MEMBERS = 4000
PAGE = 999
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def path_kind(path: str) -> str:
    return GUID.sub("{id}", path.split("?")[0])


def minimum_requests(summary: dict[str, Any], writes_needed: int) -> int:
    """The fewest requests the semantics allow: one subscribedSkus, the tagged groups' pages, each
    group's direct members at 999 a page (an empty group still costs one), the writes needed."""
    groups = summary["groups"]
    member_pages = sum(
        max(1, math.ceil((g["memberCount"] + g["nestedGroupCount"]) / PAGE)) for g in groups
    )
    return 1 + max(1, math.ceil(len(groups) / PAGE)) + member_pages + writes_needed


def writes_needed(summary: dict[str, Any]) -> int:
    return sum(
        (1 if g["addLicenses"] or g["removeLicenses"] else 0) + g["reprocessUsers"]
        for g in summary["groups"]
        if g["decision"] in ("assign", "repair", "reprocess")
    )


def run_engine(mode: str, env: dict[str, str]) -> dict[str, Any]:
    """One engine run in a child process: its JSON output (wall time, peak RSS, summary)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.engine_run", mode],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"engine run ({mode}) failed: {proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bench_size(size: str, spec: str, azurite: Azurite, out_dir: Path) -> list[dict[str, Any]]:
    policy = subprocess.run(
        [sys.executable, "-m", "simulator", "policy", "--generate", spec],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    policy_path = out_dir / f"policy-{size}.yaml"
    policy_path.write_text(policy)
    started = time.perf_counter()
    sim = Simulator(
        generate=spec,
        extra_args=(
            "--seed",
            str(SEED),
            "--latency-ms",
            str(LATENCY_MS),
            "--latency-jitter-ms",
            "0",
            "--ru-limit",
            str(RU_LIMIT),
        ),
    ).start()
    load_s = time.perf_counter() - started
    env = app_settings(
        azurite,
        sim,
        LICENSING_POLICY_PATH=str(policy_path),
        LICENSING_ALERT_MAILBOX="",
        LICENSING_ALERT_RECIPIENTS="",
        LICENSING_TABLE_PREFIX=f"bench{size}{int(time.time())}",
    )
    records: list[dict[str, Any]] = []
    reference: dict[str, Any] | None = None
    plan_summary: dict[str, Any] | None = None
    try:
        for mode, label in (("plan", "plan"), ("apply", "apply"), ("apply", "apply-again")):
            sim.admin("DELETE", "/_sim/requests")
            result = run_engine(mode, env)
            summary = result["summary"]
            log = sim.admin("GET", "/_sim/requests")["value"]
            if plan_summary is None:
                plan_summary = summary
                reference = estimate(
                    sim.graph_base_url, sim.token_url, summary["groups"], REFERENCE_SAMPLE_MEMBERS
                )
            assert reference is not None
            needed = writes_needed(summary) if mode == "apply" else 0
            minimum = minimum_requests(summary, needed)
            by_path = Counter(f"{r['method']} {path_kind(r['path'])}" for r in log)
            groups = max(1, len(summary["groups"]))
            records.append(
                {
                    "size": size,
                    "mode": label,
                    "spec": spec,
                    "status": summary["status"],
                    "wall_s": round(result["wall_s"], 2),
                    "graph_requests": len(log),
                    "minimum_requests": minimum,
                    "requests_by_path": dict(sorted(by_path.items())),
                    "requests_per_group": round(len(log) / groups, 2),
                    "throttled_429": sum(1 for r in log if r["status"] == 429),
                    "resource_units": sum(int(r.get("ru") or 0) for r in log),
                    "writes": sum(1 for r in log if r["method"] != "GET"),
                    "peak_rss_mb": round(result["peak_rss_mb"], 1),
                    "groups": len(summary["groups"]),
                    "counts": summary["counts"],
                    "reference_wall_s": round(reference["estimated_s"], 1),
                    "reference": reference,
                    "speedup_vs_reference": round(reference["estimated_s"] / result["wall_s"], 1),
                    "simulator_load_s": round(load_s, 1),
                }
            )
    finally:
        sim.stop()
    return records


def main() -> int:
    sizes = [
        s.strip().upper() for s in os.environ.get("BENCH_SIZES", "S,M").split(",") if s.strip()
    ]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        print(
            f"BENCH_SIZES: unknown size(s) {', '.join(unknown)} (known: S, M, L)", file=sys.stderr
        )
        return 2
    out_dir = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    azurite = Azurite().start()
    records: list[dict[str, Any]] = []
    try:
        for size in sizes:
            print(f"size {size}: {SIZES[size]} ...", file=sys.stderr, flush=True)
            records += bench_size(size, SIZES[size], azurite, out_dir)
    finally:
        azurite.stop()
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "at": datetime.now(UTC).isoformat(),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"bench-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "machine": machine,
                "latency_ms": LATENCY_MS,
                "ru_limit_per_10s": RU_LIMIT,
                "records": records,
            },
            indent=2,
        )
    )
    print(
        table(
            [
                "size",
                "mode",
                "wall s",
                "requests",
                "minimum",
                "ratio",
                "429",
                "RU",
                "writes",
                "peak RSS MB",
                "reference s",
                "speedup",
            ],
            [
                [
                    r["size"],
                    r["mode"],
                    r["wall_s"],
                    r["graph_requests"],
                    r["minimum_requests"],
                    f"{r['graph_requests'] / r['minimum_requests']:.2f}",
                    r["throttled_429"],
                    r["resource_units"],
                    r["writes"],
                    r["peak_rss_mb"],
                    r["reference_wall_s"],
                    f"{r['speedup_vs_reference']}x",
                ]
                for r in records
            ],
        )
    )
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
