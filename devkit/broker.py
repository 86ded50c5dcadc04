"""A local Kafka broker run through ``scripts/kafka``, and what its callers wait with.

One :class:`LocalBroker` serves the test suite (private brokers on free ports,
each with its own state dir), the benchmark (`bench.broker.BenchBroker` adds
its heap, a throwaway state dir and a line on stderr) and the demo
(`devkit.demo.DemoBroker` adds reusing a broker that already answers and
stopping only one it started). Also here: free ports, whether a broker
answers, and :func:`wait_until`, the deadline-bound polling every caller uses
instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = REPO / "scripts" / "kafka"

T = TypeVar("T")
B = TypeVar("B", bound="LocalBroker")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    message: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Exceptions listed in ``retry_on`` count as "not yet". Raises ``TimeoutError``
    (chained to the last retried exception, if any) once ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except retry_on as exc:
            last_error = exc
        else:
            if result:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(message or f"condition not met within {timeout}s") from last_error
        time.sleep(min(interval, remaining))


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        # Holding every socket open until all are bound keeps the ports distinct.
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    (port,) = free_ports(1)
    return port


def _listening(address: str) -> bool:
    """Whether a ``[proto://]host[:port]`` bootstrap address accepts TCP connections."""
    host, _, port = address.strip().rpartition("://")[2].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port or 9092)), timeout=2):
            return True
    except ValueError:
        return True  # an address we cannot parse: let the Kafka client judge it
    except OSError:
        return False


def broker_reachable(brokers: str, props: Mapping[str, str] | None = None, timeout: float = 5.0) -> bool:
    """Whether ``brokers`` answers a metadata request within ``timeout`` s, using client ``props`` (KAFKA_PROP_*)."""
    if not any(_listening(address) for address in brokers.split(",")):
        return False  # the usual case before `up`, answered without a client's timeout
    # log_level 0: connection-refused noise is the expected answer here.
    config: dict[str, str | int] = {**(props or {}), "bootstrap.servers": brokers, "log_level": 0}
    admin = AdminClient({**config, "socket.connection.setup.timeout.ms": 2000})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


class BrokerError(RuntimeError):
    """``scripts/kafka`` could not start or stop the broker."""


@dataclass(frozen=True)
class LocalBroker:
    """A single-node broker managed through ``scripts/kafka``; ``with`` starts it and always stops it.

    ``controller_port`` and ``state_dir`` left at None are the script's own
    defaults (``port + 1000``, ``.cache/kafka-run/<port>``), as for
    ``make kafka-up``; ``env`` holds further script settings (e.g.
    KAFKA_SASL_PORT, KAFKA_HEAP_OPTS) and wins over the process environment.
    """

    port: int
    controller_port: int | None = None
    state_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def on_free_ports(cls, state_dir: Path, env: Mapping[str, str] | None = None) -> LocalBroker:
        """Describe a broker on two currently free ports, keeping its files in ``state_dir``."""
        port, controller_port = free_ports(2)
        return cls(port, controller_port, state_dir, dict(env or {}))

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers string for clients."""
        return f"127.0.0.1:{self.port}"

    def _state_file(self, name: str) -> Path:
        if self.state_dir is None:
            msg = "this broker's state dir is the script's default; give state_dir to read its files"
            raise ValueError(msg)
        return self.state_dir / name

    @property
    def log_file(self) -> Path:
        """The broker's log file."""
        return self._state_file("broker.log")

    def kind(self) -> str:
        """Which broker the script started: ``apache`` or ``tansu``."""
        kind_file = self._state_file("broker.kind")
        return kind_file.read_text().strip() if kind_file.exists() else "unknown"

    def pid(self) -> int | None:
        """The broker's process id, while the script has one on record."""
        try:
            return int(self._state_file("broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def script_env(self) -> dict[str, str]:
        """The environment ``scripts/kafka`` runs with for this broker."""
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            # The readiness probe needs confluent_kafka, which this interpreter has.
            "PYTHON": os.environ.get("PYTHON", sys.executable),
        }
        if self.controller_port is not None:
            env["KAFKA_CONTROLLER_PORT"] = str(self.controller_port)
        if self.state_dir is not None:
            env["KAFKA_STATE_DIR"] = str(self.state_dir)
        return {**env, **self.env}

    def run(self, command: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/kafka <command>`` for this broker and return the finished process."""
        return subprocess.run(  # noqa: S603 - our own script
            [str(KAFKA_SCRIPT), command],
            cwd=REPO,
            env=self.script_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(self, command: str, out: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start ``scripts/kafka <command>`` in its own session, output to ``out``, without waiting.

        Its own session: a Ctrl-C meant for the caller cannot kill ``up``
        halfway and orphan the broker it is starting.
        """
        return subprocess.Popen(  # noqa: S603 - our own script
            [str(KAFKA_SCRIPT), command],
            cwd=REPO,
            env=self.script_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _checked(self, command: str) -> subprocess.CompletedProcess[str]:
        result = self.run(command)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            msg = f"scripts/kafka {command} failed with exit code {result.returncode}:\n{output}"
            raise BrokerError(msg)
        log.info("%s", output)
        return result

    def up(self) -> subprocess.CompletedProcess[str]:
        """Start the broker (or confirm it runs) and wait until it answers; raises BrokerError on failure."""
        return self._checked("up")

    def down(self) -> subprocess.CompletedProcess[str]:
        """Stop the broker; a no-op when it is not running. Raises BrokerError on failure."""
        return self._checked("down")

    def status(self) -> int:
        """Exit code of ``scripts/kafka status``: 0 running, 3 stopped."""
        return self.run("status", timeout=60.0).returncode

    def __enter__(self: B) -> B:
        try:
            self.up()
        except BaseException:
            # Failed or interrupted mid-start: the broker may already run in its own session.
            self.down()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()
