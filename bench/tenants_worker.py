"""One worker process of `python -m bench tenants`: consumes the run queue the way one Functions
instance does under host.json (batchSize 2, newBatchThreshold 0).

Reads the app settings and `AzureWebJobsStorage` from the environment, prints `ready`, waits for
`go` on stdin (so the timed part starts when every worker is up, as warm instances would be), then
loops: receive up to PER_INSTANCE_RUNS messages, run `work_queued_run` for each concurrently,
delete each message whose run returned, and fetch the next batch once the whole batch is done
(newBatchThreshold 0), until a receive finds nothing. Prints one JSON line: every run (tenant,
status, start and end as epoch seconds), its CPU seconds and peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

from azure.storage.queue import QueueClient, QueueMessage

from shared.api import work_queued_run
from shared.queue import PER_INSTANCE_RUNS, RunMessage, queue_client
from shared.settings import Settings

# Longer than any run here: the real host keeps renewing a message's lease while it runs; this
# worker does not, so the first delivery must outlast the run.
VISIBILITY_S = 900


async def run_one(settings: Settings, message: QueueMessage) -> dict[str, Any]:
    tenant = ""
    try:
        tenant = RunMessage.from_json(message.content).tenant_id or ""
    except ValueError:
        pass
    started = time.time()
    try:
        report = await work_queued_run(
            settings, message.content, attempt=message.dequeue_count or 1
        )
    except Exception as exc:  # the host would retry after visibilityTimeout; the bench records it
        return {
            "tenant": tenant,
            "status": "raised",
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "start": started,
            "end": time.time(),
            "delete": False,
        }
    return {
        "tenant": tenant,
        "run_id": report.run_id if report else None,
        # None: the worker skipped the message (already taken, or the tenant was disabled)
        "status": report.status if report else "skipped",
        "error": (report.error or "")[:500] if report else "",
        "start": started,
        "end": time.time(),
        "delete": True,
    }


async def consume(settings: Settings, client: QueueClient) -> tuple[list[dict[str, Any]], int]:
    runs: list[dict[str, Any]] = []
    batches = 0
    while True:
        batch = await asyncio.to_thread(
            lambda: list(
                client.receive_messages(
                    max_messages=PER_INSTANCE_RUNS, visibility_timeout=VISIBILITY_S
                )
            )
        )
        if not batch:
            return runs, batches
        batches += 1
        results = await asyncio.gather(*(run_one(settings, m) for m in batch))
        for message, result in zip(batch, results, strict=True):
            if result.pop("delete"):
                await asyncio.to_thread(client.delete_message, message)
            runs.append(result)


def main() -> int:
    settings = Settings.from_env()
    client = queue_client(settings.run_queue)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    started = time.time()
    at_go = resource.getrusage(resource.RUSAGE_SELF)  # imports and setup are not counted
    runs, batches = asyncio.run(consume(settings, client))
    finished = time.time()
    client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "runs": runs,
                "batches": batches,
                "start": started,
                "end": finished,
                "cpu_s": usage.ru_utime + usage.ru_stime - at_go.ru_utime - at_go.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
