"""Timer and queue triggers (blueprint): the nightly run (inline for one tenant, one queued run per
tenant for many) and the worker of queued runs."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import api
from shared.fanout import nightly
from triggers import settings

bp = func.Blueprint()
log = logging.getLogger("licensing")


@bp.timer_trigger(
    schedule="%LICENSING_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def nightly_enforcement(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("the nightly run is past due; running now")
    # One tenant: its run, inline. Tenant records: one queued run per enabled tenant (the queue
    # worker below runs each), so one tenant's trouble holds only its own message.
    tick = await nightly(settings())
    if tick.report is not None:
        log.info("run %s (%s) ended %s", tick.report.run_id, tick.report.mode, tick.report.status)
    if problem := tick.problem():
        # Surface it to the Functions host (failure metrics, alert rules on failed executions):
        # a refused nightly run enforced nothing. The run is recorded and the run-problem mailed.
        raise RuntimeError(problem)


@bp.queue_trigger(
    arg_name="msg", queue_name="%LICENSING_RUN_QUEUE%", connection="AzureWebJobsStorage"
)
async def run_worker(msg: func.QueueMessage) -> None:
    # Raising lets the host retry; after maxDequeueCount (host.json) it moves the message to
    # "<queue>-poison". dequeue_count tells the worker which delivery this is.
    report = await api.work_queued_run(
        settings(), msg.get_body().decode("utf-8", "replace"), attempt=msg.dequeue_count or 1
    )
    if report is not None:
        log.info("queued run %s ended %s", report.run_id, report.status)
