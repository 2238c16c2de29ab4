"""Typed settings, parsed once from app settings (environment variables), with clear errors.

Every key the app reads is listed in SETTINGS_KEYS and in local.settings.sample.json; a test keeps
the two (and infra's app settings) in step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from shared.common import GUID_RE, is_loopback_url
from shared.errors import ConfigurationError

Mode = Literal["plan", "apply"]
CredentialKind = Literal["managed-identity", "local-simulator"]

APP_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# The managed identity's Graph token goes only to Microsoft Graph's service roots, global and
# national clouds: "Microsoft Graph national cloud deployments",
# https://learn.microsoft.com/graph/deployments (Microsoft Graph service root endpoints).
GRAPH_HOSTS = (
    "graph.microsoft.com",  # global service
    "graph.microsoft.us",  # US Government L4 (GCC High)
    "dod-graph.microsoft.us",  # US Government L5 (DoD)
    "microsoftgraph.chinacloudapi.cn",  # operated by 21Vianet
)
# Everything the app talks to when LICENSING_GRAPH_CREDENTIAL=local-simulator must be loopback.
QUEUE_CONNECTION = "AzureWebJobsStorage"  # the Functions host's storage; the run queue lives there
APPINSIGHTS_KEY = "APPLICATIONINSIGHTS_CONNECTION_STRING"
OTLP_ENDPOINT_KEYS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)

# Key -> one-line description (also used by docs and the settings consistency test).
SETTINGS_KEYS: dict[str, str] = {
    "LICENSING_POLICY_PATH": "Policy file (YAML or JSON), relative to the app root or absolute.",
    "LICENSING_TIMER_SCHEDULE": "NCRONTAB schedule of the nightly run (default 0 0 2 * * *).",
    "LICENSING_TIMER_MODE": "What the timer run does: plan (report only, default) or apply.",
    "LICENSING_GRAPH_BASE_URL": "Microsoft Graph v1.0 base URL (default https://graph.microsoft.com/v1.0).",
    "LICENSING_GRAPH_CREDENTIAL": "managed-identity (Azure, default) or local-simulator.",
    "LICENSING_SIM_TOKEN_URL": "Token endpoint of the local Graph simulator.",
    "LICENSING_TABLES_CONNECTION_STRING": "Table Storage connection string (local/Azurite).",
    "LICENSING_TABLES_ENDPOINT": "Table Storage endpoint for identity-based access (Azure).",
    "LICENSING_TABLE_PREFIX": "Prefix of the table names (default lic), letters and digits.",
    "LICENSING_ALERT_MAILBOX": "Mailbox (UPN or id) alerts are sent from; empty disables mail.",
    "LICENSING_ALERT_RECIPIENTS": "Comma-separated addresses that receive alerts.",
    "LICENSING_MAX_CONCURRENCY": (
        "Ceiling of the groups read (and written) at once; the engine adapts below it to "
        "Graph's pacing signals (default 32, 1..64)."
    ),
    "LICENSING_RUN_QUEUE": "Storage queue of runs started over HTTP (default licensing-runs).",
    "LICENSING_MEASURE_WAIT_SECONDS": (
        "After writes, how long to wait for Graph's licence processing before measuring seats "
        "(default 120, 0..900)."
    ),
    "LICENSING_TENANTS_FILE": (
        "Tenants file (YAML or JSON) for local use, instead of the tenants table; empty: the "
        "table (and with no tenants in it, the one implicit tenant)."
    ),
    "LICENSING_MULTITENANT_APP_ID": (
        "Application (client) id of the multi-tenant app registration, the managed identity its "
        "federated credential (infra multiTenant=true); empty: only the identity's own tenant."
    ),
    "LICENSING_HTTP_APPLY_WITHOUT_AUTH": (
        "true lets POST /api/runs start apply runs with App Service Authentication off (the "
        "function key alone); default false."
    ),
}

# Set by App Service (read-only) when its Authentication feature is on: "Environment variables and
# app settings in Azure App Service", https://learn.microsoft.com/azure/app-service/reference-app-settings
AUTH_ENABLED_KEY = "WEBSITE_AUTH_ENABLED"


def _connection_endpoint(conn: str, service: str) -> str | None:
    """Where a storage connection string sends `service` (Table, Queue) calls; None: not loopback
    by construction (an account name with Azure's endpoint suffix)."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        # Azurite's default address, unless a proxy is named (then everything goes through it).
        return parts.get("DevelopmentStorageProxyUri") or "http://127.0.0.1"
    return parts.get(f"{service}Endpoint")


def local_endpoint_problems(env: Mapping[str, str]) -> list[str]:
    """Endpoints in `env`, other than Graph and its token URL, that are not loopback; for local
    mode, where nothing may leave the machine. Values holding keys are named, never echoed."""

    def value(key: str) -> str:
        return (env.get(key) or "").strip()

    problems: list[str] = []
    for key, service in (
        ("LICENSING_TABLES_CONNECTION_STRING", "Table"),
        (QUEUE_CONNECTION, "Queue"),
    ):
        conn = value(key)
        if conn and not is_loopback_url(_connection_endpoint(conn, service) or ""):
            problems.append(
                f"{key} must point at loopback storage in local mode (UseDevelopmentStorage=true "
                f"or {service}Endpoint=http://127.0.0.1:...): its {service} endpoint is not"
            )
    for key in ("LICENSING_TABLES_ENDPOINT", f"{QUEUE_CONNECTION}__queueServiceUri"):
        if value(key) and not is_loopback_url(value(key)):
            problems.append(f"{key}={value(key)!r} must be a loopback URL in local mode")
    for key in OTLP_ENDPOINT_KEYS:
        if value(key) and not is_loopback_url(value(key)):
            problems.append(f"{key}={value(key)!r} must be a loopback URL in local mode")
    if insights := value(APPINSIGHTS_KEY):
        parts = dict(p.split("=", 1) for p in insights.split(";") if "=" in p)
        if not is_loopback_url(parts.get("IngestionEndpoint", "")):
            problems.append(
                f"{APPINSIGHTS_KEY} sends telemetry to Azure; local mode talks to loopback only "
                "(unset it, or use OTEL_EXPORTER_OTLP_ENDPOINT with a local collector)"
            )
    return problems


def _graph_url_problem(base_url: str, credential: str) -> str | None:
    key = "LICENSING_GRAPH_BASE_URL"
    if not re.match(r"^https?://[^/]+/v1\.0$", base_url):
        return f"{key}={base_url!r} must be an http(s) URL ending in /v1.0"
    if credential == "local-simulator":
        if not is_loopback_url(base_url):
            return (
                f"{key}={base_url!r} must be a loopback URL with "
                "LICENSING_GRAPH_CREDENTIAL=local-simulator (the Graph simulator)"
            )
        return None
    parts = urlsplit(base_url)
    # netloc, not hostname: no port, no user info ("evil@graph.microsoft.com").
    if parts.scheme != "https" or parts.netloc not in GRAPH_HOSTS:
        return (
            f"{key}={base_url!r}: the managed identity's token goes only to Microsoft Graph, "
            f"https://<host>/v1.0 with host one of {', '.join(GRAPH_HOSTS)}"
        )
    return None


_TABLE_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,19}$")
_NCRONTAB_FIELDS = 6
_QUEUE_NAME_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Settings:
    policy_path: Path
    timer_schedule: str
    timer_mode: Mode
    graph_base_url: str
    graph_credential: CredentialKind
    sim_token_url: str | None
    tables_connection_string: str | None
    tables_endpoint: str | None
    table_prefix: str
    alert_mailbox: str | None
    alert_recipients: tuple[str, ...]
    max_concurrency: int
    run_queue: str = "licensing-runs"
    measure_wait_s: float = 120.0
    # App Service Authentication is on (the platform's WEBSITE_AUTH_ENABLED), not an app setting.
    auth_enabled: bool = False
    http_apply_without_auth: bool = False
    tenants_file: Path | None = None
    # The multi-tenant app registration a customer tenant's token is for (shared/credentials.py).
    multitenant_app_id: str | None = None
    # The tenant a run is for (shared.tenants.settings_for); never read from the environment.
    # None: the implicit tenant of a single-tenant install (the identity's own tenant).
    tenant_id: str | None = None
    tenant_name: str = ""
    policy_overrides: Mapping[str, Any] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse settings; raise ConfigurationError listing every problem found."""
        env = os.environ if env is None else env
        problems: list[str] = []

        def get(key: str, default: str | None = None) -> str | None:
            value = env.get(key)
            if value is None or value.strip() == "":
                return default
            return value.strip()

        policy_raw = get("LICENSING_POLICY_PATH", "policy/licensing-policy.yaml")
        assert policy_raw is not None
        policy_path = Path(policy_raw)
        if not policy_path.is_absolute():
            policy_path = APP_ROOT / policy_path

        schedule = get("LICENSING_TIMER_SCHEDULE", "0 0 2 * * *")
        assert schedule is not None
        if len(schedule.split()) != _NCRONTAB_FIELDS:
            problems.append(
                f"LICENSING_TIMER_SCHEDULE={schedule!r} must be an NCRONTAB expression with six "
                "fields (second minute hour day month day-of-week), e.g. '0 0 2 * * *'"
            )

        mode = get("LICENSING_TIMER_MODE", "plan")
        if mode not in ("plan", "apply"):
            problems.append(f"LICENSING_TIMER_MODE={mode!r} must be 'plan' or 'apply'")
            mode = "plan"

        base_url = (get("LICENSING_GRAPH_BASE_URL", DEFAULT_GRAPH_BASE_URL) or "").rstrip("/")

        credential = get("LICENSING_GRAPH_CREDENTIAL", "managed-identity")
        if credential not in ("managed-identity", "local-simulator"):
            problems.append(
                f"LICENSING_GRAPH_CREDENTIAL={credential!r} must be 'managed-identity' or "
                "'local-simulator'"
            )
            credential = "managed-identity"
        if problem := _graph_url_problem(base_url, credential):
            problems.append(problem)
        sim_token_url = get("LICENSING_SIM_TOKEN_URL")
        if credential == "local-simulator":
            if not sim_token_url:
                problems.append(
                    "LICENSING_SIM_TOKEN_URL is needed with "
                    "LICENSING_GRAPH_CREDENTIAL=local-simulator"
                )
            elif not is_loopback_url(sim_token_url):
                problems.append(
                    f"LICENSING_SIM_TOKEN_URL={sim_token_url!r} must be a loopback URL (the Graph "
                    "simulator's token endpoint)"
                )
            problems += local_endpoint_problems(env)

        conn = get("LICENSING_TABLES_CONNECTION_STRING")
        endpoint = get("LICENSING_TABLES_ENDPOINT")
        if not conn and not endpoint:
            problems.append(
                "set LICENSING_TABLES_CONNECTION_STRING (local) or LICENSING_TABLES_ENDPOINT "
                "(Azure, identity-based)"
            )
        elif conn and endpoint:
            problems.append(
                "set only one of LICENSING_TABLES_CONNECTION_STRING and LICENSING_TABLES_ENDPOINT"
            )

        prefix = get("LICENSING_TABLE_PREFIX", "lic")
        assert prefix is not None
        if not _TABLE_PREFIX_RE.match(prefix):
            problems.append(
                f"LICENSING_TABLE_PREFIX={prefix!r} must start with a letter and hold only "
                "letters and digits (at most 20)"
            )

        mailbox = get("LICENSING_ALERT_MAILBOX")
        recipients_raw = get("LICENSING_ALERT_RECIPIENTS", "") or ""
        recipients = tuple(r.strip() for r in recipients_raw.split(",") if r.strip())
        for r in recipients:
            if "@" not in r:
                problems.append(f"LICENSING_ALERT_RECIPIENTS: {r!r} is not an email address")
        if mailbox and not recipients:
            problems.append(
                "LICENSING_ALERT_RECIPIENTS is required when LICENSING_ALERT_MAILBOX is set"
            )

        concurrency_raw = get("LICENSING_MAX_CONCURRENCY", "32")
        try:
            concurrency = int(concurrency_raw or "32")
            if not 1 <= concurrency <= 64:
                raise ValueError
        except ValueError:
            problems.append(
                f"LICENSING_MAX_CONCURRENCY={concurrency_raw!r} must be an integer 1..64"
            )
            concurrency = 8

        run_queue = get("LICENSING_RUN_QUEUE", "licensing-runs")
        assert run_queue is not None
        if not _QUEUE_NAME_RE.match(run_queue):
            problems.append(
                f"LICENSING_RUN_QUEUE={run_queue!r} must be a storage queue name: 3-63 lowercase "
                "letters, digits and single hyphens, starting and ending with a letter or digit"
            )

        wait_raw = get("LICENSING_MEASURE_WAIT_SECONDS", "120")
        try:
            measure_wait_s = float(wait_raw or "120")
            if not 0 <= measure_wait_s <= 900:  # inside the run's 30-minute function timeout
                raise ValueError
        except ValueError:
            problems.append(
                f"LICENSING_MEASURE_WAIT_SECONDS={wait_raw!r} must be a number of seconds 0..900"
            )
            measure_wait_s = 120.0
        apply_without_auth = (get("LICENSING_HTTP_APPLY_WITHOUT_AUTH", "false") or "").lower()
        if apply_without_auth not in ("true", "false"):
            problems.append(
                f"LICENSING_HTTP_APPLY_WITHOUT_AUTH={apply_without_auth!r} must be true or false"
            )
        auth_enabled = (get(AUTH_ENABLED_KEY, "") or "").lower() == "true"
        tenants_raw = get("LICENSING_TENANTS_FILE")
        tenants_file = Path(tenants_raw) if tenants_raw else None
        if tenants_file is not None and not tenants_file.is_absolute():
            tenants_file = APP_ROOT / tenants_file

        multitenant_app_id = get("LICENSING_MULTITENANT_APP_ID")
        if multitenant_app_id is not None:
            if GUID_RE.match(multitenant_app_id):
                multitenant_app_id = multitenant_app_id.lower()
            else:
                problems.append(
                    f"LICENSING_MULTITENANT_APP_ID={multitenant_app_id!r} must be the application "
                    "(client) id of the multi-tenant app registration, a GUID like "
                    "00000000-0000-0000-0000-000000000000 (azd env get-value MULTITENANT_APP_ID)"
                )

        if problems:
            raise ConfigurationError("invalid app settings:\n  - " + "\n  - ".join(problems))
        return cls(
            policy_path=policy_path,
            timer_schedule=schedule,
            timer_mode=cast(Mode, mode),
            graph_base_url=base_url,
            graph_credential=cast(CredentialKind, credential),
            sim_token_url=sim_token_url,
            tables_connection_string=conn,
            tables_endpoint=endpoint,
            table_prefix=prefix,
            alert_mailbox=mailbox,
            alert_recipients=recipients,
            max_concurrency=concurrency,
            run_queue=run_queue,
            measure_wait_s=measure_wait_s,
            auth_enabled=auth_enabled,
            http_apply_without_auth=apply_without_auth == "true",
            tenants_file=tenants_file,
            multitenant_app_id=multitenant_app_id,
        )
