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
