"""The benchmark's own Kafka broker, started and always stopped through ``scripts/kafka``.

It runs on two free ports with a throwaway state directory under
``.cache/bench-kafka``, so it never touches a developer's demo broker on 9092
or the test suite's brokers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = REPO / "scripts" / "kafka"
STATE_ROOT = REPO / ".cache" / "bench-kafka"
# The benchmark writes a few GB through the broker; more heap than the
# script's default keeps GC pauses out of the measurements.
HEAP_OPTS = "-Xms1g -Xmx1g"


class BrokerError(RuntimeError):
    """The broker could not be started or stopped."""


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        # Holding every socket until all are bound keeps the ports distinct.
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class BenchBroker:
    """A single-node KRaft broker for one benchmark run; a context manager."""

    def __init__(self, state_root: Path = STATE_ROOT) -> None:
        self.port, self.controller_port = free_ports(2)
        self.state_dir = state_root / str(self.port)

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers string for clients."""
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The broker's process id, for CPU accounting."""
        try:
            return int((self.state_dir / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_STATE_DIR": str(self.state_dir),
            "KAFKA_HEAP_OPTS": os.environ.get("BENCH_KAFKA_HEAP_OPTS", HEAP_OPTS),
            # The readiness probe needs confluent_kafka, which this interpreter has.
            "PYTHON": sys.executable,
        }
        return subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def start(self) -> None:
        """Start the broker and wait until it answers; raise with its log on failure."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = self._script("up")
        except BaseException:
            # Interrupted mid-start: the broker may already run in its own session.
            self.stop()
            raise
        if result.returncode != 0:
            self.stop()
            msg = f"scripts/kafka up failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            raise BrokerError(msg)
        print(f"bench: {result.stdout.strip()}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stop the broker (a no-op if it is not running) and delete its data."""
        result = self._script("down")
        if result.returncode != 0:
            msg = f"scripts/kafka down failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            raise BrokerError(msg)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> BenchBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
