"""Kafka input: one Bytewax partition per Kafka partition, with event-time progress.

Each partition reads its Kafka partition by assignment (no consumer group),
parses in log order and keeps its watermark (`operators.partition`). Its
resume state is the next offset together with that watermark, snapshotted
atomically, so a resume after any downtime replays the same decisions: the
Bytewax event clock's habit of storing system time does not apply here.
"""

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from operators.events import RawMessage, new_raw_message
from operators.logs import kv
from operators.metrics import REJECTS, PartitionGauges
from operators.partition import PartitionBatch, PartitionState, PartitionTracker
from operators.settings import Settings
from operators.topics import PERMANENT_ERRORS, KafkaSetupError, fetch_metadata

logger = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 30.0
IDLE_POLL = timedelta(milliseconds=20)
# How often a caught-up partition confirms it is at the head and reports
# wall-clock progress, in seconds; and how long that check may block.
IDLE_PROGRESS_INTERVAL_S = 0.25
HEAD_CHECK_TIMEOUT_S = 1.0
LAG_CHECK_INTERVAL_S = 1.0
PREFETCH_KIB_PER_PARTITION = 16_384
FETCH_QUEUE_BACKOFF_MS = 10


def _offset_of(message: Message) -> int:
    """The offset of a readable message; only error events have none."""
    return cast(int, message.offset())


def _no_message(index: int) -> RawMessage:
    msg = f"no message {index} in an empty read"
    raise IndexError(msg)


class SourceError(KafkaSetupError):
    """The input topic cannot be read as configured."""


def _log_client_error(error: KafkaError) -> None:
    # librdkafka retries transient errors (a broker restart) by itself; these
    # callbacks only make them visible. Fatal ones surface from consume().
    logger.warning("kafka client error %s", kv(code=error.name(), reason=error.str()))


def list_partitions(settings: Settings) -> list[int]:
    """The partition ids of the input topic, failing clearly if it is missing."""
    _admin, metadata = fetch_metadata(settings, settings.input_topic, "INPUT_TOPIC")
    topic = metadata.topics.get(settings.input_topic)
    if topic is None or topic.error is not None or not topic.partitions:
        problem = topic.error if topic is not None else "not found"
        msg = f"INPUT_TOPIC={settings.input_topic!r} is not readable on {settings.brokers}: {problem}"
        raise SourceError(msg)
    return sorted(topic.partitions)


class LoginSource(FixedPartitionedSource[PartitionBatch, PartitionState]):
    """The input topic as a Bytewax source of `PartitionBatch` items."""

    def __init__(self, settings: Settings) -> None:
        """Read `settings.input_topic`; nothing connects until the run starts."""
        self.settings = settings
        self._partition_count: int | None = None

    def list_parts(self) -> list[str]:
        """Every partition of the input topic, as its decimal id."""
        partitions = list_partitions(self.settings)
        self._partition_count = len(partitions)
        return [str(partition) for partition in partitions]

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartitionState | None
    ) -> "KafkaPartitionReader":
        """Open one partition at its resume offset, or at START_OFFSET."""
        if self._partition_count is None:
            self._partition_count = len(list_partitions(self.settings))
        return KafkaPartitionReader(self.settings, int(for_part), self._partition_count, resume_state)


class KafkaPartitionReader(StatefulSourcePartition[PartitionBatch, PartitionState]):
    """Reads one Kafka partition and emits at most one batch per step."""

    def __init__(
        self,
        settings: Settings,
        partition: int,
        partition_count: int,
        resume_state: PartitionState | None,
    ) -> None:
        """Assign the consumer and fix the end offset for bounded reads."""
        self.settings = settings
        self.partition = partition
        config: dict[str, Any] = {
            # librdkafka pauses a partition's fetching for fetch.queue.backoff.ms
            # (default 1 s) whenever its prefetch queue is full, which starves a
            # reader that drains it quickly. A short pause with a 16 MiB queue
            # read 65-72k events/s against 50-55k with the defaults, in 271
            # rather than 311 MiB (make bench, loginflow 1x1). KAFKA_PROP_* wins.
            "queued.max.messages.kbytes": PREFETCH_KIB_PER_PARTITION,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            **settings.kafka_config(),
            # Assignment only: the group id is required by librdkafka but unused.
            "group.id": "loginflow-assign-only",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            # Only consulted when a resume offset fell out of retention.
            "auto.offset.reset": "earliest",
            "error_cb": _log_client_error,
        }
        self._consumer = Consumer(config)
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(settings.input_topic, partition), timeout=METADATA_TIMEOUT_S
        )
        if resume_state is None:
            start = low if settings.start_offset == "earliest" else high
        else:
            start = resume_state.next_offset
        self._tracker = PartitionTracker.resume(
            partition, partition_count, settings.window_seconds, settings.allowed_lateness_seconds, resume_state
        )
        self._next_offset = start
        # A bounded read stops at the end the log had when the run started.
        self._end_offset = high if settings.stop_at_end else None
        self._caught_up = False
        self._finished = False
        self._last_idle_report = 0.0
        self._last_lag_check = 0.0
        self._gauges = PartitionGauges(partition)
        self._idle = False
        self._consumer.assign([TopicPartition(settings.input_topic, partition, start)])
        logger.info(
            "reading partition %s",
            kv(topic=settings.input_topic, partition=partition, start_offset=start, low=low, high=high,
               resumed=resume_state is not None, end_offset=self._end_offset),
        )

    def next_batch(self) -> list[PartitionBatch]:
        """Read what is ready, parse it, and report progress."""
        if self._finished:
            raise StopIteration
        if self._end_offset is not None and self._next_offset >= self._end_offset:
            return self._finish([], _no_message)

        messages = self._consumer.consume(self.settings.batch_size, 0)
        # None: this read said nothing new about whether we are at the head.
        at_head: bool | None = None
        if any(map(Message.error, messages)):
            messages, at_head = self._without_errors(messages)
        elif messages:
            at_head = False
        end = self._end_offset
        if end is not None and messages and _offset_of(messages[-1]) >= end:
            messages = [message for message in messages if _offset_of(message) < end]
        if messages:
            self._next_offset = _offset_of(messages[-1]) + 1
        values = list(map(Message.value, messages))

        def message_at(index: int) -> RawMessage:
            message = messages[index]
            return new_raw_message(RawMessage, (message.key(), message.value(), self.partition, message.offset()))

        if at_head is not None:
            self._caught_up = at_head
        if self._end_offset is not None and (self._next_offset >= self._end_offset or self._caught_up):
            # Reaching the log's head also ends a bounded read: transaction
            # markers can leave the last offsets without a readable message.
            return self._finish(values, message_at)

        self._idle = self._caught_up and not values
        if self._idle and time.monotonic() - self._last_idle_report >= IDLE_PROGRESS_INTERVAL_S:
            self._last_idle_report = time.monotonic()
            confirmed_at = self._confirm_head()
            if confirmed_at is not None:
                self._tracker.advance_idle(confirmed_at)
        batch = self._tracker.track_values(values, message_at)
        self._observe(batch, len(values))
        return [batch] if values or batch.progressed else []

    def _observe(self, batch: PartitionBatch, messages: int) -> None:
        self._gauges.observe(messages, len(batch.late), batch.watermark)
        for reject in batch.rejects:
            REJECTS.labels(reject.reason).inc()
        now = time.monotonic()
        if now - self._last_lag_check >= LAG_CHECK_INTERVAL_S:
            self._last_lag_check = now
            # Cached: the high watermark from the latest fetch response, no round trip.
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.settings.input_topic, self.partition), cached=True
            )
            if high >= 0:
                self._gauges.consumer_lag.set(max(0, high - self._next_offset))

    def _confirm_head(self) -> float | None:
        """Wall time at which the broker confirmed nothing lies past our offset.

        An EOF seen earlier is not enough: during a broker outage no new EOF
        or message arrives either, and advancing with wall time then would
        turn everything produced meanwhile late. Only a fresh answer counts.
        """
        asked_at = time.time()
        try:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.settings.input_topic, self.partition),
                timeout=HEAD_CHECK_TIMEOUT_S,
                cached=False,
            )
        except KafkaException as exc:
            logger.warning("cannot confirm partition head %s", kv(partition=self.partition, reason=exc))
            return None
        if high > self._next_offset:
            return None
        return asked_at

    def _without_errors(self, messages: list[Message]) -> tuple[list[Message], bool | None]:
        """The readable messages, and whether the read ended at the head (None: unknown)."""
        readable: list[Message] = []
        at_head: bool | None = None
        for message in messages:
            error = message.error()
            if error is None:
                readable.append(message)
                at_head = False
            elif error.code() == KafkaError._PARTITION_EOF:
                at_head = True
            elif error.fatal() or error.code() in PERMANENT_ERRORS:
                msg = f"reading partition {self.partition} of {self.settings.input_topic!r}: {error.str()}"
                raise SourceError(msg)
            else:
                logger.warning("retriable read error %s", kv(partition=self.partition, reason=error.str()))
        return readable, at_head

    def _finish(self, values: list[bytes | None], message_at: Callable[[int], RawMessage]) -> list[PartitionBatch]:
        self._finished = True
        logger.info("partition read to its end %s", kv(partition=self.partition, next_offset=self._next_offset))
        batch = self._tracker.track_values(values, message_at, finished=True)
        self._observe(batch, len(values))
        return [batch]

    def next_awake(self) -> datetime | None:
        """Back off while the partition has nothing new, to spare the CPU."""
        if self._idle:
            return datetime.now(timezone.utc) + IDLE_POLL
        return None

    def snapshot(self) -> PartitionState:
        """The next offset to read, with the watermark it had been reached at."""
        return self._tracker.state(self._next_offset)

    def close(self) -> None:
        """Leave the broker cleanly."""
        self._consumer.close()
