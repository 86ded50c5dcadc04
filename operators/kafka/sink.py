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
topic may allow more, up to what its producer and the broker accepted) would
be refused on every resume. Such a record is cut, key and value, to fit both
the topic and the producer's own limit, with headers saying what was cut
(`operators.pure.sizes.truncated`), decided before producing, so a replay
writes the same bytes. Every producer batches no more than its topic takes.
The metrics topic gets no cut record: the start stops instead when
MAX_FIELD_BYTES lets a record grow past what the topic takes.
"""

import logging
import threading
from collections.abc import Mapping
from typing import Any
from zlib import adler32

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from operators.kafka.client import producer_config
from operators.kafka.topics import (
    KafkaSetupError,
    TopicError,
    ensure_topic,
    topic_max_message_bytes,
    topic_partition_count,
)
from operators.kafka.transactional_writer import (
    AT_LEAST_ONCE,
    EXACTLY_ONCE,
    GuaranteeChangedError,
    LegacyWriterState,
    OutputPartitionsChanged,
    TransactionalWriter,
    WriterState,
    check_output_partitions,
)
from operators.pure.encoding import KafkaRecord, RecordChunk
from operators.pure.murmur2 import partition_for
from operators.pure.sizes import (
    DEFAULT_TOPIC_MAX_MESSAGE_BYTES,
    PRODUCER_MAX_MESSAGE_BYTES,
    oversized_metric,
    record_budget,
    record_size,
    truncated,
)
from operators.runtime.logs import kv
from operators.runtime.settings import Settings
from operators.runtime.shutdown import stop_on

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0

Routed = tuple[str, list[KafkaRecord]]
AtLeastOnceState = tuple[str, int]
"""("at-least-once", the topic's partition count); None in versions before it was kept."""
SinkState = WriterState | LegacyWriterState | AtLeastOnceState | None
"""A transactional writer's state, or an at-least-once partition's."""


class DeliveryError(RuntimeError):
    """The broker did not accept a record."""


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
        writes_metrics: bool = False,
    ) -> None:
        """Produce to `topic`, creating it with `topic_config` if it is missing.

        A sink that `forwards_input` (DLQ, late) creates its topic to take the
        input topic's largest message, and cuts a record that would not fit.
        A sink that `writes_metrics` stops the start if MAX_FIELD_BYTES lets a
        login-metrics record grow past what its topic takes.
        """
        self.settings = settings
        self.topic = topic
        self.setting_name = setting_name
        self.topic_config = dict(topic_config or {})
        self.forwards_input = forwards_input
        self.writes_metrics = writes_metrics
        self._partitions: int | None = None
        self._fit = DEFAULT_TOPIC_MAX_MESSAGE_BYTES
        self._lock = threading.Lock()

    def _discover(self) -> int:
        with self._lock:
            if self._partitions is None:
                with stop_on(KafkaSetupError):
                    ensure_topic(self.settings, self.topic, self.topic_config, self.setting_name, self.forwards_input)
                    limit = topic_max_message_bytes(self.settings, self.topic)
                    self._fit = min(PRODUCER_MAX_MESSAGE_BYTES, limit or DEFAULT_TOPIC_MAX_MESSAGE_BYTES)
                    if self.writes_metrics:
                        self._check_metric_size(limit)
                    self._partitions = topic_partition_count(self.settings, self.topic, self.setting_name)
            return self._partitions

    def _check_metric_size(self, limit: int | None) -> None:
        settings = self.settings
        oversized = oversized_metric(
            settings.slices, settings.max_field_bytes, record_budget(self._fit), settings.pseudonymizer()
        )
        if oversized is not None:
            largest, bound = oversized
            shown = "unknown, taken as the broker default" if limit is None else str(limit)
            msg = (
                f"MAX_FIELD_BYTES={settings.max_field_bytes} lets a record reach {largest} bytes, more than "
                f"{self.setting_name}={self.topic!r} takes (max.message.bytes={shown}); "
                f"set MAX_FIELD_BYTES to at most {bound}, or raise the topic's max.message.bytes"
            )
            raise TopicError(msg)

    @property
    def batch_bytes(self) -> int:
        """The largest batch a producer may send to this topic (after `list_parts`)."""
        return record_budget(self._fit)

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
        if self.forwards_input:
            budget = record_budget(self._fit)
            records = [record if record_size(record) <= budget else self._cut(record) for record in records]
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

    def wake_all(self, _started: None) -> list[Routed]:
        """An empty write for every partition, so each has a snapshot before its first commit."""
        return [(str(partition), []) for partition in range(self._discover())]

    def _cut(self, record: KafkaRecord) -> KafkaRecord:
        cut = truncated(record, self._fit)
        logger.warning(
            "record too large for its topic, written truncated %s",
            kv(
                topic=self.topic,
                limit=self._fit,
                key_bytes=len(record.key or b""),
                value_bytes=len(record.value or b""),
                written_bytes=record_size(cut),
            ),
        )
        return cut

    def build_part(
        self, step_id: str, for_part: str, resume_state: SinkState
    ) -> StatefulSinkPartition[list[KafkaRecord], Any]:
        """A transactional writer of one Kafka partition, or this process's shared producer."""
        partitions = self._discover()
        with stop_on(OutputPartitionsChanged, GuaranteeChangedError):
            if self.settings.exactly_once:
                return TransactionalWriter(
                    self.settings,
                    self.topic,
                    self.setting_name,
                    int(for_part),
                    partitions,
                    resume_state,  # type: ignore[arg-type]  # the guarantee is fixed across resumes
                    self.batch_bytes,
                )
            check_output_partitions(self.setting_name, self.topic, _at_least_once_partitions(resume_state), partitions)
            return _FlushAtSnapshot(_shared_producer(self.settings, self.topic, self.batch_bytes), partitions)


def _at_least_once_partitions(state: SinkState) -> int | None:
    """The partition count an at-least-once state holds; None from versions that kept no state."""
    if state is None:
        return None
    if isinstance(state, tuple) and state[0] == AT_LEAST_ONCE and isinstance(state[1], int):
        return state[1]
    raise GuaranteeChangedError(EXACTLY_ONCE, AT_LEAST_ONCE)


_PRODUCERS: dict[str, "TopicProducer"] = {}
_PRODUCERS_LOCK = threading.Lock()


def _shared_producer(settings: Settings, topic: str, batch_bytes: int) -> "TopicProducer":
    with _PRODUCERS_LOCK:
        producer = _PRODUCERS.get(topic)
        if producer is None:
            producer = _PRODUCERS[topic] = TopicProducer(settings, topic, batch_bytes)
        return producer


class TopicProducer:
    """One idempotent producer for a topic, shared by this process's sink partitions."""

    def __init__(self, settings: Settings, topic: str, batch_bytes: int) -> None:
        """Configure for bursts: a deep local queue, and reports of failures only."""
        self.topic = topic
        self.failures: list[str] = []
        config: dict[str, Any] = {
            **producer_config(settings, batch_bytes),
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
