"""One engine run in its own process, so the benchmark can read that process's peak RSS.

Reads the app settings from the environment, runs `execute_run`, prints the summary as JSON.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import cast

from shared.run import execute_run
from shared.settings import Mode, Settings


def main() -> int:
    mode = sys.argv[1]
    settings = Settings.from_env()
    started = time.perf_counter()
    if mode not in ("plan", "apply"):
        raise SystemExit(f"mode must be plan or apply, not {mode!r}")
    report = asyncio.run(execute_run(settings, cast(Mode, mode), "bench"))
    wall = time.perf_counter() - started
    # The run's own peak, before this script builds the whole summary to print it (on L that
    # alone is ~80 MB more; the API reads a run back from Table Storage instead).
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    summary = report.summary()
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_rss_mb, "summary": summary}))
    return 0 if report.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
