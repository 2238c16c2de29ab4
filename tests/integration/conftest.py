"""The real local world for integration tests: Azurite (once per session) and a Graph simulator per
test, over real HTTP. Each test gets its own table prefix, so runs never see each other's rows."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localdev.services import ROOT, Azurite, Simulator, app_settings
from shared.graph import forget_pacers
from shared.settings import Settings
from shared.store import TableStore

DEMO_TENANT = ROOT / "simulator" / "tenants" / "demo.json"
# A managed-service provider's world: the demo tenant (Contoso, the deployment's home tenant) and
# two customer tenants, served by one simulator (docs/simulator.md "Several tenants").
CUSTOMER_TENANTS = (DEMO_TENANT.with_name("fabrikam.json"), DEMO_TENANT.with_name("northwind.json"))
CONTOSO, FABRIKAM, NORTHWIND = (
    json.loads(path.read_text())["tenantId"] for path in (DEMO_TENANT, *CUSTOMER_TENANTS)
)


def msp_simulator(*extra_args: str) -> Simulator:
    """One simulator serving Contoso (its default tenant), Fabrikam and Northwind."""
    return Simulator(DEMO_TENANT, tenants=CUSTOMER_TENANTS, extra_args=extra_args).start()


# Licence processing after a 202 takes this long in every world unless a test sets its own
# --processing-delay-s (Entra takes minutes to hours; what matters is that it is not instant).
PROCESSING_DELAY_S = 0.3


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = Azurite().start()
    yield server
    server.stop()


@dataclass
class World:
    sim: Simulator
    env: dict[str, str]
    settings: Settings
    store: TableStore

    def requests(self) -> list[dict[str, Any]]:
        return [
            r
            for r in self.sim.admin("GET", "/_sim/requests")["value"]
            if r["path"].startswith("/v1.0")
        ]

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["method"] != "GET"]

    def licence_writes(self) -> list[dict[str, Any]]:
        """Writes to the directory (alert mail excluded)."""
        return [r for r in self.writes() if not r["path"].endswith("/sendMail")]

    def clear_requests(self) -> None:
        self.sim.admin("DELETE", "/_sim/requests")

    def state(self) -> dict[str, Any]:
        return self.sim.admin("GET", "/_sim/state")

    def group(self, name: str) -> dict[str, Any]:
        return next(g for g in self.state()["groups"] if g["displayName"] == name)

    def wait_for_processing(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Wait, as an admin would, until Entra has processed every group (each group's
        licenseProcessingState is ProcessingComplete); returns the tenant state then."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state()
            pending = [
                g["displayName"]
                for g in state["groups"]
                if g["licenseProcessingState"]["state"] != "ProcessingComplete"
            ]
            if not pending:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"licence processing still pending after {timeout_s} s: {pending}"
                )
            time.sleep(0.05)


@pytest.fixture(autouse=True)
def fresh_pacers() -> Iterator[None]:
    """Graph pacers are per process and endpoint; a simulator on a reused port is a new tenant."""
    forget_pacers()
    yield
    forget_pacers()


@pytest.fixture
def world_factory(azurite: Azurite, tmp_path: Path) -> Iterator[Any]:
    started: list[Simulator] = []

    def make(
        tenant: dict[str, Any] | Path = DEMO_TENANT,
        policy: str | Path | None = None,
        sim_args: tuple[str, ...] = (),
        **overrides: str,
    ) -> World:
        if isinstance(tenant, dict):
            path = tmp_path / f"tenant-{len(started)}.json"
            path.write_text(json.dumps(tenant))
            tenant = path
        if "--processing-delay-s" not in sim_args:
            # Asynchronous by default, as in Entra: a 202 from assignLicense means "later".
            sim_args = ("--processing-delay-s", str(PROCESSING_DELAY_S), *sim_args)
        sim = Simulator(tenant, extra_args=sim_args).start()
        started.append(sim)
        if isinstance(policy, str):
            policy_path = tmp_path / f"policy-{len(started)}.yaml"
            policy_path.write_text(policy)
            overrides["LICENSING_POLICY_PATH"] = str(policy_path)
        elif isinstance(policy, Path):
            overrides["LICENSING_POLICY_PATH"] = str(policy)
        env = app_settings(
            azurite, sim, LICENSING_TABLE_PREFIX="t" + secrets.token_hex(6), **overrides
        )
        settings = Settings.from_env(env)
        return World(sim, env, settings, TableStore.from_settings(settings))

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def world(world_factory: Any) -> World:
    """The demo tenant with the shipped policy."""
    return world_factory()
