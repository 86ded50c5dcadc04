"""Kafka output: every record confirmed at the epoch boundary, never lost silently.

Each output topic is a Bytewax `FixedPartitionedSink`, so each of its
partitions has a `snapshot()` that Bytewax calls at the end of every epoch in
which it wrote, before that epoch's recovery snapshot can become durable.
That is where delivery is made sure of: records are produced as they come,
without waiting, and `snapshot()` waits for them and fails on any refusal.
Reading never stops for acknowledgements, and a crash loses nothing that the
recovery snapshot claims was written.

With PROCESSING_GUARANTEE=exactly-once the Bytewax partitions are the Kafka
partitions, each written in transactions committed by `snapshot()`
(`operators.kafka.transactional_writer`). With at-least-once, records keep their
origin's path (a shard, an input partition) to one producer per process, and
librdkafka places them with Java's murmur2 partitioner.

A forwarded input message larger than the DLQ or late topic takes (the input
topic may allow more) would be refused on every resume. Such a record is
written with its value cut and a `truncated` header giving the original
length, decided before producing, so a replay writes the same bytes.
"""

import logging
import threading
from collections.abc import Mapping
from typing import Any
from zlib import adler32

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from operators.kafka.client import producer_config
from operators.kafka.topics import KafkaSetupError, ensure_topic, topic_max_message_bytes, topic_partition_count
from operators.kafka.transactional_writer import (
    LegacyWriterState,
    OutputPartitionsChanged,
    TransactionalWriter,
    WriterState,
    check_output_partitions,
)
from operators.pure.encoding import KafkaRecord, RecordChunk
from operators.pure.murmur2 import partition_for
from operators.runtime.logs import kv
from operators.runtime.settings import Settings
from operators.runtime.shutdown import stop_on

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0
TRUNCATED_VALUE_BYTES = 64 * 1024
# The broker's own default, for a topic whose limit cannot be read.
DEFAULT_TOPIC_MAX_MESSAGE_BYTES = 1_048_588
# Room left in a record for its key, headers and the batch framing.
RECORD_OVERHEAD_BYTES = 4096

Routed = tuple[str, list[KafkaRecord]]
AtLeastOnceState = tuple[str, int]
"""("at-least-once", the topic's partition count); None in versions before it was kept."""
SinkState = WriterState | LegacyWriterState | AtLeastOnceState | None
"""A transactional writer's state, or an at-least-once partition's."""

AT_LEAST_ONCE = "at-least-once"


class DeliveryError(RuntimeError):
    """The broker did not accept a record."""


def record_size(record: KafkaRecord) -> int:
    """Uncompressed bytes of a record's key, value and headers."""
    key, value, headers = record
    header_bytes = sum(len(name) + len(data or b"") for name, data in headers)
    return len(key or b"") + len(value or b"") + header_bytes


def truncated(record: KafkaRecord, max_message_bytes: int) -> KafkaRecord:
    """`record` with its value cut to fit the topic, and a `truncated` header with the original length."""
    key, value, headers = record
    room = max_message_bytes - len(key or b"") - RECORD_OVERHEAD_BYTES
    keep = max(0, min(TRUNCATED_VALUE_BYTES, room))
    original = len(value or b"")
    return KafkaRecord(key, (value or b"")[:keep], [*headers, ("truncated", str(original).encode())])


def part_name(partition: int) -> str:
    """A Bytewax partition key that sorts like the Kafka partition number."""
    return f"{partition:05d}"


class KafkaTopicSink(FixedPartitionedSink[list[KafkaRecord], SinkState]):
    """Writes `RecordChunk`s to one topic; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        setting_name: str,
        topic_config: Mapping[str, str] | None = None,
        *,
        forwards_input: bool = False,
    ) -> None:
        """Produce to `topic`, creating it with `topic_config` if it is missing.

        A sink that `forwards_input` (DLQ, late) creates its topic to take the
        input topic's largest message, and truncates a record that would not fit.
        """
        self.settings = settings
        self.topic = topic
        self.setting_name = setting_name
        self.topic_config = dict(topic_config or {})
        self.forwards_input = forwards_input
        self._partitions: int | None = None
        self._fit: int | None = None
        self._lock = threading.Lock()

    def _discover(self) -> int:
        with self._lock:
            if self._partitions is None:
                with stop_on(KafkaSetupError):
                    ensure_topic(self.settings, self.topic, self.topic_config, self.setting_name, self.forwards_input)
                    self._partitions = topic_partition_count(self.settings, self.topic, self.setting_name)
                    if self.forwards_input:
                        limit = topic_max_message_bytes(self.settings, self.topic)
                        self._fit = limit if limit is not None else DEFAULT_TOPIC_MAX_MESSAGE_BYTES
            return self._partitions

    def list_parts(self) -> list[str]:
        """One Bytewax partition per partition of the topic (created first if missing)."""
        return [part_name(partition) for partition in range(self._discover())]

    def part_fn(self, item_key: str) -> int:
        """The Kafka partition a routed chunk names, or a stable hash of its origin."""
        if self.settings.exactly_once:
            return int(item_key)
        return adler32(item_key.encode())

    def route(self, chunk: RecordChunk) -> list[Routed]:
        """Key a chunk for `part_fn`: by Kafka partition with exactly-once, else by origin."""
        partitions = self._discover()
        records = chunk.records
        if self._fit is not None:
            records = [
                record if record_size(record) <= self._fit - RECORD_OVERHEAD_BYTES else self._cut(record)
                for record in records
            ]
        if not self.settings.exactly_once:
            return [(chunk.origin, records)]
        # A record without a key (a forwarded tombstone key) goes where its
        # origin's name would: deterministic, so a replay finds its first copy.
        fallback = partition_for(chunk.origin.encode(), partitions)
        by_partition: dict[int, list[KafkaRecord]] = {}
        for record in records:
            target = fallback if record.key is None else partition_for(record.key, partitions)
            by_partition.setdefault(target, []).append(record)
        return [(str(partition), group) for partition, group in by_partition.items()]

    def _cut(self, record: KafkaRecord) -> KafkaRecord:
        cut = truncated(record, self._fit or DEFAULT_TOPIC_MAX_MESSAGE_BYTES)
        logger.warning(
            "record too large for its topic, written truncated %s",
            kv(topic=self.topic, original_bytes=len(record.value or b""), written_bytes=len(cut.value or b"")),
        )
        return cut

    def build_part(
        self, step_id: str, for_part: str, resume_state: SinkState
    ) -> StatefulSinkPartition[list[KafkaRecord], Any]:
        """A transactional writer of one Kafka partition, or this process's shared producer."""
        partitions = self._discover()
        with stop_on(OutputPartitionsChanged):
            if self.settings.exactly_once:
                return TransactionalWriter(
                    self.settings,
                    self.topic,
                    self.setting_name,
                    int(for_part),
                    partitions,
                    resume_state,  # type: ignore[arg-type]  # the guarantee is fixed across resumes
                )
            if isinstance(resume_state, tuple) and resume_state[0] == AT_LEAST_ONCE:
                stored = resume_state[1]
                check_output_partitions(
                    self.setting_name, self.topic, stored if isinstance(stored, int) else None, partitions
                )
            return _FlushAtSnapshot(_shared_producer(self.settings, self.topic), partitions)


_PRODUCERS: dict[str, "TopicProducer"] = {}
_PRODUCERS_LOCK = threading.Lock()


def _shared_producer(settings: Settings, topic: str) -> "TopicProducer":
    with _PRODUCERS_LOCK:
        producer = _PRODUCERS.get(topic)
        if producer is None:
            producer = _PRODUCERS[topic] = TopicProducer(settings, topic)
        return producer


class TopicProducer:
    """One idempotent producer for a topic, shared by this process's sink partitions."""

    def __init__(self, settings: Settings, topic: str) -> None:
        """Configure for bursts: a deep local queue, and reports of failures only."""
        self.topic = topic
        self.failures: list[str] = []
        config: dict[str, Any] = {
            **producer_config(settings),
            # Retries must not reorder or duplicate within a run.
            "enable.idempotence": "true",
            # Java's partitioner for keyed records; keyless ones spread randomly.
            "partitioner": "murmur2_random",
            # Successes need no report: `flush` returning 0 already says every
            # record was either delivered or failed, and failures are reported.
            # This spares a Python callback per record.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
        }
        self._producer = Producer(config)

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.failures.append(error.str())

    def produce(self, records: list[KafkaRecord]) -> None:
        """Queue `records` without waiting for the broker."""
        produce, topic = self._producer.produce, self.topic
        for key, value, headers in records:
            while True:
                try:
                    if headers:
                        produce(topic, value, key, headers=headers)
                    else:
                        produce(topic, value, key)
                    break
                except BufferError:
                    # Local queue full: serve delivery reports to make room.
                    self._producer.poll(0.1)
        self._producer.poll(0)

    def confirm(self) -> None:
        """Wait until every queued record is acknowledged; raise if any was not."""
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            msg = f"{remaining} records to {self.topic!r} still undelivered after {FLUSH_TIMEOUT_S:.0f}s"
            raise DeliveryError(msg)
        if self.failures:
            msg = f"{len(self.failures)} records to {self.topic!r} were refused, first: {self.failures[0]}"
            raise DeliveryError(msg)


class _FlushAtSnapshot(StatefulSinkPartition[list[KafkaRecord], AtLeastOnceState]):
    """At-least-once: produce as chunks come, confirm at each epoch's end."""

    def __init__(self, producer: TopicProducer, partitions: int) -> None:
        self.producer = producer
        # librdkafka places keys over the count it sees; a resume must see the same.
        self.partitions = partitions

    def write_batch(self, values: list[list[KafkaRecord]]) -> None:
        for records in values:
            self.producer.produce(records)

    def snapshot(self) -> AtLeastOnceState:
        self.producer.confirm()
        return AT_LEAST_ONCE, self.partitions

    def close(self) -> None:
        self.producer.confirm()
