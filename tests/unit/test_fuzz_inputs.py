"""Property-based fuzzing of what operators and admins type: every input ends in a clear error
(ApiError / PolicyError naming the problem) or a correct result, never an unexpected exception."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.api import (
    PRINCIPAL_HEADER,
    ApiError,
    check_run_id,
    parse_page,
    parse_principal,
    parse_run_request,
)
from shared.common import GUID_RE
from shared.credentials import admin_consent_url
from shared.errors import ConfigurationError, PolicyError
from shared.policy import parse_policy, policy_schema
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((ROOT / "policy" / "licensing-policy.yaml").read_text())

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_run_request_body_is_accepted_or_refused_with_a_message(value: Any):
    try:
        request = parse_run_request(json.dumps(value).encode())
    except ApiError as exc:
        assert exc.status == 400 and str(exc)
        return
    assert request.mode in ("plan", "apply")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_as_a_run_request_body(raw: bytes):
    try:
        parse_run_request(raw)
    except ApiError as exc:
        assert exc.status == 400


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=60),
    st.dictionaries(st.sampled_from(["limit", "after", "x"]), st.text(max_size=30)),
)
def test_route_values_and_query_strings(run_id: str, params: dict[str, str]):
    for call in (lambda: check_run_id(run_id), lambda: parse_page(params)):
        try:
            call()
        except ApiError as exc:
            assert exc.status == 400 and str(exc)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        json_values.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode()),
    )
)
def test_any_client_principal_header_is_read_or_refused(header: str):
    try:
        parse_principal(header)
    except ApiError as exc:
        assert exc.status == 400 and PRINCIPAL_HEADER in str(exc)


def _mutations() -> st.SearchStrategy[Any]:
    """The shipped policy with one value somewhere replaced by anything."""

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [prefix]
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, (*prefix, i))
        return out

    def mutate(path: tuple[Any, ...], value: Any) -> Any:
        doc = json.loads(json.dumps(SHIPPED))
        if not path:
            return value
        node = doc
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        return doc

    return st.tuples(st.sampled_from(paths(SHIPPED)), json_values).map(lambda pv: mutate(*pv))


@settings(max_examples=400, deadline=None)
@given(st.one_of(_mutations(), json_values))
def test_any_policy_document_is_valid_or_an_error_naming_file_and_key(doc: Any):
    # What an editor flags against the schema file, the app refuses too (the app adds rules).
    editor_ok = jsonschema.Draft7Validator(policy_schema()).is_valid(doc)
    try:
        policy = parse_policy(json.dumps(doc), "fuzz.json")
    except PolicyError as exc:
        assert exc.file == "fuzz.json" and exc.problem
        return
    assert policy.profiles and policy.selectors
    assert editor_ok, "the app accepted a policy its own schema file rejects"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_policy_text_is_read_or_refused_naming_the_file(text: str):
    try:
        parse_policy(text, "fuzz.yaml")
    except PolicyError as exc:
        assert exc.file == "fuzz.yaml"


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 200_000),
    st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"mode": "plan", "groupIds": [', b"]}")]),
    st.booleans(),
)
def test_nesting_of_any_depth_is_read_or_refused_as_400(depth: int, pair: Any, closed: bool):
    """Python's json raises RecursionError past ~1,000 levels; that must not escape."""
    open_, close = pair
    raw = open_ * depth + (b"1" + close * depth if closed else b"")
    for call in (
        lambda: parse_run_request(raw),
        lambda: parse_principal(base64.b64encode(raw).decode()),
    ):
        try:
            call()
        except ApiError as exc:
            assert exc.status == 400 and str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50))
def test_any_multitenant_app_id_is_read_or_refused_naming_the_setting(value: str):
    env = {"LICENSING_TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    try:
        parsed = Settings.from_env({**env, "LICENSING_MULTITENANT_APP_ID": value})
    except ConfigurationError as exc:
        assert "LICENSING_MULTITENANT_APP_ID" in str(exc)
        return
    app_id = parsed.multitenant_app_id
    assert app_id is None or (GUID_RE.match(app_id) and app_id == app_id.lower())
    if app_id:
        assert admin_consent_url(app_id, "fabrikam.onmicrosoft.com").endswith(app_id)
