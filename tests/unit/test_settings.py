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
