"""The HTTP API's pure parts: caller roles, requests, queue messages, forecasts, dashboard."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from shared import api
from shared.api import (
    ApiError,
    authorize,
    check_run_id,
    parse_page,
    parse_principal,
    parse_run_request,
    sku_forecast,
)
from shared.dashboard import render_dashboard
from shared.queue import RunMessage
from shared.settings import Settings

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
BASE = {"LICENSING_TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"}


def header(claims: list[dict[str, str]], **extra: str) -> str:
    return base64.b64encode(json.dumps({"claims": claims, **extra}).encode()).decode()


AUTH_ON = Settings.from_env({**BASE, "WEBSITE_AUTH_ENABLED": "True"})
AUTH_OFF = Settings.from_env(BASE)


def test_roles_are_read_from_either_claim_type_and_apply_needs_the_operator_role():
    long_type = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    operator = header([{"typ": long_type, "val": "Licensing.Operator"}])
    p = authorize(AUTH_ON, operator, "apply")
    assert p is not None and "Licensing.Operator" in p.roles
    assert authorize(AUTH_ON, operator, "read") == p, "an operator may read too"
    reader = header([{"typ": "roles", "val": "Licensing.Reader"}, {"typ": "name", "val": "a"}])
    authorize(AUTH_ON, reader, "plan")
    authorize(AUTH_ON, reader, "read")
    with pytest.raises(ApiError) as refused:
        authorize(AUTH_ON, reader, "apply")
    assert refused.value.status == 403 and "Licensing.Operator" in refused.value.message
    with pytest.raises(ApiError) as anonymous:
        authorize(AUTH_ON, None, "read")
    assert anonymous.value.status == 401


def test_with_authentication_off_the_principal_header_is_ignored_and_apply_is_refused():
    forged = header([{"typ": "roles", "val": "Licensing.Operator"}])
    assert authorize(AUTH_OFF, forged, "read") is None
    assert authorize(AUTH_OFF, "garbage", "plan") is None, "the header is not even parsed"
    with pytest.raises(ApiError) as refused:
        authorize(AUTH_OFF, forged, "apply")
    assert refused.value.status == 403
    assert "LICENSING_HTTP_APPLY_WITHOUT_AUTH" in refused.value.message
    allowed = Settings.from_env({**BASE, "LICENSING_HTTP_APPLY_WITHOUT_AUTH": "true"})
    assert authorize(allowed, None, "apply") is None


@pytest.mark.parametrize("raw", ["%%%", base64.b64encode(b"[1]").decode(), header([{"x": 1}])])
def test_unreadable_principal_is_400(raw: str):
    with pytest.raises(ApiError) as err:
        parse_principal(raw)
    assert err.value.status == 400


def test_run_request_defaults_and_message_round_trip():
    req = parse_run_request(b'{"mode": "apply"}')
    assert (req.mode, req.group_ids, req.wait) == ("apply", None, False)
    msg = RunMessage("20261127T020000Z-a1b2c3", "plan", ("0" * 8 + "-0000-0000-0000-" + "0" * 12,))
    assert RunMessage.from_json(msg.to_json()) == msg
    with pytest.raises(ValueError, match="mode"):
        RunMessage.from_json('{"runId": "20261127T020000Z-a1b2c3", "mode": "x"}')


def test_forecast_dates_growth_and_says_not_growing_or_too_little_history():
    growing = [(NOW - timedelta(days=d), 100 - d) for d in range(20, -1, -2)]  # +1 seat a day
    fc = sku_forecast(growing, enabled=110, consumed=100, now=NOW)
    assert fc["state"] == "growing" and fc["runsOutOn"] == "2026-12-07"
    assert fc["slopePerDay"] == 1.0
    flat = [(NOW - timedelta(days=d), 50) for d in range(10, -1, -1)]
    assert sku_forecast(flat, 60, 50, NOW)["text"] == "not growing"
    shrinking = [(NOW - timedelta(days=d), 50 + d) for d in range(10, -1, -1)]
    assert sku_forecast(shrinking, 60, 50, NOW)["text"] == "not growing"
    minutes = [(NOW - timedelta(minutes=m), 40 + m) for m in range(5)]
    assert sku_forecast(minutes, 60, 40, NOW)["state"] == "unknown"
    assert sku_forecast(growing, 100, 100, NOW)["state"] == "exhausted"


def test_dashboard_escapes_every_directory_value():
    evil = "<script>alert(1)</script>"
    html = render_dashboard(
        {
            "generatedAt": NOW.isoformat(),
            "seatsSource": "graph",
            "skus": [
                {
                    "skuPartNumber": evil,
                    "capabilityStatus": evil,
                    "enabled": 10,
                    "consumed": 12,
                    "free": -2,
                    "demand": 3,
                    "forecast": {"state": "exhausted", "text": "no seats left"},
                    "history": [],
                }
            ],
            "latestRun": None,
            "groups": [{"displayName": evil, "profile": evil, "decision": evil, "reason": evil}],
            "openAlerts": [{"subject": evil, "kind": evil, "severity": 1, "status": "open"}],
        }
    )
    assert "<script" not in html and "&lt;script&gt;" in html


def dashboard_of(**sku: object) -> str:
    row = {"skuPartNumber": "POWER_BI_PRO", "enabled": 5, "consumed": 1, "free": 4, "demand": 0}
    return render_dashboard({"generatedAt": NOW.isoformat(), "skus": [{**row, **sku}]})


def test_dashboard_names_skus_as_microsoft_does_and_unlisted_ones_by_part_number():
    e5 = "c7df2760-2c81-4ef7-b578-5b5392b571df"
    assert "<h3>Office 365 E5 (ENTERPRISEPREMIUM)</h3>" in dashboard_of(
        skuId=e5, skuPartNumber="ENTERPRISEPREMIUM", productName="Office 365 E5"
    )
    # A run recorded before productName existed is named from Microsoft's table.
    assert "<h3>Office 365 E5 (ENTERPRISEPREMIUM)</h3>" in dashboard_of(
        skuId=e5, skuPartNumber="ENTERPRISEPREMIUM"
    )
    unlisted = "00000000-0000-0000-0000-0000000000aa"
    assert "<h3>CONTOSO_SPECIAL</h3>" in dashboard_of(
        skuId=unlisted, skuPartNumber="CONTOSO_SPECIAL"
    )


def test_status_table_falls_back_to_the_part_number_of_an_unlisted_sku():
    from shared.report import render_status

    row = {"skuPartNumber": "CONTOSO_SPECIAL", "enabled": 5, "consumed": 1, "free": 4}
    out = render_status({"skus": [{**row, "skuId": "00000000-0000-0000-0000-0000000000aa"}]})
    assert out.splitlines()[3].startswith("CONTOSO_SPECIAL  ")


def test_dashboard_escapes_a_hostile_product_name():
    html = dashboard_of(skuId="x", productName="<script>alert(1)</script>")
    assert "<script" not in html
    assert "<h3>&lt;script&gt;alert(1)&lt;/script&gt; (POWER_BI_PRO)</h3>" in html


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"after": "20261399T000000Z-abcdef"}, "'20261399T000000Z-abcdef' is not a run id"),
        ({"limit": "\u00b2"}, "limit must be an integer 1..100"),
        ({"limit": "\u0661"}, "limit must be an integer 1..100"),
        ({"limit": " 5"}, "limit must be an integer 1..100"),
    ],
)
def test_impossible_dates_and_unicode_digits_in_queries_are_400(
    params: dict[str, str], fragment: str
):
    with pytest.raises(ApiError) as err:
        parse_page(params)
    assert err.value.status == 400 and fragment in err.value.message


TENANT = "6b2f8e41-3c5d-4a7e-9f10-2d4c6e8a0b21"


def test_a_tenants_message_round_trips_and_a_bad_tenant_is_refused():
    msg = RunMessage("20261127T020000Z-a1b2c3", "apply", None, "", TENANT, "timer")
    assert RunMessage.from_json(msg.to_json()) == msg
    for bad in ("nope", TENANT + "\n", 7):
        with pytest.raises(ValueError, match="tenantId"):
            RunMessage.from_json(
                json.dumps({"runId": "20261127T020000Z-a1b2c3", "mode": "plan", "tenantId": bad})
            )
    with pytest.raises(ValueError, match="trigger"):
        RunMessage.from_json('{"runId": "20261127T020000Z-a1b2c3", "mode": "plan", "trigger": "x"}')


def test_an_id_with_a_trailing_newline_is_refused_everywhere():
    # `$` in a Python pattern also matches before a final newline: ids must match in full.
    with pytest.raises(ApiError) as err:
        parse_run_request(json.dumps({"mode": "plan", "groupIds": [TENANT + "\n"]}).encode())
    assert err.value.status == 400
    with pytest.raises(ApiError):
        check_run_id("20261127T020000Z-a1b2c3\n")
    with pytest.raises(ValueError, match="runId"):
        RunMessage.from_json(json.dumps({"runId": "20261127T020000Z-a1b2c3\n", "mode": "plan"}))
    with pytest.raises(ValueError, match="groupIds"):
        RunMessage.from_json(
            json.dumps(
                {"runId": "20261127T020000Z-a1b2c3", "mode": "plan", "groupIds": [TENANT + "\n"]}
            )
        )


def test_a_run_id_with_an_impossible_date_is_400_not_a_crash():
    with pytest.raises(ApiError) as err:
        check_run_id("20261399T000000Z-abcdef")
    assert err.value.status == 400


def test_a_deeply_nested_body_is_400_naming_the_nesting():
    with pytest.raises(ApiError) as err:
        parse_run_request(DEEP)
    assert err.value.status == 400 and "nested" in err.value.message


def test_a_deeply_nested_principal_header_is_400_naming_the_nesting():
    with pytest.raises(ApiError) as err:
        parse_principal(base64.b64encode(DEEP).decode())
    assert err.value.status == 400 and "nested" in err.value.message


def test_group_ids_null_is_refused_not_read_as_every_group():
    with pytest.raises(ApiError) as err:
        parse_run_request(b'{"mode": "apply", "groupIds": null}')
    assert err.value.status == 400 and "groupIds" in err.value.message


_DOC = yaml.safe_load((Path(__file__).parents[2] / "docs" / "openapi.yaml").read_text())
_DOC_RUN_ID = _DOC["components"]["schemas"]["RunId"]["pattern"]


@given(st.from_regex(_DOC_RUN_ID, fullmatch=True))
def test_every_run_id_the_document_admits_is_accepted(run_id: str):
    # Found by schemathesis: 12250631T205246Z-8274b1 matched the document and got a 400.
    assert check_run_id(run_id) == run_id
    datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ")  # and it is a real time


@pytest.mark.parametrize(
    ("run_id", "real"),
    [
        ("20260630T235959Z-a1b2c3", True),
        ("20260631T000000Z-a1b2c3", False),
        ("20240229T000000Z-a1b2c3", True),
        ("20250229T000000Z-a1b2c3", False),
        ("20000229T000000Z-a1b2c3", True),
        ("21000229T000000Z-a1b2c3", False),
        ("20261231T240000Z-a1b2c3", False),
    ],
)
def test_the_document_and_the_api_agree_on_which_dates_are_real(run_id: str, real: bool):
    assert bool(re.fullmatch(_DOC_RUN_ID, run_id)) is real
    if real:
        assert check_run_id(run_id) == run_id
    else:
        with pytest.raises(ApiError) as err:
            check_run_id(run_id)
        assert err.value.status == 400


# -- endpoints as plain calls: Request in, Response out, no azure.functions ------------------------


def call(handler: api.Endpoint, request: api.Request, s: Settings = AUTH_OFF) -> api.Response:
    return asyncio.run(handler(request, lambda: s))


def test_a_bad_body_is_a_400_response_saying_what_is_wrong():
    answer = call(api.start_run, api.Request("POST", "http://h/api/runs", body=b'{"mode": "x"}'))
    assert answer.status == 400 and answer.mimetype == "application/json"
    assert "mode must be 'plan' or 'apply'" in answer.json()["error"]["message"]


def test_headers_are_matched_whatever_their_case():
    request = api.Request("GET", "http://h/api/runs", headers={"x-ms-client-principal": "%%%"})
    assert request.header("X-MS-CLIENT-PRINCIPAL") == "%%%"
    answer = call(api.list_runs, request, AUTH_ON)
    assert answer.status == 400 and "X-MS-CLIENT-PRINCIPAL" in answer.json()["error"]["message"]


def test_a_bad_setting_is_a_503_naming_it():
    def broken() -> Settings:
        return Settings.from_env({**BASE, "LICENSING_TIMER_MODE": "sometimes"})

    answer = asyncio.run(api.get_status(api.Request("GET", "http://h/api/status"), broken))
    assert answer.status == 503
    assert answer.json()["error"]["code"] == "Misconfigured"
    assert "LICENSING_TIMER_MODE" in answer.json()["error"]["message"]


def test_an_unexpected_failure_is_a_json_500_that_names_no_internals(
    monkeypatch: pytest.MonkeyPatch,
):
    def broken(*args: object) -> None:
        raise KeyError("RunId")

    monkeypatch.setattr(api, "list_runs_page", broken)
    # No tenant records (no storage here): the failure is the injected one, not the lookup's.
    monkeypatch.setattr(api, "tenant_records", lambda settings: [])
    answer = call(api.list_runs, api.Request("GET", "http://h/api/runs"))
    assert answer.status == 500
    assert answer.json()["error"]["code"] == "InternalError"
    assert "KeyError" not in answer.body.decode()


def test_storage_that_cannot_be_reached_is_a_503_saying_so_not_a_500(
    monkeypatch: pytest.MonkeyPatch,
):
    from azure.core.exceptions import ServiceRequestError

    def unreachable(*args: object) -> None:
        raise ServiceRequestError("<urllib3.connection.HTTPConnection>: Connection refused")

    monkeypatch.setattr(api, "list_runs_page", unreachable)
    monkeypatch.setattr(api, "tenant_records", lambda settings: [])
    answer = call(api.list_runs, api.Request("GET", "http://h/api/runs"))
    assert answer.status == 503
    assert answer.json()["error"]["code"] == "StorageUnavailable"
    assert "Storage" in answer.json()["error"]["message"]
    assert "urllib3" not in answer.body.decode()


def test_a_malformed_run_id_is_refused_before_storage_is_read():
    request = api.Request("GET", "http://h/api/runs/x", route_params={"runId": "../../etc"})
    answer = call(api.get_run, request)
    assert answer.status == 400 and "is not a run id" in answer.json()["error"]["message"]


def test_status_urls_follow_the_host_the_caller_used():
    assert api.Request("GET", "http://127.0.0.1:8080/api/runs?x=1").base_url == (
        "http://127.0.0.1:8080/api"
    )


def test_the_documented_run_id_pattern_accepts_exactly_the_real_times():
    import re
    from datetime import date, timedelta

    import yaml

    from localdev.services import ROOT

    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    pattern = re.compile(spec["components"]["schemas"]["RunId"]["pattern"])
    for year in (1999, 2000, 2023, 2024, 2100, 2400):
        day = date(year, 1, 1)
        for _ in range(370):  # every real day, and a few past the year's end
            real = f"{day:%Y%m%d}T235959Z-a1b2c3"
            assert pattern.match(real) and check_run_id(real) == real
            day += timedelta(days=1)
        for month, days in ((2, 30), (2, 29), (4, 31), (9, 31), (13, 1)):
            fake = f"{year}{month:02d}{days:02d}T000000Z-a1b2c3"
            try:
                check_run_id(fake)
                accepted = True
            except ApiError:
                accepted = False
            assert bool(pattern.match(fake)) == accepted, fake


def test_the_callers_object_id_is_read_from_either_claim_type():
    long_type = "http://schemas.microsoft.com/identity/claims/objectidentifier"
    for typ in (long_type, "oid"):
        p = api.parse_principal(header([{"typ": typ, "val": "AB-1"}, {"typ": "name", "val": "a"}]))
        assert p is not None and p.object_id == "ab-1" and p.name == "a"
    bare = api.parse_principal(header([{"typ": "name", "val": "a"}]))
    assert bare is not None and bare.object_id is None


def test_tenant_records_limit_who_sees_and_who_applies_by_object_id_or_name():
    from shared.tenants import Tenant

    tid = "11111111-1111-4111-8111-111111111111"
    open_tenant = Tenant(tid, "Open")
    limited = Tenant(tid, "Limited", readers=("OID-R",), operators=("op@x.example",))
    reader = api.Principal("r@x.example", frozenset({api.READER_ROLE}), "oid-r")
    other = api.Principal("o@x.example", frozenset({api.READER_ROLE}), "oid-o")
    operator = api.Principal("OP@x.example", frozenset({api.OPERATOR_ROLE}), None)
    assert all(
        api.may_read(open_tenant, p) and api.may_apply(open_tenant, p)
        for p in (reader, other, operator)
    )
    assert api.may_read(limited, reader) and not api.may_read(limited, other)
    assert api.may_read(limited, operator), "who operates a tenant reads it"
    assert api.may_apply(limited, operator) and not api.may_apply(limited, reader)
    # No caller (Authentication off): the function key is the deployment's, every tenant.
    assert api.may_read(limited, None) and api.may_apply(limited, None)
