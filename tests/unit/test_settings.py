"""App settings: parsed once, every problem named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.settings import SETTINGS_KEYS, Settings

ROOT = Path(__file__).resolve().parents[2]
BASE = {"LICENSING_TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"}


def test_defaults_are_safe_plan_mode_nightly_at_two():
    s = Settings.from_env(BASE)
    assert s.timer_mode == "plan"
    assert s.timer_schedule == "0 0 2 * * *"
    assert s.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert s.graph_credential == "managed-identity"
    assert s.alert_mailbox is None


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                "LICENSING_TIMER_MODE": "yolo",
                "LICENSING_MAX_CONCURRENCY": "0",
                "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
                "LICENSING_ALERT_MAILBOX": "ops@contoso.example",
            }
        )
    text = str(info.value)
    for key in (
        "LICENSING_TIMER_MODE",
        "LICENSING_MAX_CONCURRENCY",
        "LICENSING_SIM_TOKEN_URL",
        "LICENSING_TABLES_CONNECTION_STRING",
        "LICENSING_ALERT_RECIPIENTS",
    ):
        assert key in text


def test_bad_schedule_and_graph_url_are_named():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                **BASE,
                "LICENSING_TIMER_SCHEDULE": "0 2 * * *",
                "LICENSING_GRAPH_BASE_URL": "https://graph.microsoft.com/beta",
            }
        )
    assert "LICENSING_TIMER_SCHEDULE" in str(info.value)
    assert "LICENSING_GRAPH_BASE_URL" in str(info.value)


def test_the_wait_for_licence_processing_is_bounded_and_named_when_bad():
    assert Settings.from_env(BASE).measure_wait_s == 120
    assert Settings.from_env({**BASE, "LICENSING_MEASURE_WAIT_SECONDS": "0"}).measure_wait_s == 0
    for bad in ("-1", "901", "soon", "nan"):
        with pytest.raises(ConfigurationError, match=r"LICENSING_MEASURE_WAIT_SECONDS.*0\.\.900"):
            Settings.from_env({**BASE, "LICENSING_MEASURE_WAIT_SECONDS": bad})


def test_sample_local_settings_hold_exactly_the_keys_the_app_reads():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    values = sample["Values"]
    app_keys = {k for k in values if k.startswith("LICENSING_")}
    assert app_keys == set(SETTINGS_KEYS)
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    Settings.from_env(values)  # the sample itself parses


def test_authentication_comes_from_the_platform_and_apply_without_it_is_opt_in():
    s = Settings.from_env(BASE)
    assert (s.auth_enabled, s.http_apply_without_auth) == (False, False)
    on = Settings.from_env({**BASE, "WEBSITE_AUTH_ENABLED": "True"})
    assert on.auth_enabled
    assert Settings.from_env(
        {**BASE, "LICENSING_HTTP_APPLY_WITHOUT_AUTH": "TRUE"}
    ).http_apply_without_auth
    with pytest.raises(ConfigurationError, match="LICENSING_HTTP_APPLY_WITHOUT_AUTH='yes'"):
        Settings.from_env({**BASE, "LICENSING_HTTP_APPLY_WITHOUT_AUTH": "yes"})


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.microsoft.com/v1.0",
        "https://graph.microsoft.us/v1.0",
        "https://dod-graph.microsoft.us/v1.0",
        "https://microsoftgraph.chinacloudapi.cn/v1.0/",
    ],
)
def test_the_managed_identity_talks_to_microsoft_graph_hosts(url: str):
    assert Settings.from_env({**BASE, "LICENSING_GRAPH_BASE_URL": url}).graph_base_url == (
        url.rstrip("/")
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.example.com/v1.0",
        "https://graph.microsoft.com.example.net/v1.0",
        "https://example.net@graph.microsoft.com/v1.0",
        "https://graph.microsoft.com:8443/v1.0",
        "http://graph.microsoft.com/v1.0",
        "http://127.0.0.1:8900/v1.0",
    ],
)
def test_the_managed_identity_token_cannot_be_sent_to_another_host(url: str):
    """A bad app setting must not hand the identity's Graph token to someone else."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**BASE, "LICENSING_GRAPH_BASE_URL": url})
    assert "LICENSING_GRAPH_BASE_URL" in str(info.value)
    assert "graph.microsoft.com" in str(info.value), "the message lists the allowed hosts"


LOCAL = {
    "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
    "LICENSING_GRAPH_BASE_URL": "http://127.0.0.1:8900/v1.0",
    "LICENSING_SIM_TOKEN_URL": "http://127.0.0.1:8900/_sim/token",
    "LICENSING_TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true",
}
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
    "QueueEndpoint=http://[::1]:10001/devstoreaccount1;"
)
REMOTE_ACCOUNT = "DefaultEndpointsProtocol=https;AccountName=stprod;AccountKey=a2V5"


def test_local_mode_accepts_loopback_everywhere():
    s = Settings.from_env(
        {
            **LOCAL,
            "LICENSING_TABLES_CONNECTION_STRING": AZURITE,
            "AzureWebJobsStorage": AZURITE,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
        }
    )
    assert s.graph_credential == "local-simulator"
    Settings.from_env({**LOCAL, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    proxied = "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://10.1.2.3"
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage"):
        Settings.from_env({**LOCAL, "AzureWebJobsStorage": proxied})


def test_local_mode_refuses_every_endpoint_off_loopback_naming_each():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                **LOCAL,
                "LICENSING_GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
                "LICENSING_SIM_TOKEN_URL": "https://login.microsoftonline.com/x/token",
                "LICENSING_TABLES_CONNECTION_STRING": REMOTE_ACCOUNT,
                "AzureWebJobsStorage": AZURITE.replace("[::1]", "10.0.0.5"),
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example.com",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost.example.com/v1/traces",
                "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=a2V5",
            }
        )
    text = str(info.value)
    for key in (
        "LICENSING_GRAPH_BASE_URL",
        "LICENSING_SIM_TOKEN_URL",
        "LICENSING_TABLES_CONNECTION_STRING",
        "AzureWebJobsStorage",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    ):
        assert key in text, key
    assert "loopback" in text
    assert "a2V5" not in text, "an account key is never echoed"


def test_local_mode_refuses_identity_based_storage_off_loopback():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                **{k: v for k, v in LOCAL.items() if k != "LICENSING_TABLES_CONNECTION_STRING"},
                "LICENSING_TABLES_ENDPOINT": "https://stprod.table.core.windows.net/",
                "AzureWebJobsStorage__queueServiceUri": "https://stprod.queue.core.windows.net/",
            }
        )
    assert "LICENSING_TABLES_ENDPOINT" in str(info.value)
    assert "AzureWebJobsStorage__queueServiceUri" in str(info.value)


def test_the_multitenant_app_id_is_a_guid_or_empty():
    app = "A7D388C3-5E3F-4959-AC7D-786B3383006A"
    assert Settings.from_env(BASE).multitenant_app_id is None
    assert (
        Settings.from_env({**BASE, "LICENSING_MULTITENANT_APP_ID": " "}).multitenant_app_id is None
    )
    parsed = Settings.from_env({**BASE, "LICENSING_MULTITENANT_APP_ID": app})
    assert parsed.multitenant_app_id == app.lower()
    for bad in ("fabrikam", app + "0", "{" + app + "}"):
        with pytest.raises(ConfigurationError) as info:
            Settings.from_env({**BASE, "LICENSING_MULTITENANT_APP_ID": bad})
        assert "LICENSING_MULTITENANT_APP_ID" in str(info.value) and "GUID" in str(info.value)
