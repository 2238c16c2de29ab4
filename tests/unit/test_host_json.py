"""host.json and the engine agree on how often a queued run's message is delivered."""

from __future__ import annotations

import json

from localdev.services import ROOT
from shared.queue import MAX_DEQUEUE_COUNT


def test_the_worker_knows_the_hosts_last_delivery():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_DEQUEUE_COUNT
