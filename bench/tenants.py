"""`python -m bench tenants` / `make bench-tenants`: many generated tenants through the run queue.

One simulator serves N generated tenants of one spec (default 200 of the bench's S); the tenants
file lists them all. For each worker count W (default 1, 2, 4), on a fresh table prefix and queue:
one nightly tick (`shared.fanout.nightly`, timed: the enqueue cost), then W worker processes
(bench/tenants_worker.py) consume the Azurite queue as W Functions instances would, two tenant
runs at a time each. Reports the wall time from `go` to the last run's end, per-tenant run time
p50/p95, throughput, the scale-out ratio wall(1) / wall(W), Graph requests, peak RSS per worker,
and the CPU every process spent (workers, simulator, Azurite) beside the machine's CPU bound
(CPU seconds / cores), which the W-worker wall time cannot beat (docs/performance.md "Many
tenants: scale-out"). Prints a table and writes JSON to BENCH_OUT (default bench/results/).

The simulator is restarted for each W (same seeds, so the same tenants): every W enforces the
same starting world, also in apply mode, and its request logs and CPU time are that W's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench.__main__ import MODELS, RU_LIMIT, SIZES, bounds, simulator_args
from localdev.services import ROOT, Azurite, Simulator, app_settings
from shared.fanout import nightly
from shared.queue import PER_INSTANCE_RUNS, RunQueue, queue_client
from shared.report import table
from shared.settings import Settings
from shared.tenants import Tenant, dump_tenants

DONE = ("succeeded", "partial")  # a run that enforced its tenant (partial: some groups held)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- arithmetic (tests/unit/test_bench_tenants.py) ---------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks (as numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def cpu_bound_s(cpu_s: float, cores: int) -> float:
    """The shortest wall time the machine allows for this much CPU work on `cores` cores."""
    return cpu_s / max(1, cores)


def attainable_ratio(wall_1: float, workers: float, cpu_bound: float) -> float:
    """The scale-out ratio `workers` times the baseline's workers could reach here: that many
    times, unless the run's CPU bound is longer than wall(1) / workers (then wall(1) / bound)."""
    return wall_1 / max(wall_1 / workers, cpu_bound, 1e-9)


def summarize(
    workers: list[dict[str, Any]], go: float, tenants: int, cores: int, other_cpu_s: float
) -> dict[str, Any]:
    """One worker count's figures from its workers' JSON; `other_cpu_s`: the simulator's and
    Azurite's CPU seconds during the same span."""
    runs = [r for w in workers for r in w["runs"]]
    durations = [r["end"] - r["start"] for r in runs]
    done = [r for r in runs if r["status"] in DONE]
    wall = max([w["end"] for w in workers] + [go]) - go
    worker_cpu = sum(w["cpu_s"] for w in workers)
    cpu = worker_cpu + other_cpu_s
    return {
        "wall_s": round(wall, 2),
        "tenants_done": len(done),
        "tenants_failed": tenants - len(done),
        "statuses": {
            s: sum(1 for r in runs if r["status"] == s) for s in sorted({r["status"] for r in runs})
        },
        "run_p50_s": round(percentile(durations, 50), 2) if durations else None,
        "run_p95_s": round(percentile(durations, 95), 2) if durations else None,
        "run_max_s": round(max(durations), 2) if durations else None,
        "done_by_p95_s": round(percentile([r["end"] - go for r in runs], 95), 2) if runs else None,
        "tenants_per_min": round(len(done) / wall * 60, 1) if wall > 0 else None,
        "worker_cpu_s": round(worker_cpu, 1),
        # A worker is one Python process: it runs on one core at a time. With a core per worker
        # (as each Functions instance has its own CPU), the busiest worker's CPU bounds the run.
        "worker_cpu_s_each": [round(w["cpu_s"], 1) for w in workers],
        "worker_cpu_max_s": round(max([w["cpu_s"] for w in workers], default=0.0), 1),
        "cpu_s": round(cpu, 1),
        "cpu_s_per_tenant": round(cpu / max(1, tenants), 3),
        "cpu_bound_s": round(cpu_bound_s(cpu, cores), 1),
        "peak_rss_mb_per_worker": [round(w["peak_rss_mb"], 1) for w in workers],
        "runs_per_worker": [len(w["runs"]) for w in workers],
    }


# -- processes ---------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_rss_mb(pid: int, key: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident set of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_simulator(spec: str, tenants: int, model: str, tenants_out: Path) -> Simulator:
    return Simulator(
        generate=spec,
        generate_tenants=tenants,
        extra_args=(*simulator_args(model), "--tenants-out", str(tenants_out)),
    ).start()


def spawn_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[str]]:
    procs: list[subprocess.Popen[str]] = []
    for i in range(count):
        # stderr to a file: the engine's warnings would fill a pipe nobody reads.
        err: IO[str] = open(logs / f"worker-{count}-{i}.log", "w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.tenants_worker"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        )
    for i, p in enumerate(procs):
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(
                f"worker {i} did not start ({line!r}): see {logs}/worker-{count}-{i}.log"
            )
    return procs


def graph_requests(sim: Simulator, tenant_ids: list[str]) -> tuple[int, int, float]:
    """Every tenant's /v1.0 requests, 429s and critical paths summed (bench/__main__.py
    `bounds`), from the simulator's per-tenant logs."""
    total = throttled = 0
    critical = 0.0
    for tid in tenant_ids:
        rows = [
            r
            for r in sim.admin_for(tid, "GET", "/requests")["value"]
            if r["path"].startswith("/v1.0")
        ]
        total += len(rows)
        throttled += sum(1 for r in rows if r["status"] == 429)
        critical += bounds(rows)["critical_path_s"]
    return total, throttled, critical


def latency_bound_s(critical_paths_s: float, workers: int) -> float:
    """The shortest wall time Graph's latency allows: every tenant's critical path, run
    PER_INSTANCE_RUNS at a time on each worker (with CPU to spare)."""
    return critical_paths_s / (workers * PER_INSTANCE_RUNS)


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has spent (Linux /proc/stat: all but idle and
    iowait), to tell how much of the cores other work took during a run."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def bench_workers(
    count: int,
    args: argparse.Namespace,
    azurite: Azurite,
    policy: Path,
    tenants_file: Path,
    work: Path,
    cores: int,
) -> dict[str, Any]:
    out = work / f"tenants-out-{count}.json"
    started = time.perf_counter()
    sim = start_simulator(args.spec, args.tenants, args.model, out)
    sim_start_s = time.perf_counter() - started
    try:
        served = json.loads(out.read_text())
        ids = [t["tenantId"] for t in served]
        if not tenants_file.exists():
            tenants = [Tenant(t["tenantId"], t["displayName"], mode=args.mode) for t in served]
            tenants_file.write_text(dump_tenants(tenants, tenants_file))
        sim_rss_at_start = proc_rss_mb(sim.proc.pid, "VmRSS") if sim.proc else 0.0
        queue_name = f"bench-tenants-{count}-{secrets.token_hex(3)}"
        env = app_settings(
            azurite,
            sim,
            LICENSING_POLICY_PATH=str(policy),
            LICENSING_ALERT_MAILBOX="",
            LICENSING_ALERT_RECIPIENTS="",
            LICENSING_TABLE_PREFIX=f"benchten{count}x{secrets.token_hex(3)}",
            LICENSING_TENANTS_FILE=str(tenants_file),
            LICENSING_RUN_QUEUE=queue_name,
            AzureWebJobsStorage=azurite.connection_string,
        )
        procs = spawn_workers(count, env, work)
        try:
            settings = Settings.from_env(env)
            t0 = time.perf_counter()
            tick = asyncio.run(nightly(settings, queue=RunQueue.from_env(queue_name, env)))
            enqueue_s = time.perf_counter() - t0
            if tick.failed or len(tick.queued) != args.tenants:
                raise RuntimeError(
                    f"the nightly tick queued {len(tick.queued)} of {args.tenants} tenants: "
                    f"{tick.failed}"
                )
            pids = [
                p
                for p in (
                    sim.proc.pid if sim.proc else None,
                    azurite.proc.pid if azurite.proc else None,
                )
                if p
            ]
            cpu_before = sum(proc_cpu_s(p) for p in pids)
            machine_before, machine_t0 = machine_busy_s(), time.perf_counter()
            load_before = os.getloadavg()[0]
            go = time.time()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            results = []
            for i, p in enumerate(procs):
                stdout, _ = p.communicate(timeout=args.timeout)
                if p.returncode != 0 or not stdout.strip():
                    raise RuntimeError(
                        f"worker {i} of {count} failed: see {work}/worker-{count}-{i}.log"
                    )
                results.append(json.loads(stdout.strip().splitlines()[-1]))
            other_cpu = sum(proc_cpu_s(p) for p in pids) - cpu_before
            machine_cpu = machine_busy_s() - machine_before
            machine_span = time.perf_counter() - machine_t0
            load_after = os.getloadavg()[0]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        requests, throttled, critical = graph_requests(sim, ids)
        left = queue_client(queue_name, env).get_queue_properties().approximate_message_count
        summary = summarize(results, go, args.tenants, cores, other_cpu)
        record = {
            "workers": count,
            "tenants": args.tenants,
            "spec": args.spec,
            "mode": args.mode,
            "latency_model": args.model,
            "per_instance_runs": PER_INSTANCE_RUNS,
            "enqueue_s": round(enqueue_s, 2),
            **summary,
            "critical_paths_s": round(critical, 1),
            "latency_bound_s": round(latency_bound_s(critical, count), 1),
            # what the run could take with a core per worker: instances do not share CPU
            "instance_bound_s": round(
                max(latency_bound_s(critical, count), summary["worker_cpu_max_s"]), 1
            ),
            # everything the machine ran meanwhile (other sessions' tests too)
            "machine_cpu_s": round(machine_cpu, 1),
            "machine_busy_pct": round(100 * machine_cpu / (cores * machine_span), 1),
            "others_cpu_s": round(machine_cpu - summary["cpu_s"], 1),
            "sim_cpu_and_azurite_cpu_s": round(other_cpu, 1),
            "graph_requests": requests,
            "throttled_429": throttled,
            "messages_left": left,
            "simulator_start_s": round(sim_start_s, 1),
            "simulator_rss_mb_at_start": round(sim_rss_at_start, 1),
            "simulator_peak_rss_mb": round(proc_rss_mb(sim.proc.pid), 1) if sim.proc else None,
            "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
            "measured": [
                "wall_s",
                "enqueue_s",
                "run_p50_s",
                "run_p95_s",
                "cpu_s",
                "graph_requests",
                "peak_rss_mb_per_worker",
            ],
            "computed": [
                "cpu_bound_s",
                "latency_bound_s",
                "instance_bound_s",
                "scale_out",
                "attainable_scale_out",
            ],
            "runs": [
                {k: r.get(k) for k in ("tenant", "status", "error")}
                | {"run_s": round(r["end"] - r["start"], 3), "done_at_s": round(r["end"] - go, 3)}
                for w in results
                for r in w["runs"]
            ],
        }
        queue_client(queue_name, env).delete_queue()
        return record
    finally:
        sim.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench tenants", description=__doc__.split("\n")[0])
    p.add_argument("--tenants", type=int, default=int(os.environ.get("BENCH_TENANTS", "200")))
    p.add_argument(
        "--spec",
        default="S",
        help="a size of the bench (S, M, L) or a simulator spec (users=N,groups=G,...); default S",
    )
    p.add_argument(
        "--workers",
        default=os.environ.get("BENCH_WORKERS", "1,2,4"),
        help="comma-separated worker process counts (default 1,2,4; the first is the baseline)",
    )
    p.add_argument("--mode", choices=("plan", "apply"), default="plan")
    p.add_argument("--model", choices=tuple(MODELS), default="proportional", help="latency model")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one worker count may take")
    args = p.parse_args(argv)
    if args.tenants < 1:
        p.error(f"--tenants must be at least 1, not {args.tenants}")
    args.spec = SIZES.get(args.spec.upper(), args.spec)
    try:
        args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        p.error(f"--workers: {args.workers!r} is not a comma-separated list of whole numbers")
    if not args.worker_counts or any(w < 1 for w in args.worker_counts):
        p.error(f"--workers: {args.workers!r} needs worker counts of 1 or more")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    out_dir = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-tenants-"))
    policy = work / "policy.yaml"
    policy.write_text(
        subprocess.run(
            [sys.executable, "-m", "simulator", "policy", "--generate", args.spec],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    tenants_file = work / "tenants.json"
    azurite = Azurite().start()
    records: list[dict[str, Any]] = []
    try:
        for count in args.worker_counts:
            print(f"{args.tenants} tenants, {count} worker(s) ...", file=sys.stderr, flush=True)
            records.append(bench_workers(count, args, azurite, policy, tenants_file, work, cores))
    finally:
        azurite.stop()
    base = records[0]
    for r in records:
        r["scale_out"] = round(base["wall_s"] / r["wall_s"], 2)
        r["attainable_scale_out"] = round(
            attainable_ratio(base["wall_s"], r["workers"] / base["workers"], r["cpu_bound_s"]),
            2,
        )
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cores_usable": cores,
        "machine": platform.machine(),
        "at": datetime.now(UTC).isoformat(),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"bench-tenants-{stamp}.json"
    path.write_text(
        json.dumps({"machine": machine, "ru_limit_per_10s": RU_LIMIT, "records": records}, indent=2)
    )
    print(render(records))
    print(f"\nworker logs: {work}\nJSON: {path}")
    return 0 if all(r["tenants_failed"] == 0 for r in records) else 1


def render(records: list[dict[str, Any]]) -> str:
    return table(
        [
            "workers",
            "tenants",
            "enqueue s",
            "wall s",
            "done",
            "failed",
            "run p50 s",
            "run p95 s",
            "tenants/min",
            "scale-out",
            "CPU s",
            "CPU bound s",
            "latency bound s",
            "attainable",
            "machine busy %",
            "others' CPU s",
            "core-per-worker bound s",
            "requests",
            "429",
            "peak RSS MB/worker",
        ],
        [
            [
                r["workers"],
                r["tenants"],
                r["enqueue_s"],
                r["wall_s"],
                r["tenants_done"],
                r["tenants_failed"],
                r["run_p50_s"],
                r["run_p95_s"],
                r["tenants_per_min"],
                f"{r['scale_out']}x",
                r["cpu_s"],
                r["cpu_bound_s"],
                r["latency_bound_s"],
                f"{r['attainable_scale_out']}x",
                r["machine_busy_pct"],
                r["others_cpu_s"],
                r["instance_bound_s"],
                r["graph_requests"],
                r["throttled_429"],
                max(r["peak_rss_mb_per_worker"]),
            ]
            for r in records
        ],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
