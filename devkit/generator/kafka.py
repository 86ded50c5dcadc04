"""Kafka producing and JSON Lines recording for the generator (:mod:`devkit.generator.events`).

Kept apart from the generator core so that generating stays pure and importable
without a broker or confluent_kafka.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from devkit.generator.events import (
    MAX_BAD_SIZE_LIMIT,
    GeneratedMessage,
)
from operators.runtime.settings import kafka_props_from_env

log = logging.getLogger(__name__)

T = TypeVar("T")
PROGRESS_INTERVAL = 0.25  # seconds between progress redraws
TOPIC_WAIT = 10.0  # seconds to wait for the broker's metadata (and a fresh topic) to show up


class _RepeatFilter(logging.Filter):
    """Drop a message already logged within the last ``window`` seconds.

    librdkafka repeats e.g. "Connection refused" every few milliseconds while a
    broker is down; once per window says the same.
    """

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, text = time.monotonic(), record.getMessage()
        if now - self._last.get(text, -self.window) < self.window:
            return False
        self._last[text] = now
        return True


# librdkafka's own log lines go through logging (not straight to stderr), deduplicated.
rdkafka_log = logging.getLogger(f"{__name__}.librdkafka")
rdkafka_log.addFilter(_RepeatFilter())


def _put_bytes(record: dict[str, Any], name: str, data: bytes | None) -> None:
    if data is None:
        record[name] = None
        return
    try:
        record[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        # JSON text cannot carry arbitrary bytes, and these are the interesting ones.
        record[name + "_b64"] = base64.b64encode(data).decode("ascii")


def _get_bytes(record: dict[str, Any], name: str) -> bytes | None:
    if name + "_b64" in record:
        return base64.b64decode(record[name + "_b64"])
    text = record.get(name)
    return None if text is None else text.encode("utf-8")


def to_record(message: GeneratedMessage) -> bytes:
    """Encode one message as a JSON Lines row (newline included)."""
    record: dict[str, Any] = {"partition": message.partition, "kind": message.kind}
    _put_bytes(record, "key", message.key)
    _put_bytes(record, "value", message.value)
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def from_record(line: bytes | str) -> GeneratedMessage:
    """Decode one JSON Lines row written by :func:`to_record`, byte-exact."""
    record = orjson.loads(line)
    return GeneratedMessage(record["partition"], _get_bytes(record, "key"), _get_bytes(record, "value"), record["kind"])


def write_jsonl(messages: Iterable[GeneratedMessage], path: str | Path) -> dict[str, int]:
    """Record ``messages`` to ``path``; returns the count per kind."""
    kinds: Counter[str] = Counter()
    with open(path, "wb", buffering=1 << 20) as out:
        pump(messages, file_sender(out), kinds)
    return dict(kinds)


def read_jsonl(path: str | Path) -> Iterator[GeneratedMessage]:
    """Yield the messages recorded in ``path``, skipping blank lines."""
    with open(path, "rb") as lines:
        for line in lines:
            if line.strip():
                yield from_record(line)


def file_sender(out: IO[bytes]) -> Callable[[GeneratedMessage], str]:
    """A send function for `pump` that appends each message to `out` as a JSON line."""

    def send(message: GeneratedMessage) -> str:
        out.write(to_record(message))
        return message.kind

    return send


def pump(
    items: Iterable[T],
    send: Callable[[T], str],
    kinds: Counter[str],
    *,
    rate: float = 0.0,
    duration: float | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> None:
    """Feed ``items`` to ``send`` (which returns the message kind) into ``kinds``.

    Paces to ``rate`` messages/s against an absolute schedule, stops after ``duration``
    seconds. ``kinds`` is the caller's, so counts survive a KeyboardInterrupt.
    """
    started = time.monotonic()
    deadline = started + duration if duration else float("inf")
    interval = 1.0 / rate if rate > 0 else 0.0
    next_report = started + PROGRESS_INTERVAL
    for n, item in enumerate(items):
        # Unpaced runs read the clock every 512 messages only: it is a hot loop.
        if interval or not n & 511:
            now = time.monotonic()
            if now >= deadline:
                break
            if progress is not None and now >= next_report:
                progress(n, now - started)
                next_report = now + PROGRESS_INTERVAL
            # Sleeping below a millisecond costs more than it paces.
            ahead = started + n * interval - now
            if ahead > 0.001:
                time.sleep(min(ahead, deadline - now))
                if time.monotonic() >= deadline:
                    break
        kinds[send(item)] += 1
    if progress is not None:
        progress(sum(kinds.values()), time.monotonic() - started)


class KafkaSink:
    """Produce messages to their explicit partitions and count failed deliveries."""

    def __init__(self, brokers: str, topic: str) -> None:
        from confluent_kafka import KafkaException, Producer  # noqa: PLC0415 - only the producing path needs it

        self._kafka_exception = KafkaException
        self.topic = topic
        self.partitions = 0
        self.failed = 0
        self._queued = 0
        self._producer = Producer(
            {
                **kafka_props_from_env(os.environ),
                "bootstrap.servers": brokers,
                "client.id": "loginflow-generator",
                # Per-partition order is part of the stream (lateness is decided
                # in log order); without idempotence a retry can reorder batches.
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                # Headroom above the largest random-bytes value plus key and record overhead.
                "message.max.bytes": MAX_BAD_SIZE_LIMIT + 48_576,
                "message.timeout.ms": 60_000,
                # A missing topic must be an error, not a broker-default-sized surprise.
                "allow.auto.create.topics": False,
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
                "logger": rdkafka_log,
            }
        )

    def check_topic(self, wait: float = 0.0) -> int:
        """Fetch the topic's partition count; raises RuntimeError if it is missing.

        ``wait`` gives a just-created topic that long to appear in the metadata.
        """
        deadline = time.monotonic() + wait
        while True:
            # Raises KafkaException when no broker answers within the timeout.
            meta = self._producer.list_topics(self.topic, timeout=TOPIC_WAIT).topics.get(self.topic)
            if meta is not None and meta.error is None and meta.partitions:
                self.partitions = len(meta.partitions)
                return self.partitions
            # A topic created a moment ago may not be in every broker's metadata yet.
            if time.monotonic() >= deadline:
                msg = f"topic {self.topic!r} not found ({meta.error if meta else 'no metadata'}); try --create-topic"
                raise RuntimeError(msg)
            time.sleep(0.5)

    def __call__(self, message: GeneratedMessage) -> str:
        """Queue one message; returns its kind."""
        if not 0 <= message.partition < self.partitions:
            msg = f"partition {message.partition} does not exist in {self.topic!r} ({self.partitions} partitions)"
            raise RuntimeError(msg)
        while True:
            try:
                self._producer.produce(self.topic, message.value, message.key, partition=message.partition)
                break
            except BufferError:
                # Local queue full: serve delivery reports until librdkafka frees room.
                self._producer.poll(0.05)
            except self._kafka_exception as exc:
                # Rejected up front (e.g. too large): a failed delivery, not a crash.
                self._on_delivery(exc.args[0], None)
                break
        self._queued += 1
        if not self._queued & 1023:
            self._producer.poll(0)
        return message.kind

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if self.failed <= 5:
                partition = msg.partition() if msg is not None else None
                log.error("delivery_failed topic=%s partition=%s error=%s", self.topic, partition, err)

    def close(self, timeout: float = 90.0) -> int:
        """Flush; returns the number of messages that failed or never got delivered."""
        undelivered = self._producer.flush(timeout)
        if undelivered:
            log.error("flush_timeout topic=%s undelivered=%d", self.topic, undelivered)
        return self.failed + undelivered


def create_topic(brokers: str, topic: str, partitions: int, replication_factor: int = 1) -> bool:
    """Create ``topic`` unless it exists; returns whether it was created."""
    from confluent_kafka import KafkaError, KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: PLC0415

    # KAFKA_PROP_* (TLS, SASL) as for the dataflow, so both reach a secured cluster.
    conf: dict[str, Any] = {**kafka_props_from_env(os.environ), "bootstrap.servers": brokers, "logger": rdkafka_log}
    admin = AdminClient(conf)
    new = NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)
    future = admin.create_topics([new], request_timeout=TOPIC_WAIT)[topic]
    try:
        future.result(timeout=TOPIC_WAIT * 2)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        log.info("topic_exists topic=%s", topic)
        return False
    log.info("topic_created topic=%s partitions=%d replication_factor=%d", topic, partitions, replication_factor)
    return True
