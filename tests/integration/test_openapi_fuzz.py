"""schemathesis drives the app from docs/openapi.yaml over real HTTP, through the local front
(localdev/front.py: routing, methods and the function key as the Functions host does them) in front
of the real functions, Azurite and the Graph simulator with the demo tenant.

Valid and invalid requests for every operation (positive and negative modes), every schemathesis
check: no server error, every answer as documented (status, headers, content type, schema),
invalid input refused, a missing function key refused, an undeclared method 405. Bounded and
deterministic: the same few hundred requests every run.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

import function_app
from localdev.front import Front
from localdev.services import LOOPBACK, ROOT, free_port
from tests.integration.conftest import World
from tests.integration.test_function_app import app_world

__all__ = ["app_world"]
SPEC = ROOT / "docs" / "openapi.yaml"
EXAMPLES = 40  # per operation and mode: 6 operations, a few hundred requests in all
PORT, KEY = free_port(), secrets.token_urlsafe(24)


@pytest.fixture
def front(app_world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Front]:
    # Inline apply runs are allowed (the fixture's setting); they report planned seats at once
    # rather than wait for the simulator's licence processing.
    monkeypatch.setenv("LICENSING_MEASURE_WAIT_SECONDS", "0")
    function_app.settings.cache_clear()
    served = Front(function_app.app, key=KEY, port=PORT, listen_queues=False).start()
    yield served
    served.stop()


schema = schemathesis.openapi.from_path(SPEC)
# The front's address and key are fixed when the tests are collected: every request schemathesis
# sends, its own re-sends included, goes to the loopback front, never to the document's servers.
schema.config.update(base_url=f"http://{LOOPBACK}:{PORT}/api")


@schema.auth()
class FunctionKey:
    """The function key, as a client sends it; schemathesis's auth checks also try without it."""

    def get(self, case: Any, ctx: Any) -> str:
        return KEY

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "x-functions-key": data}


# Deterministic: the same requests every run (a failure is reproducible, the run time steady).
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_documented_operation_answers_within_the_document(front: Front, case: Any) -> None:
    response = case.call()
    assert response.content, "never an empty body"
    if "json" in response.headers.get("Content-Type", [""])[0]:
        answer = json.loads(response.content)
        error = answer.get("error") if isinstance(answer, dict) else None
        assert error is None or error.get("code") != "InternalError", (
            f"{case.method} {case.formatted_path}: unexpected exception (see the log)"
        )
    case.validate_response(response)  # every check schemathesis has
