"""Start Azurite and the Graph simulator on free loopback ports, and stop them again.

Used by the demo, the tests and the benchmarks, so all three run the same local world.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account (public, documented by Microsoft; not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _wait_for_port(
    port: int, proc: subprocess.Popen[Any], what: str, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {LOOPBACK}:{port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Azurite:
    location: Path | None = None  # None: in memory
    table_port: int = 0
    queue_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    blob_port: int = 0

    def start(self, same_ports: bool = False) -> Azurite:
        """Start on free ports, or on the ports it had (a restart, for fault tests)."""
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run `make setup` (npm ci) first")
        if not same_ports:
            self.table_port, self.queue_port, self.blob_port = free_port(), free_port(), free_port()
        blob_port = self.blob_port
        args = [
            str(AZURITE_BIN),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--blobHost",
            LOOPBACK,
            "--queueHost",
            LOOPBACK,
            "--tableHost",
            LOOPBACK,
            "--blobPort",
            str(blob_port),
            "--queuePort",
            str(self.queue_port),
            "--tablePort",
            str(self.table_port),
        ]
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.table_port, self.proc, "Azurite")
        _wait_for_port(self.queue_port, self.proc, "Azurite")
        return self

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"TableEndpoint=http://{LOOPBACK}:{self.table_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint=http://{LOOPBACK}:{self.queue_port}/{DEV_ACCOUNT};"
        )

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class Simulator:
    tenant: Path | None = None  # a tenant file, or
    generate: str | None = None  # a generated tenant's spec (users=N,groups=G,skus=S,...)
    extra_args: tuple[str, ...] = ()
    # Several tenants: more tenant files served after `tenant` (the default one), or with
    # `generate`, this many generated tenants of that spec.
    tenants: tuple[Path, ...] = ()
    generate_tenants: int = 1
    url: str = ""
    proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    _stderr: IO[str] | None = field(default=None, repr=False)

    def start(self) -> Simulator:
        if self.generate:
            source = ["--generate", self.generate]
            if self.tenants:
                raise ValueError("Simulator: extra tenant files go with `tenant`, not `generate`")
            if self.generate_tenants != 1:
                source += ["--generate-tenants", str(self.generate_tenants)]
        else:
            if self.generate_tenants != 1:
                raise ValueError("Simulator: generate_tenants needs a `generate` spec")
            source = ["--tenant", str(self.tenant)]
            for extra in self.tenants:
                source += ["--tenant", str(extra)]
        args = [
            sys.executable,
            "-m",
            "simulator",
            "serve",
            "--port",
            "0",
            *source,
            *self.extra_args,
        ]
        # stderr to a file, not a pipe: a pipe nobody reads would block a chatty server.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        prefix = "simulator listening on "
        if not line.startswith(prefix):
            _stop(self.proc)
            self._stderr.seek(0)
            err = self._stderr.read()
            raise RuntimeError(f"the Graph simulator did not start: {line!r} {err[-2000:]}")
        self.url = line[len(prefix) :]
        return self

    @property
    def graph_base_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def token_url(self) -> str:
        return f"{self.url}/_sim/token"

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
            raw = resp.read()
        return json.loads(raw) if raw else None

    def admin_for(self, tenant_id: str, method: str, path: str, body: Any = None) -> Any:
        """An admin call on one tenant: `path` as for `admin` (`/_sim/requests` or
        `/requests`), sent to `/_sim/tenants/<tenant_id>/...`."""
        rest = path.removeprefix("/_sim")
        rest = rest if rest.startswith("/") else f"/{rest}"
        return self.admin(method, f"/_sim/tenants/{tenant_id}{rest}", body)

    def tenant_list(self) -> list[dict[str, Any]]:
        """The served tenants (`GET /_sim/tenants`), the default one first."""
        return list(self.admin("GET", "/_sim/tenants")["value"])

    def stop(self) -> None:
        _stop(self.proc)


def app_settings(azurite: Azurite, sim: Simulator, **overrides: str) -> dict[str, str]:
    """The app settings a local run uses, as environment variables."""
    env = {
        "LICENSING_POLICY_PATH": str(ROOT / "policy" / "licensing-policy.yaml"),
        "LICENSING_TIMER_SCHEDULE": "0 0 2 * * *",
        "LICENSING_TIMER_MODE": "plan",
        "LICENSING_GRAPH_BASE_URL": sim.graph_base_url,
        "LICENSING_GRAPH_CREDENTIAL": "local-simulator",
        "LICENSING_SIM_TOKEN_URL": sim.token_url,
        "LICENSING_TABLES_CONNECTION_STRING": azurite.connection_string,
        "LICENSING_TABLE_PREFIX": "lic",
        "LICENSING_ALERT_MAILBOX": "licensing-alerts@contoso.com",
        "LICENSING_ALERT_RECIPIENTS": "it-ops@contoso.com",
        "LICENSING_MAX_CONCURRENCY": "32",
        "LICENSING_RUN_QUEUE": "licensing-runs",
    }
    env.update(overrides)
    return env


__all__ = ["Azurite", "Simulator", "app_settings", "free_port"]
