"""A whole caseloop on one machine: a broker process and the four service processes.

Used by ``make run`` and by the end-to-end and fault tests, so both exercise the same
start-up the user gets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from caseloop_events.testing.broker import BrokerKind, LocalBroker

SERVICES: tuple[str, ...] = ("intake", "triage", "dispatch", "supervision")
DEFAULT_PORTS: Mapping[str, int] = {"intake": 8001, "triage": 8002, "dispatch": 8003, "supervision": 8004}


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalStack:
    """The broker (unless ``bootstrap_servers`` names an external one) and the four services."""

    data_dir: Path
    broker_kind: BrokerKind = BrokerKind.NOIDA
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    broker_port: int | None = None
    bootstrap_servers: str | None = None
    database_urls: Mapping[str, str] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    broker: LocalBroker | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        for name in SERVICES:
            self.services[name] = ServiceProcess(name, self.ports[name], self.data_dir / "logs" / f"{name}.log")

    def start(self, timeout: float = 90.0) -> LocalStack:
        self.start_broker()
        if self.profile == "production":
            self.migrate()
        for name in SERVICES:
            self.start_service(name)
        self.wait_healthy(timeout)
        return self

    def start_broker(self) -> None:
        """Start the local broker; once it has run, again on its own port with its own data folder."""
        if self.bootstrap_servers is not None:
            return
        if self.broker is None:
            self.broker = LocalBroker(self.broker_kind, self.data_dir / "broker", self.broker_port)
        self.broker.start()

    def stop_broker(self, *, kill: bool = False) -> None:
        """Stop the local broker: gracefully (noida-db saves its data), or SIGKILL as a crash."""
        if self.broker is None:
            return
        if kill:
            self.broker.kill()
        else:
            self.broker.stop()

    def broker_environment(self) -> dict[str, str]:
        if self.broker is not None:
            return self.broker.environment()
        assert self.bootstrap_servers is not None
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers}

    def service_environment(self, name: str) -> dict[str, str]:
        prefix = name.upper()
        env = {
            **os.environ,
            **self.broker_environment(),
            "CASELOOP_DATA_DIR": str(self.data_dir),
            f"{prefix}_PORT": str(self.ports[name]),
            f"{prefix}_HOST": "127.0.0.1",
            **self.extra_env,
        }
        if name in self.database_urls:
            env[f"{prefix}_DATABASE_URL"] = self.database_urls[name]
        return env

    @property
    def profile(self) -> str:
        """The services' profile: as their settings read it (production unless told otherwise)."""
        return self.extra_env.get("CASELOOP_PROFILE", os.environ.get("CASELOOP_PROFILE", "production"))

    def migrate(self, names: tuple[str, ...] = SERVICES) -> str:
        """Bring the services' databases to head with ``caseloop migrate``, as a deployment does
        before it starts them (in production a service refuses a database not at head); what it said."""
        env = {**os.environ, "CASELOOP_DATA_DIR": str(self.data_dir), **self.extra_env}
        for name, url in self.database_urls.items():
            env[f"{name.upper()}_DATABASE_URL"] = url
        done = subprocess.run(
            [sys.executable, "-c", "from caseloop_deploy.cli import main; main()", "migrate", *names],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"caseloop migrate failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def start_service(self, name: str) -> None:
        service = self.services[name]
        service.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(service.log_path, "ab") as log:
            service.process = subprocess.Popen(
                [sys.executable, "-m", f"caseloop_{name}"],
                env=self.service_environment(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 90.0, names: tuple[str, ...] = SERVICES) -> None:
        """Wait until every named service answers ``/healthz`` with 200; fail with its log's tail."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                name = pending[0]
                service = self.services[name]
                if service.process is not None and service.process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{self.log_tail(name)}")
                try:
                    if client.get(f"{service.url}/healthz").status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not healthy within {timeout}s:\n{self.log_tail(name)}")
                time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.services[name].log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_service(self, name: str, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Stop one service: SIGTERM and wait (uvicorn shuts down cleanly), or SIGKILL as a crash."""
        process = self.services[name].process
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
            process.wait()
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Services first, so they flush and close, then the broker."""
        for name in reversed(SERVICES):
            self.stop_service(name)
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
