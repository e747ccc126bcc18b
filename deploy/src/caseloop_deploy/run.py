"""``make run``: a noida-db broker and the four services on SQLite under ./data, until Ctrl-C.

Environment: ``CASELOOP_DATA_DIR`` (default ./data); ``KAFKA_BOOTSTRAP_SERVERS`` to use an
external Kafka instead of starting a broker; ``CASELOOP_BROKER_PORT`` (default 9092);
``<SERVICE>_PORT`` and ``<SERVICE>_DATABASE_URL`` per service (e.g. ``DISPATCH_DATABASE_URL``);
``CASELOOP_PROFILE`` (default ``development``: the well-known keys ``dev:<role>[:<scope>]``, see
the README's "Who may do what"), ``CASELOOP_API_KEYS_FILE`` and ``CASELOOP_JWT_*`` for real credentials.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

from caseloop_deploy.stack import DEFAULT_PORTS, SERVICES, LocalStack


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    data_dir = Path(os.environ.get("CASELOOP_DATA_DIR", "data"))
    ports = {name: int(os.environ.get(f"{name.upper()}_PORT", DEFAULT_PORTS[name])) for name in SERVICES}
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker_port = int(os.environ.get("CASELOOP_BROKER_PORT", "9092"))
    taken = [p for p in [*ports.values(), *([] if external else [broker_port])] if _port_taken(p)]
    if taken:
        advice = "stop what uses them or set <SERVICE>_PORT / CASELOOP_BROKER_PORT"
        sys.exit(f"caseloop: port(s) {taken} on 127.0.0.1 are in use; {advice}")
    database_urls = {n: url for n in SERVICES if (url := os.environ.get(f"{n.upper()}_DATABASE_URL"))}
    profile = os.environ.get("CASELOOP_PROFILE", "development")
    stack = LocalStack(
        data_dir,
        ports=ports,
        broker_port=broker_port,
        bootstrap_servers=external,
        database_urls=database_urls,
        extra_env={"CASELOOP_PROFILE": profile},
    )
    stopping = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"caseloop: starting (data in {stack.data_dir}) ...", flush=True)
    try:
        stack.start()
        broker = external or (stack.broker.bootstrap_servers if stack.broker else "?")
        print(
            f"caseloop: broker   {broker}" + ("" if external else f" (noida-db, data in {stack.data_dir / 'broker'})")
        )
        for name in SERVICES:
            service = stack.services[name]
            print(f"caseloop: {name:<12}{service.url}   docs {service.url}/docs   log {service.log_path}")
        if profile == "development":
            print(
                "caseloop: *** DEVELOPMENT PROFILE *** the well-known keys dev:<role>[:<scope>] are accepted "
                "(e.g. X-API-Key: dev:supervisor); for local use only"
            )
        print("caseloop: running; press Ctrl-C to stop", flush=True)
        while not stopping.wait(1.0):
            for name, service in stack.services.items():
                if not service.running:
                    print(f"caseloop: {name} stopped unexpectedly:\n{stack.log_tail(name)}", file=sys.stderr)
                    stopping.set()
    except RuntimeError as error:
        print(f"caseloop: {error}", file=sys.stderr)
        stack.stop()
        sys.exit(1)
    print("caseloop: stopping ...", flush=True)
    stack.stop()
    print("caseloop: stopped", flush=True)


if __name__ == "__main__":
    main()
