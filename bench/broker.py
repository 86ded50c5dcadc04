"""The benchmark's own Kafka broker, started and always stopped through ``scripts/kafka``.

It runs on two free ports with a throwaway state directory under
``.cache/bench-kafka``, so it never touches a developer's demo broker on 9092
or the test suite's brokers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from tests.kafka_harness import LocalBroker, free_ports

REPO = Path(__file__).resolve().parent.parent
STATE_ROOT = REPO / ".cache" / "bench-kafka"
# The benchmark writes a few GB through the broker; more heap than the
# script's default keeps GC pauses out of the measurements.
HEAP_OPTS = "-Xms1g -Xmx1g"

__all__ = ["BenchBroker", "BrokerError", "free_ports"]


class BrokerError(RuntimeError):
    """The broker could not be started or stopped."""


class BenchBroker:
    """A single-node KRaft broker for one benchmark run; a context manager.

    The test suite's `LocalBroker` runs ``scripts/kafka``; this adds the
    benchmark's heap, its state under ``.cache/bench-kafka`` and clean-up.
    """

    def __init__(self, state_root: Path = STATE_ROOT) -> None:
        port, controller_port = free_ports(2)
        env = {
            "KAFKA_HEAP_OPTS": os.environ.get("BENCH_KAFKA_HEAP_OPTS", HEAP_OPTS),
            # The readiness probe needs confluent_kafka, which this interpreter has.
            "PYTHON": sys.executable,
        }
        self._broker = LocalBroker(port, controller_port, state_root / str(port), env)
        self.port, self.controller_port, self.state_dir = port, controller_port, self._broker.state_dir

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers string for clients."""
        return self._broker.bootstrap

    def pid(self) -> int | None:
        """The broker's process id, for CPU accounting."""
        try:
            return int((self.state_dir / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        return self._broker.run(command)

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
