"""host.json and the engine agree on how often a queued run's message is delivered."""

from __future__ import annotations

import json

from localdev.services import ROOT
from shared.queue import MAX_DEQUEUE_COUNT, PER_INSTANCE_RUNS


def test_the_worker_knows_the_hosts_last_delivery():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_DEQUEUE_COUNT


def test_one_instance_runs_few_tenants_at_once_so_the_host_scales_out():
    # Per instance the host runs batchSize + newBatchThreshold messages at once; target-based
    # scaling adds instances by queue length / batchSize. A tenant run is CPU- and memory-heavy,
    # so a few per instance, and the rest on other instances.
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["batchSize"] + queues["newBatchThreshold"] == PER_INSTANCE_RUNS
    assert queues["newBatchThreshold"] == 0  # no second batch before the first finishes
