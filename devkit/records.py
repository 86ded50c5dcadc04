"""Topics and records on a real broker: create and delete topics, produce, read whole topics back.

What tests and the benchmark use to set up a run and to read what it wrote,
always polling against a deadline instead of sleeping. Nothing here is timed
by the benchmark.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from devkit.broker import wait_until

log = logging.getLogger(__name__)

Headers = Mapping[str, bytes | None] | Sequence[tuple[str, bytes | None]]
OutMessage = tuple[int, bytes | None, bytes | None] | tuple[int, bytes | None, bytes | None, Headers]
"""``(partition, key, value)`` or ``(partition, key, value, headers)``."""

ClientHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
"""Headers as confluent_kafka accepts and returns them."""

READ_COMMITTED = {"isolation.level": "read_committed"}
READ_UNCOMMITTED = {"isolation.level": "read_uncommitted"}


class Record(NamedTuple):
    """One consumed record."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]
    # Milliseconds since the epoch, and whether the broker set it on append (LogAppendTime).
    timestamp_ms: int
    log_append_time: bool


def _admin(brokers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": brokers})


def _topic_ready(admin: AdminClient, topic: str, partitions: int) -> bool:
    meta = admin.list_topics(topic=topic, timeout=5.0).topics.get(topic)
    if meta is None or meta.error is not None or len(meta.partitions) != partitions:
        return False
    return all(p.error is None and p.leader >= 0 for p in meta.partitions.values())


def create_topics(
    brokers: str, topics: Mapping[str, int], config: Mapping[str, str] | None = None, timeout: float = 30.0
) -> None:
    """Create ``topics`` (name -> partitions) and wait until every partition of each has a leader."""
    admin = _admin(brokers)
    requests = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
        for name, partitions in topics.items()
    ]
    for future in admin.create_topics(requests, operation_timeout=timeout).values():
        future.result(timeout=timeout)
    wait_until(
        lambda: all(_topic_ready(admin, name, partitions) for name, partitions in topics.items()),
        timeout=timeout,
        interval=0.1,
        message=f"not every partition of {dict(topics)} (topic: partitions) has a leader after {timeout}s",
        retry_on=(KafkaException,),
    )


def create_topic(
    brokers: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    name: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Create a topic (uuid-named unless ``name`` is given) and wait until every partition has a leader."""
    topic = name or f"t-{uuid.uuid4().hex}"
    create_topics(brokers, {topic: partitions}, config, timeout)
    return topic


def delete_topics(brokers: str, topics: Iterable[str], timeout: float = 15.0) -> None:
    """Delete topics, logging instead of raising on failure (cleanup is best effort)."""
    names = list(topics)
    if not names:
        return
    admin = _admin(brokers)
    try:
        futures = admin.delete_topics(names, operation_timeout=timeout)
    except KafkaException as exc:
        log.warning("could not delete topics %s: %s", names, exc)
        return
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any failure here must not fail the caller
            log.warning("could not delete topic %s: %s", name, exc)


def list_topics(brokers: str, timeout: float = 30.0) -> list[str]:
    """Every topic name on the broker."""
    return sorted(_admin(brokers).list_topics(timeout=timeout).topics)


def headers_dict(headers: Headers | ClientHeaders | None) -> dict[str, bytes | None]:
    """Normalise record headers to a dict (a repeated header name keeps its last value)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return {name: value.encode() if isinstance(value, str) else value for name, value in items}


def _offset(value: int | None) -> int:
    if value is None:
        msg = "message without partition or offset"
        raise ValueError(msg)
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


def reader(
    brokers: str, topic: str, config: Mapping[str, object] | None = None, timeout: float = 30.0
) -> tuple[Consumer, list[int]]:
    """A consumer assigned to every partition of ``topic`` from its beginning, and those partition ids.

    It commits nothing; ``config`` adds client settings such as an isolation level.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            # Offsets are never committed; the id only satisfies the client.
            "group.id": f"devkit-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **(config or {}),
        }
    )
    try:
        partitions = wait_until(
            lambda: sorted(consumer.list_topics(topic=topic, timeout=5.0).topics[topic].partitions),
            timeout=timeout,
            message=f"no metadata for topic {topic}",
            retry_on=(KafkaException, KeyError),
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    except BaseException:
        consumer.close()
        raise
    return consumer, partitions


def to_record(msg: Message) -> Record:
    """The consumed message as a :class:`Record`; raises KafkaException for an error message."""
    error = msg.error()
    if error is not None:
        raise KafkaException(error)
    kind, stamp = msg.timestamp()
    return Record(
        _offset(msg.partition()),
        _offset(msg.offset()),
        msg.key(),
        msg.value(),
        headers_dict(msg.headers()),
        stamp,
        kind == TIMESTAMP_LOG_APPEND_TIME,
    )


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

    consumer, partitions = reader(brokers, topic, config, timeout=remaining())
    try:

        def watermark(partition: int) -> tuple[int, int]:
            # Right after a broker restart, leaders may not answer offset requests yet.
            return wait_until(
                lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5.0),
                timeout=remaining(),
                message=f"no watermarks for {topic}[{partition}]",
                retry_on=(KafkaException,),
            )

        watermarks = {p: watermark(p) for p in partitions}
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
                msg = (
                    f"consumed {len(records)} record(s) from {topic} in {timeout}s without reaching {goal}"
                    f" (watermarks {watermarks}, pending partitions {pending})"
                )
                raise TimeoutError(msg)
            records.extend(to_record(m) for m in consumer.consume(num_messages=1000, timeout=min(0.5, remaining())))
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def values_by_partition(records: Iterable[Record]) -> dict[int, list[bytes | None]]:
    """Values per partition from records in (partition, offset) order, checking that offsets are dense.

    Dense: from 0 with no gap, as a topic never written with transactions is.
    """
    result: dict[int, list[bytes | None]] = {}
    for record in records:
        values = result.setdefault(record.partition, [])
        if record.offset != len(values):
            msg = f"partition {record.partition}: offset {record.offset} after {len(values)} records"
            raise ValueError(msg)
        values.append(record.value)
    return result
