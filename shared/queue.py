"""Runs started over HTTP travel through an Azure Storage queue to the queue-triggered worker.

The queue lives in the Functions host's storage (the trigger's connection `AzureWebJobsStorage`):
a connection string locally (Azurite), `AzureWebJobsStorage__queueServiceUri` with the managed
identity in Azure. Messages are JSON, base64-encoded as the Functions queue trigger expects.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.common import GUID_RE
from shared.errors import ConfigurationError
from shared.settings import Mode

QUEUE_CONNECTION = "AzureWebJobsStorage"  # the queue trigger's `connection`
# host.json extensions.queues.maxDequeueCount: after this many failed deliveries the Functions
# host moves a message to "<queue>-poison" (a test checks the two agree).
MAX_DEQUEUE_COUNT = 5
# host.json extensions.queues.batchSize + newBatchThreshold: tenant runs one instance works on at
# once. Target-based scaling asks for (queue length / batchSize) instances, so the nightly fan-out
# of N tenants spreads over about N / 2 instances (capped by the plan's maximum instance count).
PER_INSTANCE_RUNS = 2
# A run id is its UTC start time and six hex digits. The pattern admits only real dates (month
# lengths, 29 February in leap years), so docs/openapi.yaml can publish it as is and a client that
# follows the document never sends an id the API refuses (a test checks the two are the same).
RUN_ID_PATTERN = (
    r"^(?:[12]\d{3}(?:(?:0[13578]|1[02])(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)(?:0[1-9]|[12]\d|30)"
    r"|02(?:0[1-9]|1\d|2[0-8]))|(?:[12]\d(?:0[48]|[2468][048]|[13579][26])|(?:12|16|20|24|28)00)0229)"
    r"T(?:[01]\d|2[0-3])[0-5]\d[0-5]\dZ-[0-9a-f]{6}$"
)
RUN_ID_RE = re.compile(RUN_ID_PATTERN.removesuffix("$") + r"\Z")  # \Z: no trailing newline
Trigger = Literal["http", "timer"]


@dataclass(frozen=True)
class RunMessage:
    run_id: str
    mode: Mode
    group_ids: tuple[str, ...] | None = None
    requested_by: str = ""
    tenant_id: str | None = None  # None: the implicit tenant of a single-tenant install
    trigger: Trigger = "http"  # "timer": one tenant's share of the nightly run

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "runId": self.run_id,
            "mode": self.mode,
            "groupIds": list(self.group_ids) if self.group_ids is not None else None,
            "requestedBy": self.requested_by,
        }
        if self.tenant_id:
            body["tenantId"] = self.tenant_id
        if self.trigger != "http":
            body["trigger"] = self.trigger
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str) -> RunMessage:
        """Parse a queue message; ValueError saying what is wrong."""
        try:
            body: Any = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the message is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ValueError("the message must be a JSON object")
        run_id, mode, ids = body.get("runId"), body.get("mode"), body.get("groupIds")
        if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
            raise ValueError(f"runId {run_id!r} is not a run id")
        if mode not in ("plan", "apply"):
            raise ValueError(f"mode must be 'plan' or 'apply', got {mode!r}")
        if ids is not None and (
            not isinstance(ids, list)
            or not all(isinstance(i, str) and GUID_RE.match(i) for i in ids)
        ):
            raise ValueError("groupIds must be a list of group ids")
        tenant_id, trigger = body.get("tenantId"), body.get("trigger", "http")
        if tenant_id is not None and not (isinstance(tenant_id, str) and GUID_RE.match(tenant_id)):
            raise ValueError(f"tenantId {tenant_id!r} is not a tenant id")
        if trigger not in ("http", "timer"):
            raise ValueError(f"trigger must be 'http' or 'timer', got {trigger!r}")
        return cls(
            run_id,
            cast(Mode, mode),
            tuple(ids) if ids is not None else None,
            str(body.get("requestedBy") or ""),
            tenant_id.lower() if tenant_id else None,
            cast(Trigger, trigger),
        )


def queue_client(queue_name: str, env: Mapping[str, str] | None = None) -> QueueClient:
    env = os.environ if env is None else env
    conn = (env.get(QUEUE_CONNECTION) or "").strip()
    uri = (env.get(f"{QUEUE_CONNECTION}__queueServiceUri") or "").strip()
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
    }
    if conn:
        return QueueClient.from_connection_string(conn, queue_name, **policies)
    if uri:
        from azure.identity import DefaultAzureCredential

        return QueueClient(uri, queue_name, credential=DefaultAzureCredential(), **policies)
    raise ConfigurationError(
        f"set {QUEUE_CONNECTION} (a connection string) or {QUEUE_CONNECTION}__queueServiceUri "
        "(identity-based): runs started over HTTP go through its queue"
    )


def poison_queue_name(queue_name: str) -> str:
    """Where the Functions host (and the worker, for a message no retry can fix) puts a message
    it gives up on."""
    return f"{queue_name}-poison"


class RunQueue:
    def __init__(self, client: QueueClient) -> None:
        self.client = client
        self._exists = False  # made (or found) once per RunQueue: the fan-out sends many

    @classmethod
    def from_env(cls, queue_name: str, env: Mapping[str, str] | None = None) -> RunQueue:
        return cls(queue_client(queue_name, env))

    def send(self, message: RunMessage) -> None:
        self.send_text(message.to_json())

    def send_text(self, text: str) -> None:
        if not self._exists:
            try:
                self.client.create_queue()
            except ResourceExistsError:
                pass
            self._exists = True
        self.client.send_message(text)
