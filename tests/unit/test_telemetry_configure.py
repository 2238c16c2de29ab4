"""Which exporter the app picks. Azure Monitor cannot run here: its entry point is faked."""

from __future__ import annotations

from typing import Any

import azure.monitor.opentelemetry as azure_monitor
import pytest
from azure.identity import ManagedIdentityCredential

from shared.telemetry import configure


def test_application_insights_with_entra_auth_exports_with_the_managed_identity(
    monkeypatch: pytest.MonkeyPatch,
):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(azure_monitor, "configure_azure_monitor", lambda **kw: calls.append(kw))
    chosen = configure(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=" + "0" * 32,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc;Authorization=AAD",
            "AZURE_CLIENT_ID": "abc",
        }
    )
    assert chosen == "azure-monitor"
    [kwargs] = calls
    assert isinstance(kwargs["credential"], ManagedIdentityCredential)
    assert kwargs["logger_name"] == "licensing"


def test_without_any_exporter_setting_nothing_is_configured():
    assert configure({}) == "none"


def test_local_mode_exports_nothing_to_an_otlp_endpoint_off_loopback(
    caplog: pytest.LogCaptureFixture,
):
    """configure() runs at import, before the settings are read: it checks the endpoint itself."""
    chosen = configure(
        {
            "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example.com:4318",
        }
    )
    assert chosen == "none"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in caplog.text and "loopback" in caplog.text


def test_local_mode_sends_nothing_to_application_insights(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(azure_monitor, "configure_azure_monitor", lambda **kw: calls.append(kw))
    chosen = configure(
        {
            "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=" + "0" * 32,
        }
    )
    assert chosen == "none" and calls == []
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in caplog.text
