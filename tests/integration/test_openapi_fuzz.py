"""schemathesis drives the real HTTP functions in-process from docs/openapi.yaml: valid and invalid
requests for every operation; none may end in an unexpected exception (a 500 InternalError or an
empty body), and every answer must match the document (status, content type, schema).

A small WSGI adapter turns each request into an azure.functions.HttpRequest, as the host would.
Storage is Azurite; Graph is an address where nothing listens, so inline runs fail fast (a
documented 500 with the run's summary) and status falls back to the latest run.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

import function_app
from localdev.services import ROOT
from shared.store import TableStore
from tests.integration.test_function_app import bare_app  # noqa: F401 (a fixture)

SPEC = (ROOT / "docs" / "openapi.yaml").read_bytes()
ROUTES: list[tuple[str, re.Pattern[str], Any]] = [
    ("POST", re.compile(r"^/api/runs$"), function_app.start_run),
    ("GET", re.compile(r"^/api/runs$"), function_app.list_runs),
    ("GET", re.compile(r"^/api/runs/(?P<runId>[^/]+)$"), function_app.get_run),
    ("GET", re.compile(r"^/api/status$"), function_app.get_status),
    ("GET", re.compile(r"^/api/dashboard$"), function_app.dashboard),
    ("GET", re.compile(r"^/api/waiting$"), function_app.list_waiting),
]


def functions_host(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI in front of the functions: what the Functions host does with a request, roughly."""
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/openapi.yaml":
        start_response("200 OK", [("Content-Type", "application/yaml")])
        return [SPEC]
    found = next(
        ((fn, m) for verb, pattern, fn in ROUTES if verb == method and (m := pattern.match(path))),
        None,
    )
    if found is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such function"]
    handler, match = found
    headers = {
        k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    req = func.HttpRequest(
        method,
        f"http://localhost:7071{path}",
        headers=headers,
        params=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
        route_params=match.groupdict(),
        body=environ["wsgi.input"].read(length) if length else b"",
    )
    response: func.HttpResponse = asyncio.run(handler(req))
    out = [("Content-Type", response.mimetype or "application/octet-stream")]
    out += [(k, v) for k, v in response.headers.items() if k.lower() != "content-type"]
    start_response(f"{response.status_code} -", out)
    return [response.get_body()]


schema = schemathesis.openapi.from_wsgi("/openapi.yaml", functions_host)
# Deterministic: the same requests every run (a failure is reproducible, the run time steady).
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
)


@pytest.fixture(autouse=True)
def _tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """The app's settings and storage (bare_app), with its tables, as in a deployed app."""
    store: TableStore = request.getfixturevalue("bare_app")
    store.ensure_tables()
    yield


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_documented_operation_answers_within_the_document(case: Any) -> None:
    response = case.call()
    if response.status_code >= 400 and "json" in response.headers.get("Content-Type", [""])[0]:
        answer = json.loads(response.content)
        error = answer.get("error") if isinstance(answer, dict) else None
        assert error is None or error.get("code") != "InternalError", (
            f"{case.method} {case.formatted_path}: unexpected exception (see the log)"
        )
    assert response.content, "never an empty body"
    case.validate_response(
        response,
        # A documented 500 is an inline run that failed (Graph is unreachable here); the
        # InternalError check above is the one that matters. The function key is the host's check,
        # not the functions': in-process, no key is checked; so is routing (an undeclared method).
        excluded_checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.ignored_auth,
            schemathesis.checks.unsupported_method,
        ],
    )
