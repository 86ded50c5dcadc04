"""Topic administration and whole-topic reads for the harness (not timed)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import NamedTuple, cast

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.kafka_harness import delete_topics as harness_delete_topics

ADMIN_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 300.0

# The broker stamps every output record when it appends it, so "last output
# flushed" is read from one clock for every contender, whatever its producer does.
OUTPUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


class Record(NamedTuple):
    """One consumed record."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]
    # Milliseconds since the epoch, and whether the broker set it.
    timestamp_ms: int
    log_append_time: bool


def _admin(brokers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": brokers, "log_level": 0})


def create_topics(brokers: str, topics: Mapping[str, int], config: Mapping[str, str] | None = None) -> None:
    """Create `topics` (name -> partitions) and wait until every partition has a leader."""
    admin = _admin(brokers)
    requests = [NewTopic(name, num_partitions=n, replication_factor=1, config=dict(config or {}))
                for name, n in topics.items()]  # fmt: skip
    for future in admin.create_topics(requests, operation_timeout=ADMIN_TIMEOUT_S).values():
        future.result(timeout=ADMIN_TIMEOUT_S)
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    for name, partitions in topics.items():
        while True:
            meta = admin.list_topics(topic=name, timeout=5.0).topics.get(name)
            if (meta is not None and meta.error is None and len(meta.partitions) == partitions
                    and all(p.leader >= 0 for p in meta.partitions.values())):  # fmt: skip
                break
            if time.monotonic() > deadline:
                msg = f"topic {name} has no leader after {ADMIN_TIMEOUT_S}s"
                raise TimeoutError(msg)
            time.sleep(0.1)


def delete_topics(brokers: str, names: Iterable[str]) -> None:
    """Delete topics, best effort: a leftover topic only costs broker disk."""
    harness_delete_topics(brokers, names, timeout=ADMIN_TIMEOUT_S)


def list_topics(brokers: str) -> list[str]:
    """Every topic name on the broker."""
    return sorted(_admin(brokers).list_topics(timeout=ADMIN_TIMEOUT_S).topics)


def committed_reader(brokers: str, topic: str, partitions: int = 3) -> Consumer:
    """A `read_committed` consumer of `topic` from its beginning (the topic has `partitions` partitions)."""
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"bench-committed-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    })  # fmt: skip
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    return consumer


def _consumer(brokers: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": brokers,
        # Assignment only; nothing is committed.
        "group.id": f"bench-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "log_level": 0,
    })  # fmt: skip


def read_topic(brokers: str, topic: str, timeout: float = READ_TIMEOUT_S) -> list[Record]:
    """Every record of `topic` up to the high watermarks it had on entry, by (partition, offset)."""
    consumer = _consumer(brokers)
    try:
        meta = consumer.list_topics(topic=topic, timeout=ADMIN_TIMEOUT_S).topics[topic]
        partitions = sorted(meta.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=ADMIN_TIMEOUT_S)[1]
                for p in partitions}  # fmt: skip
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                msg = f"reading {topic}: partitions {sorted(pending)} not at their end after {timeout}s"
                raise TimeoutError(msg)
            for message in consumer.consume(10_000, 0.5):
                error = message.error()
                if error is not None:
                    raise KafkaException(error)
                kind, stamp = message.timestamp()
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                headers: dict[str, bytes | None] = dict(cast(list[tuple[str, bytes | None]], message.headers() or []))
                records.append(Record(partition, offset, message.key(), message.value(), headers, stamp,
                                      kind == TIMESTAMP_LOG_APPEND_TIME))  # fmt: skip
            if pending:
                # position() also steps over transaction markers, which never arrive as messages.
                positions = consumer.position([TopicPartition(topic, p) for p in pending])
                pending = {tp.partition for tp in positions if tp.offset < ends[tp.partition]}
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        consumer.close()


def values_by_partition(records: Iterable[Record]) -> dict[int, list[bytes | None]]:
    """Values per partition in offset order, checking that offsets are dense."""
    result: dict[int, list[bytes | None]] = {}
    for record in records:
        values = result.setdefault(record.partition, [])
        if record.offset != len(values):
            msg = f"partition {record.partition}: offset {record.offset} after {len(values)} records"
            raise ValueError(msg)
        values.append(record.value)
    return result
