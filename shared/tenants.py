"""The tenants one deployment enforces: data, validated like the policy.

A managed-service provider's deployment enforces many customer tenants; each is a record here
(tenant id, display name, the policy it uses, nightly mode, alert recipients, who may see or run
it, enabled). Records live in the tenants table (`<prefix>tenants`, see shared/store.py) or, for
local use, in a tenants file (LICENSING_TENANTS_FILE, YAML or JSON, policy/tenants.schema.json).
With no records the app enforces one implicit tenant, its own identity's, exactly as a
single-tenant install always has (`IMPLICIT`, tenant id None, unprefixed rows).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from shared.errors import PolicyError
from shared.policy import read_document, schema_problem
from shared.settings import APP_ROOT, Mode, Settings
from shared.store import TenantsTable

SCHEMA_PATH = APP_ROOT / "policy" / "tenants.schema.json"


class TenantError(PolicyError):
    """A tenant record or tenants file is malformed: names the source, the key and the problem."""


@dataclass(frozen=True)
class Tenant:
    tenant_id: str  # lowercase GUID
    display_name: str
    enabled: bool = True
    mode: Mode = "plan"
    policy_path: str | None = None  # the tenant's own policy file; None: the shared policy
    policy_overrides: Mapping[str, Any] | None = None
    alert_recipients: tuple[str, ...] = ()  # empty: the deployment's recipients
    readers: tuple[str, ...] = ()  # empty: every caller with the role
    operators: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)  # bookkeeping (dates)

    def to_record(self) -> dict[str, Any]:
        """The record as written in a tenants file (camelCase, defaults left out)."""
        out: dict[str, Any] = {"tenantId": self.tenant_id, "displayName": self.display_name}
        if not self.enabled:
            out["enabled"] = False
        if self.mode != "plan":
            out["mode"] = self.mode
        if self.policy_path:
            out["policyPath"] = self.policy_path
        if self.policy_overrides:
            out["policyOverrides"] = dict(self.policy_overrides)
        for key, values in (
            ("alertRecipients", self.alert_recipients),
            ("readers", self.readers),
            ("operators", self.operators),
        ):
            if values:
                out[key] = list(values)
        return out


def tenant_from_record(record: Any, source: str = "<tenant>") -> Tenant:
    """One record (as in a tenants file) into a Tenant; TenantError naming what is wrong."""
    problem = schema_problem({"version": 1, "tenants": [record]}, SCHEMA_PATH)
    if problem:
        key, text = problem
        raise TenantError(source, key.removeprefix("tenants[0]").lstrip("."), text)
    return _tenant(record)


def _tenant(r: Mapping[str, Any]) -> Tenant:
    return Tenant(
        tenant_id=str(r["tenantId"]).lower(),
        display_name=str(r["displayName"]),
        enabled=bool(r.get("enabled", True)),
        mode=cast(Mode, r.get("mode", "plan")),
        policy_path=r.get("policyPath"),
        policy_overrides=r.get("policyOverrides") or None,
        alert_recipients=tuple(r.get("alertRecipients") or ()),
        readers=tuple(r.get("readers") or ()),
        operators=tuple(r.get("operators") or ()),
    )


def parse_tenants(text: str, source: str = "<tenants>") -> list[Tenant]:
    """A tenants file's text into tenants; TenantError (a PolicyError) naming what is wrong,
    including a key given twice and a tenant listed twice."""
    try:
        data = read_document(text, source)
    except PolicyError as exc:
        raise TenantError(exc.file, exc.key, exc.problem) from None
    if problem := schema_problem(data, SCHEMA_PATH):
        raise TenantError(source, *problem)
    tenants = [_tenant(r) for r in data["tenants"]]
    seen: dict[str, int] = {}
    for i, t in enumerate(tenants):
        if t.tenant_id in seen:
            raise TenantError(
                source,
                f"tenants[{i}].tenantId",
                f"{t.tenant_id} is listed twice (also tenants[{seen[t.tenant_id]}])",
            )
        seen[t.tenant_id] = i
    return tenants


def load_tenants_file(path: Path) -> list[Tenant]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TenantError(str(path), "", "file not found (set LICENSING_TENANTS_FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TenantError(str(path), "", f"cannot read the file: {exc}") from None
    return parse_tenants(text, str(path))


def dump_tenants(tenants: Iterable[Tenant], path: Path) -> str:
    """A tenants file's text (JSON for .json, else YAML), as `load_tenants_file` reads it back."""
    data = {"version": 1, "tenants": [t.to_record() for t in tenants]}
    if path.suffix == ".json":
        return json.dumps(data, indent=2) + "\n"
    import yaml

    header = "# yaml-language-server: $schema=../policy/tenants.schema.json\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def settings_for(settings: Settings, tenant: Tenant | None) -> Settings:
    """The settings one tenant's run uses: its policy, overrides, nightly mode and recipients.

    None: the implicit tenant (the settings as they are). The Graph URL, storage, mailbox and
    limits are the deployment's; the tenant id makes the store, the credential and the alerts
    that tenant's."""
    if tenant is None:
        return settings
    policy_path = settings.policy_path
    if tenant.policy_path:
        policy_path = Path(tenant.policy_path)
        if not policy_path.is_absolute():
            policy_path = APP_ROOT / policy_path
    return dataclasses.replace(
        settings,
        tenant_id=tenant.tenant_id,
        tenant_name=tenant.display_name,
        policy_path=policy_path,
        policy_overrides=tenant.policy_overrides,
        timer_mode=tenant.mode,
        alert_recipients=tenant.alert_recipients or settings.alert_recipients,
    )


class TenantsFile:
    """Tenants kept in a file (local use); the commands rewrite it, comments are not kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = str(path)

    def list(self) -> list[Tenant]:
        return load_tenants_file(self.path) if self.path.exists() else []

    def get(self, tenant_id: str) -> Tenant | None:
        return next((t for t in self.list() if t.tenant_id == tenant_id.lower()), None)

    def put(self, tenant: Tenant) -> None:
        tenants = self.list()
        if any(t.tenant_id == tenant.tenant_id for t in tenants):
            tenants = [tenant if t.tenant_id == tenant.tenant_id else t for t in tenants]
        else:
            tenants.append(tenant)
        self.path.write_text(dump_tenants(tenants, self.path), encoding="utf-8")

    def remove(self, tenant_id: str) -> None:
        tenants = [t for t in self.list() if t.tenant_id != tenant_id.lower()]
        self.path.write_text(dump_tenants(tenants, self.path), encoding="utf-8")


class TenantsRegistry:
    """Tenants kept in the tenants table (Azure, and local use without a file)."""

    def __init__(self, table: TenantsTable) -> None:
        self.table = table
        self.source = f"table {table.name}"

    def list(self) -> list[Tenant]:
        rows = sorted(self.table.list(), key=lambda r: str(r.get("DisplayName", "")).lower())
        return [self._from_row(r) for r in rows]

    def get(self, tenant_id: str) -> Tenant | None:
        row = self.table.get(tenant_id.lower())
        return self._from_row(row) if row else None

    def put(self, tenant: Tenant) -> None:
        self.table.put(
            tenant.tenant_id,
            {
                "DisplayName": tenant.display_name,
                "Enabled": tenant.enabled,
                "Record": json.dumps(tenant.to_record()),
            },
        )

    def remove(self, tenant_id: str) -> None:
        self.table.delete(tenant_id.lower())

    def _from_row(self, row: Mapping[str, Any]) -> Tenant:
        where = f"{self.source}, row {row.get('RowKey')}"
        try:
            record = json.loads(str(row.get("Record", "")))
        except ValueError:
            raise TenantError(where, "Record", "is not JSON") from None
        return tenant_from_record(record, where)


def tenants_source(settings: Settings) -> TenantsFile | TenantsRegistry:
    """Where this deployment's tenant records live: the tenants file if set, else the table."""
    if settings.tenants_file is not None:
        return TenantsFile(settings.tenants_file)
    return TenantsRegistry(TenantsTable.from_settings(settings))


def tenants_to_enforce(settings: Settings) -> list[Tenant] | None:
    """The tenants a nightly run covers: every enabled record; None when there are no records at
    all (the implicit tenant). Disabled tenants are skipped, never the others with them."""
    tenants = tenants_source(settings).list()
    if not tenants:
        return None
    return [t for t in tenants if t.enabled]
