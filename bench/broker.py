"""The benchmark's own Kafka broker: a `devkit.broker.LocalBroker` with the benchmark's heap and throwaway state.

It runs on two free ports with a state directory under ``.cache/bench-kafka``
that ``down`` deletes, so it never touches a developer's demo broker on 9092
or the test suite's brokers. ``with BenchBroker() as broker`` starts it and
always stops it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devkit.broker import LocalBroker, free_ports

REPO = Path(__file__).resolve().parent.parent
STATE_ROOT = REPO / ".cache" / "bench-kafka"
# The benchmark writes a few GB through the broker; more heap than the
# script's default keeps GC pauses out of the measurements.
HEAP_OPTS = "-Xms1g -Xmx1g"


class BenchBroker(LocalBroker):
    """A single-node broker for one benchmark run, its state in ``state_root/<port>``."""

    def __init__(self, state_root: Path = STATE_ROOT) -> None:
        port, controller_port = free_ports(2)
        env = {
            "KAFKA_HEAP_OPTS": os.environ.get("BENCH_KAFKA_HEAP_OPTS", HEAP_OPTS),
            # The readiness probe needs confluent_kafka, which this interpreter has.
            "PYTHON": sys.executable,
        }
        super().__init__(port, controller_port, state_root / str(port), env)

    def up(self) -> subprocess.CompletedProcess[str]:
        """Start the broker, wait until it answers and say so on stderr; raises BrokerError with its output."""
        result = super().up()
        print(f"bench: {result.stdout.strip()}", file=sys.stderr, flush=True)
        return result

    def down(self) -> subprocess.CompletedProcess[str]:
        """Stop the broker (a no-op if it is not running) and delete its data."""
        result = super().down()
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return result
