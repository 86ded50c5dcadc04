"""Helpers for tests that talk to a real Kafka broker.

The broker itself comes from ``scripts/kafka`` (see :class:`LocalBroker`); the
functions here create topics, produce with checked deliveries and read topics
back completely, always polling against a deadline instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO_ROOT / "scripts" / "kafka"

T = TypeVar("T")

Headers = Mapping[str, bytes | None] | Sequence[tuple[str, bytes | None]]
OutMessage = tuple[int, bytes | None, bytes | None] | tuple[int, bytes | None, bytes | None, Headers]
"""``(partition, key, value)`` or ``(partition, key, value, headers)``."""

ClientHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
"""Headers as confluent_kafka accepts and returns them."""

TopicFactory = Callable[..., str]
"""Type of the ``topic_factory`` fixture: ``make_topic(partitions=1, config=None) -> name``."""


class Record(NamedTuple):
    """One consumed record; compares equal to a plain 5-tuple."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]


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


def broker_reachable(brokers: str, timeout: float = 5.0) -> bool:
    """Tell whether ``brokers`` answers a metadata request within ``timeout`` seconds."""
    admin = AdminClient({"bootstrap.servers": brokers, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        # Holding every socket open until all are bound keeps the ports distinct.
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class LocalBroker:
    """A broker managed through ``scripts/kafka`` on its own ports and state dir."""

    port: int
    controller_port: int
    state_dir: Path
    # Extra scripts/kafka settings, e.g. KAFKA_SASL_PORT.
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def on_free_ports(cls, state_dir: Path) -> LocalBroker:
        """Describe a broker on two currently free ports, keeping its files in ``state_dir``."""
        port, controller_port = free_ports(2)
        return cls(port=port, controller_port=controller_port, state_dir=state_dir)

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers string for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """The broker's log file."""
        return self.state_dir / "broker.log"

    def kind(self) -> str:
        """Which broker the script started: ``apache`` or ``tansu``."""
        kind_file = self.state_dir / "broker.kind"
        return kind_file.read_text().strip() if kind_file.exists() else "unknown"

    def run(self, command: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/kafka <command>`` for this broker and return the finished process."""
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_STATE_DIR": str(self.state_dir),
            # The readiness probe needs confluent_kafka, which this interpreter has.
            "PYTHON": os.environ.get("PYTHON", sys.executable),
            **self.env,
        }
        return subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _checked(self, command: str) -> None:
        result = self.run(command)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise RuntimeError(f"scripts/kafka {command} failed with exit code {result.returncode}:\n{output}")
        log.info("%s", output)

    def up(self) -> None:
        """Start the broker (or confirm it runs) and wait until it answers."""
        self._checked("up")

    def down(self) -> None:
        """Stop the broker; a no-op when it is not running."""
        self._checked("down")

    def status(self) -> int:
        """Exit code of ``scripts/kafka status``: 0 running, 3 stopped."""
        return self.run("status", timeout=60.0).returncode


def _topic_ready(admin: AdminClient, topic: str, partitions: int) -> bool:
    meta = admin.list_topics(topic=topic, timeout=5.0).topics.get(topic)
    if meta is None or meta.error is not None or len(meta.partitions) != partitions:
        return False
    return all(p.error is None and p.leader >= 0 for p in meta.partitions.values())


def create_topic(
    brokers: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    name: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Create a topic (uuid-named unless ``name`` is given) and wait until every partition has a leader."""
    topic = name or f"t-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": brokers})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    admin.create_topics([new], operation_timeout=timeout)[topic].result(timeout=timeout)
    wait_until(
        lambda: _topic_ready(admin, topic, partitions),
        timeout=timeout,
        interval=0.1,
        message=f"topic {topic} has no leader for all {partitions} partition(s) after {timeout}s",
        retry_on=(KafkaException,),
    )
    return topic


def delete_topics(brokers: str, topics: Iterable[str], timeout: float = 15.0) -> None:
    """Delete topics, logging instead of raising on failure (cleanup is best effort)."""
    names = list(topics)
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": brokers})
    try:
        futures = admin.delete_topics(names, operation_timeout=timeout)
    except KafkaException as exc:
        log.warning("could not delete topics %s: %s", names, exc)
        return
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any failure here must not fail the test
            log.warning("could not delete topic %s: %s", name, exc)


def headers_dict(headers: Headers | ClientHeaders | None) -> dict[str, bytes | None]:
    """Normalise record headers to a dict (a repeated header name keeps its last value)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return {name: value.encode() if isinstance(value, str) else value for name, value in items}


def _offset(value: int | None) -> int:
    if value is None:
        raise ValueError("message without partition or offset")
    return value


def produce(
    brokers: str,
    topic: str,
    messages: Iterable[OutMessage],
    timeout: float = 30.0,
    config: Mapping[str, object] | None = None,
) -> list[tuple[int, int]]:
    """Produce messages to explicit partitions and assert that every delivery succeeded.

    Returns the ``(partition, offset)`` of each delivery, in delivery order.
    """
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": int(timeout * 1000),
            **(config or {}),
        }
    )
    delivered: list[tuple[int, int]] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: Message) -> None:
        if err is not None:
            errors.append(f"partition {msg.partition()}: {err}")
        else:
            delivered.append((_offset(msg.partition()), _offset(msg.offset())))

    sent = 0
    for item in messages:
        partition, key, value = item[0], item[1], item[2]
        headers: ClientHeaders | None = list(headers_dict(item[3]).items()) if len(item) > 3 else None
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, partition=partition, headers=headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                # Local queue full: serve delivery reports to make room, then retry.
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    undelivered = producer.flush(timeout)
    assert undelivered == 0, f"{undelivered} of {sent} message(s) still undelivered to {topic} after {timeout}s"
    assert not errors, f"{len(errors)} of {sent} deliveries to {topic} failed: {errors[:5]}"
    assert len(delivered) == sent, f"{len(delivered)} delivery reports for {sent} messages to {topic}"
    return delivered


def _to_record(msg: Message) -> Record:
    error = msg.error()
    if error is not None:
        raise KafkaException(error)
    return Record(_offset(msg.partition()), _offset(msg.offset()), msg.key(), msg.value(), headers_dict(msg.headers()))


def consume_all(
    brokers: str,
    topic: str,
    expected_count: int | None = None,
    timeout: float = 60.0,
    config: Mapping[str, object] | None = None,
) -> list[Record]:
    """Read a topic from the beginning of every partition, sorted by (partition, offset).

    Without ``expected_count`` it stops once every partition's position reaches
    the high watermark it had when the call started; with it, once that many
    records arrived (later writes included). Raises ``TimeoutError`` at the deadline.
    """
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        return max(deadline - time.monotonic(), 0.0)

    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            # Offsets are never committed; the id only satisfies the client.
            "group.id": f"harness-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **(config or {}),
        }
    )
    try:
        partitions = wait_until(
            lambda: sorted(consumer.list_topics(topic=topic, timeout=5.0).topics[topic].partitions),
            timeout=remaining(),
            message=f"no metadata for topic {topic}",
            retry_on=(KafkaException, KeyError),
        )

        def watermark(partition: int) -> tuple[int, int]:
            # Right after a broker restart, leaders may not answer offset requests yet.
            return wait_until(
                lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5.0),
                timeout=remaining(),
                message=f"no watermarks for {topic}[{partition}]",
                retry_on=(KafkaException,),
            )

        watermarks = {p: watermark(p) for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = [p for p, (low, high) in watermarks.items() if high > low]
        records: list[Record] = []

        def done() -> bool:
            nonlocal pending
            if expected_count is not None:
                return len(records) >= expected_count
            if pending:
                # position() also steps over transaction markers, which never arrive as messages.
                positions = consumer.position([TopicPartition(topic, p) for p in pending])
                pending = [tp.partition for tp in positions if tp.offset < watermarks[tp.partition][1]]
            return not pending

        while not done():
            if remaining() <= 0:
                goal = f"{expected_count} records" if expected_count is not None else "the high watermarks"
                raise TimeoutError(
                    f"consumed {len(records)} record(s) from {topic} in {timeout}s without reaching {goal}"
                    f" (watermarks {watermarks}, pending partitions {pending})"
                )
            records.extend(_to_record(m) for m in consumer.consume(num_messages=1000, timeout=min(0.5, remaining())))
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()
