"""`make bench` / `python -m bench`: the engine on generated tenants, against the Graph simulator.

For each size (BENCH_SIZES, default S,M; L on request) and latency model (BENCH_MODELS, default
flat,proportional) it starts the simulator with that model and the large-tenant resource-unit
budget, runs plan, apply, then apply again (each in its own process, for its peak RSS), and times
the reference strategy (bench/reference.py). Beside each measured wall time it prints the two
physical bounds computed from the simulator's request log (docs/performance.md): the critical path
and the budget bound. Prints a table and writes JSON records to BENCH_OUT (default bench/results/).
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
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
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
LATENCY_MS = 20  # the flat model's (kept in the JSON as latency_ms)
# name -> (base ms per answer, ms per object in it)
MODELS = {"flat": (20.0, 0.0), "proportional": (80.0, 1.0)}
WRITE_LIMIT = 2_850  # the engine's write budget per 150 s (Graph's 3,000 less a margin)
WRITE_WINDOW_S = 150
MEMBERS_PATH = re.compile(r"^/v1\.0/groups/([^/]+)/members$")
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


def bounds(log: list[dict[str, Any]]) -> dict[str, float]:
    """The physical bounds of one run, from the simulator's log of it (docs/performance.md).

    critical path: the engine's sequential requests (subscribedSkus, the group queries and their
    pages, the SKU re-read after writes) summed, plus the longest group's member pages (each
    follows the previous one's nextLink), plus the longest write (writes depend on every read, not
    on each other), plus each round of processing-state polls at its slowest query. Budget bound:
    the run's resource units at the tenant's budget per 10 s, or the
    write limit's windows the writes need beyond the first (the window starts empty), whichever is
    longer."""
    prefix = 0.0
    chains: defaultdict[str, float] = defaultdict(float)
    polls: list[tuple[str, float]] = []
    longest_write = 0.0
    ru = writes = 0
    for r in log:
        latency = float(r.get("latencyMs") or 0) / 1000
        ru += int(r.get("ru") or 0)
        if r["method"] != "GET":
            if r["path"] != "/v1.0/$batch":
                writes += 1
            longest_write = max(longest_write, latency)
            continue
        member = MEMBERS_PATH.match(r["path"])
        if member:
            chains[member.group(1).lower()] += latency
        elif r["path"] == "/v1.0/groups" and "id in (" in str(r.get("query") or "") and r.get("at"):
            polls.append((str(r["at"]), latency))
        else:
            prefix += latency
    critical = prefix + _poll_rounds(polls) + max(chains.values(), default=0.0) + longest_write
    ru_bound = ru / RU_LIMIT * 10
    write_bound = (writes // WRITE_LIMIT) * WRITE_WINDOW_S
    return {
        "critical_path_s": round(critical, 2),
        "sequential_prefix_s": round(prefix, 2),
        "longest_chain_s": round(max(chains.values(), default=0.0), 2),
        "ru_bound_s": round(ru_bound, 2),
        "write_bound_s": float(write_bound),
        # The same limit as a steady rate (writes / 2,850 per 150 s): the definition,
        # above write_bound_s, which lets the first window's writes go at once.
        "write_rate_bound_s": round(writes / WRITE_LIMIT * WRITE_WINDOW_S, 2),
        "budget_bound_s": round(max(ru_bound, write_bound), 2),
    }


def _poll_rounds(polls: list[tuple[str, float]]) -> float:
    """The processing-state polls after the writes go side by side, a round at a time: a round
    costs its slowest query. A query that starts after the round's slowest answer has come back
    begins the next round (the engine waits between rounds)."""
    total = 0.0
    round_end: datetime | None = None
    longest = 0.0
    for at, latency in sorted(polls):
        start = datetime.fromisoformat(at)
        if round_end is not None and start < round_end:
            longest = max(longest, latency)
            round_end = max(round_end, start + timedelta(seconds=latency))
            continue
        total += longest
        longest, round_end = latency, start + timedelta(seconds=latency)
    return total + longest


def simulator_args(model: str) -> tuple[str, ...]:
    """The simulator's seed, latency model and resource-unit budget, the same in every bench."""
    base_ms, per_item_ms = MODELS[model]
    return (
        "--seed",
        str(SEED),
        "--latency-ms",
        str(base_ms),
        "--latency-per-item-ms",
        str(per_item_ms),
        # Seeded jitter (+-25 %) under the proportional model; the flat one stays as measured
        # before (fixed), so the tables compare.
        *(("--latency-jitter-ms", "0") if per_item_ms == 0 else ()),
        "--ru-limit",
        str(RU_LIMIT),
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


def bench_size(
    size: str, spec: str, model: str, azurite: Azurite, out_dir: Path
) -> list[dict[str, Any]]:
    base_ms, per_item_ms = MODELS[model]
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
    sim = Simulator(generate=spec, extra_args=simulator_args(model)).start()
    load_s = time.perf_counter() - started
    env = app_settings(
        azurite,
        sim,
        LICENSING_POLICY_PATH=str(policy_path),
        LICENSING_ALERT_MAILBOX="",
        LICENSING_ALERT_RECIPIENTS="",
        LICENSING_TABLE_PREFIX=f"bench{size}{model[:4]}{int(time.time())}",
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
                # S is read in full; larger sizes from a sample, scaled.
                target = math.inf if size == "S" else REFERENCE_SAMPLE_MEMBERS
                reference = estimate(sim.graph_base_url, sim.token_url, summary["groups"], target)
            assert reference is not None
            needed = writes_needed(summary) if mode == "apply" else 0
            minimum = minimum_requests(summary, needed)
            by_path = Counter(f"{r['method']} {path_kind(r['path'])}" for r in log)
            groups = max(1, len(summary["groups"]))
            bound = bounds(log)
            wall = result["wall_s"]
            records.append(
                {
                    "size": size,
                    "mode": label,
                    "latency_model": {
                        "name": model,
                        "base_ms": base_ms,
                        "per_item_ms": per_item_ms,
                        "jitter": "fixed" if per_item_ms == 0 else "+-25 % seeded",
                    },
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
                    **bound,
                    "bound_ratio": round(
                        wall / max(bound["critical_path_s"], bound["budget_bound_s"], 1e-9), 2
                    ),
                    "measured": [
                        "wall_s",
                        "graph_requests",
                        "throttled_429",
                        "resource_units",
                        "writes",
                        "peak_rss_mb",
                        "reference.measured_s",
                    ],
                    # computed from the log or the summary, not timed
                    "computed": [
                        "minimum_requests",
                        "critical_path_s",
                        "budget_bound_s",
                        "write_rate_bound_s",
                        "bound_ratio",
                    ],
                    "scaled": ["reference_wall_s"] if reference["scaled"] else [],
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
    models = [
        m.strip().lower()
        for m in os.environ.get("BENCH_MODELS", "flat,proportional").split(",")
        if m.strip()
    ]
    bad = [m for m in models if m not in MODELS]
    if bad:
        print(
            f"BENCH_MODELS: unknown model(s) {', '.join(bad)} (known: {', '.join(MODELS)})",
            file=sys.stderr,
        )
        return 2
    out_dir = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    azurite = Azurite().start()
    records: list[dict[str, Any]] = []
    try:
        for size in sizes:
            for model in models:
                print(f"size {size} ({model}): {SIZES[size]} ...", file=sys.stderr, flush=True)
                records += bench_size(size, SIZES[size], model, azurite, out_dir)
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
                "latency_models": {
                    k: {"base_ms": b, "per_item_ms": p} for k, (b, p) in MODELS.items()
                },
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
                "model",
                "mode",
                "wall s",
                "critical path s",
                "budget bound s",
                "bound ratio",
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
                    r["latency_model"]["name"],
                    r["mode"],
                    r["wall_s"],
                    r["critical_path_s"],
                    r["budget_bound_s"],
                    r["bound_ratio"],
                    r["graph_requests"],
                    r["minimum_requests"],
                    f"{r['graph_requests'] / r['minimum_requests']:.2f}",
                    r["throttled_429"],
                    r["resource_units"],
                    r["writes"],
                    r["peak_rss_mb"],
                    f"{r['reference_wall_s']}{'*' if r['reference']['scaled'] else ''}",
                    f"{r['speedup_vs_reference']}x",
                ]
                for r in records
            ],
        )
    )
    print("\n* scaled from a sample (the rest is measured; bounds are computed from the log)")
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["tenants"]:  # `python -m bench tenants ...`: bench/tenants.py
        from bench.tenants import main as tenants_main

        sys.exit(tenants_main(sys.argv[2:]))
    sys.exit(main())
