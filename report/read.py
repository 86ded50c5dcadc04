"""Reading one output topic to the end it had when the report started, `read_committed`.

Bounded, so a report always ends: each partition is read up to the offset a
`read_committed` consumer is told is its end at the start (the last stable
offset, so a transaction still open does not hold the report up), and records
written after that are left for the next report.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from operators.runtime.logs import kv
from operators.runtime.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0
"""Seconds between progress lines while a topic is read."""

STALL_SECONDS = 60.0
"""How long no partition may move before the report gives up on a topic."""

METADATA_TIMEOUT = 15.0


class ReadError(RuntimeError):
    """A topic cannot be read; the message names the setting to look at."""


@dataclass(frozen=True)
class Raw:
    """One record as the report needs it."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]


@dataclass
class TopicRead:
    """What was read from one topic: per partition the offsets ``[low, end)``, and how many records."""

    topic: str
    setting: str
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    records: int = 0


ClientHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None


def _headers(headers: ClientHeaders) -> dict[str, bytes | None]:
    """Headers as a dict of bytes; a repeated name keeps its last value."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return {name: value.encode() if isinstance(value, str) else value for name, value in items}


class TopicReader:
    """Iterate over `topic`'s committed records up to its end at the start; `read` then holds what was read."""

    def __init__(self, settings: Settings, topic: str, setting: str) -> None:
        """Read `topic`, named by the variable `setting` in messages, with the dataflow's client settings."""
        self.settings = settings
        self.read = TopicRead(topic, setting)

    def __iter__(self) -> Iterator[Raw]:
        """The records in offset order within each partition; partitions are read together, interleaved."""
        consumer = Consumer(
            {
                **self.settings.kafka_config(),
                # Offsets are never committed; the id only satisfies the client.
                "group.id": f"loginflow-report-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        try:
            yield from self._read(consumer)
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> list[int]:
        topic, setting = self.read.topic, self.read.setting
        try:
            meta = consumer.list_topics(topic=topic, timeout=METADATA_TIMEOUT).topics.get(topic)
        except KafkaException as exc:
            msg = f"KAFKA_BROKERS: no answer from {self.settings.brokers} within {METADATA_TIMEOUT:g}s ({exc})"
            raise ReadError(msg) from exc
        if meta is None or meta.error is not None:
            reason = meta.error.str() if meta is not None and meta.error is not None else "no metadata"
            msg = f"{setting}: cannot read topic {topic!r} on {self.settings.brokers}: {reason}"
            raise ReadError(msg)
        return sorted(meta.partitions)

    def _read(self, consumer: Consumer) -> Iterator[Raw]:
        topic = self.read.topic
        for partition in self._partitions(consumer):
            low, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=METADATA_TIMEOUT)
            self.read.offsets[partition] = (low, end)
        pending = {p: end for p, (low, end) in self.read.offsets.items() if end > low}
        total = sum(end - low for low, end in self.read.offsets.values())
        log.info("reading %s", kv(topic=topic, partitions=len(self.read.offsets), offsets=total))
        if not pending:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        next_progress = time.monotonic() + PROGRESS_EVERY
        last_move = time.monotonic()
        while pending:
            batch = consumer.consume(num_messages=1000, timeout=0.5)
            for message in batch:
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    msg = f"{self.read.setting}: reading {topic!r} failed: {error.str()}"
                    raise ReadError(msg)
                where, offset = message.partition(), message.offset()
                if error is not None or where is None or offset is None:
                    continue
                if where not in pending or offset >= pending[where]:
                    continue  # beyond the end the report started with
                self.read.records += 1
                yield Raw(where, message.key(), message.value(), _headers(message.headers()))
            # position() also steps over transaction markers, which never arrive as messages.
            positions = consumer.position([TopicPartition(topic, p) for p in pending])
            done = [tp.partition for tp in positions if tp.offset >= pending[tp.partition]]
            now = time.monotonic()
            if batch or done:
                last_move = now
            for finished in done:
                del pending[finished]
            if pending and now - last_move > STALL_SECONDS:
                stuck = {tp.partition: f"{tp.offset}/{pending[tp.partition]}" for tp in positions}
                msg = f"{self.read.setting}: reading {topic!r} made no progress for {STALL_SECONDS:g}s at {stuck}"
                raise ReadError(msg)
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY
                log.info("reading %s", kv(topic=topic, records=self.read.records, partitions_left=len(pending)))
        log.info("read %s", kv(topic=topic, records=self.read.records))
