"""Kafka input: one Bytewax partition per Kafka partition, with event-time progress.

Each partition reads its Kafka partition by assignment (no consumer group),
parses in log order and keeps its watermark (`operators.pure.partition`). Its
resume state is the next offset together with that watermark, snapshotted
atomically, so a resume after any downtime replays the same decisions: the
Bytewax event clock's habit of storing system time does not apply here.

The next offset is the consumer's position, not the last data message plus
one: transaction markers and compacted or deleted offsets hold offsets that
never arrive as messages, and a partition whose log ends in a commit marker
must still count as read to its head. A bounded read ends at the end offset
the log had when it started, exactly: a message at or past it, or an EOF
there, ends it with that offset as its next one, so what was appended
meanwhile is the next run's to read.

The snapshot also keeps the topic's id: offsets resumed on a topic that was
deleted and created again would name other messages, so that stops the start.

Bytewax fixes a source's partitions when the run starts. In tail mode the
readers watch the topic's partition count and stop the process when it
grows, naming the topic and both counts; the supervisor's restart then reads
the new partitions from their beginning. Until a check has come after a
watermark, that watermark makes no window final (`operators.kafka.growth`).
"""

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from itertools import repeat
from operator import itemgetter, truediv
from typing import cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from operators.kafka.client import reader_config
from operators.kafka.growth import PartitionCountWatch, Settling, TopicGrewError
from operators.kafka.topics import PERMANENT_ERRORS, KafkaSetupError, SourceError, input_topic_id, list_partitions
from operators.pure.events import RawMessage, new_raw_message
from operators.pure.partition import PartitionBatch, PartitionState, PartitionTracker
from operators.runtime.logs import kv
from operators.runtime.metrics import OFFSETS_SKIPPED, REJECTS, PartitionGauges
from operators.runtime.resume import IncompatibleRecoveryError, stored_state
from operators.runtime.run_args import run_recovery_directory
from operators.runtime.settings import Settings
from operators.runtime.shutdown import stop_on

logger = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 30.0
IDLE_POLL = timedelta(milliseconds=20)
# A read that found nothing before the partition's EOF: the next fetch
# response is on its way. Bytewax would call again after 1 ms, and those
# calls were most of a tailing process's CPU at 2,000 events/s.
EMPTY_READ_POLL = timedelta(milliseconds=5)
# How often a caught-up partition reports its idle progress, in seconds;
# and how long a fresh head check may block, after connection trouble only.
IDLE_PROGRESS_INTERVAL_S = 0.1
HEAD_CHECK_TIMEOUT_S = 1.0
# Client errors after which an idle partition's progress waits for a fresh
# answer from the broker: during an outage no message or EOF arrives either.
CONNECTION_TROUBLE = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE}
)
LAG_CHECK_INTERVAL_S = 1.0


def _offset_of(message: Message) -> int:
    """The offset of a readable message; only error events have none."""
    return cast(int, message.offset())


def _no_message(index: int) -> RawMessage:
    msg = f"no message {index} in an empty read"
    raise IndexError(msg)


class TopicRecreatedError(SourceError):
    """The recovery state holds offsets of an earlier topic with the input topic's name."""


# Message.timestamp() is (type, milliseconds); seconds are the milliseconds / 1000.0,
# 0 or less when the record has none.
_SECOND_OF_PAIR = itemgetter(1)


def check_partition_count(topic: str, count: int, stored: int) -> None:
    """Refuse recovery state that holds offsets for partitions the topic no longer has."""
    if stored <= count:
        return
    msg = (
        f"INPUT_TOPIC={topic!r} has {count} partitions, the recovery state holds offsets for {stored}: "
        "the topic was deleted and recreated, or this directory belongs to another topic. "
        "Start with a new recovery directory"
    )
    raise TopicRecreatedError(msg)


def check_topic_identity(topic: str, stored: str | None, current: str | None, partition: int) -> None:
    """Refuse offsets that were taken on another topic of the same name."""
    if stored is None or current is None or stored == current:
        return
    msg = (
        f"INPUT_TOPIC={topic!r} was deleted and recreated since the recovery state was written "
        f"(partition {partition}: topic id {stored} then, {current} now); its offsets name other messages. "
        "Start with a new recovery directory to read the new topic from START_OFFSET"
    )
    raise TopicRecreatedError(msg)


class LoginSource(FixedPartitionedSource[PartitionBatch, PartitionState]):
    """The input topic as a Bytewax source of `PartitionBatch` items."""

    def __init__(self, settings: Settings) -> None:
        """Read `settings.input_topic`; nothing connects until the run starts."""
        self.settings = settings
        self._partition_count: int | None = None
        self._topic_id: str | None = None
        self._watch: PartitionCountWatch | None = None
        # Whether this run resumes from recovery state: then a partition
        # without a snapshot is new to the topic, and is read from its
        # beginning whatever START_OFFSET says (`operators.runtime.resume`).
        self.resuming = False

    def list_parts(self) -> list[str]:
        """Every partition of the input topic, as its decimal id."""
        with stop_on(IncompatibleRecoveryError):
            stored = stored_state(run_recovery_directory())
        self.resuming = self.resuming or stored.resuming
        with stop_on(KafkaSetupError):
            partitions = list_partitions(self.settings)
        if self.resuming:
            with stop_on(TopicRecreatedError):
                check_partition_count(self.settings.input_topic, len(partitions), stored.input_partitions)
        self._partition_count = len(partitions)
        self._topic_id = input_topic_id(self.settings)
        return [str(partition) for partition in partitions]

    def watch(self, partition_count: int) -> PartitionCountWatch:
        """The partition count watch this process's readers share."""
        if self._watch is None:
            self._watch = PartitionCountWatch(self.settings.input_topic, partition_count)
        return self._watch

    @property
    def topic_id(self) -> str | None:
        """The input topic's id, as the broker gave it when the run started (None: not known)."""
        return self._topic_id

    def build_part(self, step_id: str, for_part: str, resume_state: PartitionState | None) -> "KafkaPartitionReader":
        """Open one partition at its resume offset, or at START_OFFSET."""
        if self._partition_count is None:
            with stop_on(KafkaSetupError):
                self._partition_count = len(list_partitions(self.settings))
        if resume_state is not None:
            self.resuming = True
            if self._topic_id is None:
                self._topic_id = input_topic_id(self.settings)
            with stop_on(TopicRecreatedError):
                check_topic_identity(self.settings.input_topic, resume_state.topic_id, self._topic_id, int(for_part))
        return KafkaPartitionReader(self.settings, int(for_part), self._partition_count, resume_state, self)


class KafkaPartitionReader(StatefulSourcePartition[PartitionBatch, PartitionState]):
    """Reads one Kafka partition and emits at most one batch per step."""

    def __init__(
        self,
        settings: Settings,
        partition: int,
        partition_count: int,
        resume_state: PartitionState | None,
        source: LoginSource | None = None,
    ) -> None:
        """Create the consumer; it is assigned at the first read, once every local partition is built."""
        self.settings = settings
        self.partition = partition
        self.partition_count = partition_count
        self._resume_state = resume_state
        self._source = source
        config = reader_config(settings, on_error=self._note_connection_trouble)
        # Set by a connection error, cleared by a fresh answer from the broker.
        self._connection_trouble = False
        self._consumer = Consumer(config)
        self._tracker = PartitionTracker.resume(
            partition,
            partition_count,
            settings.window_seconds,
            settings.allowed_lateness_seconds,
            resume_state,
            settings.max_field_bytes,
            settings.max_ahead_of_record_seconds,
        )
        self._next_offset = -1
        self._end_offset: int | None = None
        self._assigned = False
        self._caught_up = False
        self._finished = False
        self._last_idle_report = 0.0
        self._last_lag_check = 0.0
        self._watch: PartitionCountWatch | None = None
        self._settling = Settling()
        if not settings.stop_at_end:
            # Listing the partitions at the start came after the resumed watermark was reached.
            self._watch = source.watch(partition_count) if source is not None else None
            self._watch = self._watch or PartitionCountWatch(settings.input_topic, partition_count)
            self._tracker.settle(-math.inf if resume_state is None else resume_state.watermark)
        self._gauges = PartitionGauges(partition)
        self._idle = False
        self._empty_read = False

    def _assign(self) -> None:
        """Choose the first offset and start fetching."""
        self._assigned = True
        settings, resume_state = self.settings, self._resume_state
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(settings.input_topic, self.partition), timeout=METADATA_TIMEOUT_S
        )
        resuming = self._source is not None and self._source.resuming
        if resume_state is not None:
            start = resume_state.next_offset
            if start < low:
                # Retention deleted what we had not read yet: say how much.
                skipped = low - start
                OFFSETS_SKIPPED.labels(str(self.partition)).inc(skipped)
                logger.warning(
                    "resume offset fell out of retention %s",
                    kv(
                        topic=settings.input_topic,
                        partition=self.partition,
                        resume_offset=start,
                        low=low,
                        skipped_messages=skipped,
                    ),
                )
                start = low
        elif settings.start_offset == "earliest" or resuming:
            start = low
        else:
            start = high
        self._next_offset = start
        # A bounded read stops at the end the log had when the run started.
        self._end_offset = high if settings.stop_at_end else None
        self._consumer.assign([TopicPartition(settings.input_topic, self.partition, start)])
        logger.info(
            "reading partition %s",
            kv(
                topic=settings.input_topic,
                partition=self.partition,
                start_offset=start,
                low=low,
                high=high,
                resumed=resume_state is not None,
                new_partition=resume_state is None and resuming,
                end_offset=self._end_offset,
            ),
        )

    def next_batch(self) -> list[PartitionBatch]:
        """Read what is ready, parse it, and report progress."""
        if self._finished:
            raise StopIteration
        if not self._assigned:
            self._assign()
        if self._watch is not None:
            with stop_on(TopicGrewError):
                self._watch.poll(self._consumer)
            settled = self._settling.settled(self._watch, self._tracker.watermark)
            if settled is not None:
                self._tracker.settle(settled)
        if self._end_offset is not None and self._next_offset >= self._end_offset:
            return self._finish([], _no_message)

        messages = self._consumer.consume(self.settings.batch_size, 0)
        # None: this read said nothing new about whether we are at the head.
        at_head: bool | None = None
        eof_offset: int | None = None
        if any(map(Message.error, messages)):
            messages, at_head, eof_offset = self._without_errors(messages)
        elif messages:
            at_head = False
        end = self._end_offset
        past_end = end is not None and bool(messages) and _offset_of(messages[-1]) >= end
        if end is not None and past_end:
            messages = [message for message in messages if _offset_of(message) < end]
        if messages:
            self._next_offset = max(self._next_offset, _offset_of(messages[-1]) + 1)
        if eof_offset is not None:
            # The EOF offset is the head, past any transaction markers and past
            # a resume offset that retention already deleted; a bounded read
            # takes no more of it than its end.
            self._next_offset = max(self._next_offset, eof_offset if end is None else min(eof_offset, end))
        if past_end:
            # The consumer delivers in offset order: everything readable before
            # the end has been read, whatever control records sit before it.
            self._next_offset = max(self._next_offset, cast(int, end))
        values = list(map(Message.value, messages))

        def message_at(index: int) -> RawMessage:
            message = messages[index]
            return new_raw_message(RawMessage, (message.key(), message.value(), self.partition, message.offset()))

        # C-level passes over the batch: one Python call per message would cost more.
        record_times = list(map(truediv, map(_SECOND_OF_PAIR, map(Message.timestamp, messages)), repeat(1000.0)))

        if at_head is not None:
            self._caught_up = at_head
        if end is not None and (self._next_offset >= end or self._caught_up):
            # Reaching the head also ends a bounded read: an open transaction
            # can hold the readable end below the end offset until it ends,
            # and the next run goes on from that head.
            return self._finish(values, message_at, record_times)

        if messages or at_head:
            # Data or an EOF: the connection works.
            self._connection_trouble = False
        self._idle = self._caught_up and not values
        self._empty_read = not values
        if self._idle and time.monotonic() - self._last_idle_report >= IDLE_PROGRESS_INTERVAL_S:
            self._last_idle_report = time.monotonic()
            confirmed_at = self._confirm_head()
            if confirmed_at is not None:
                self._tracker.advance_idle(confirmed_at)
        now = time.monotonic() if values else None
        batch = self._tracker.track_values(values, message_at, record_times=record_times, now=now)
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

    def _note_connection_trouble(self, error: KafkaError) -> None:
        if error.code() in CONNECTION_TROUBLE:
            self._connection_trouble = True

    def _confirm_head(self) -> float | None:
        """Monotonic time at which this partition is known to have nothing past our offset, if it is.

        The EOF librdkafka reported, and the high watermark of its latest
        fetch (cached, no round trip), say so while the connection works.
        After a connection error they may be stale: during an outage no new
        message or EOF arrives either, and moving on with wall time would
        close windows early. Then only a fresh answer from the broker counts.
        The clock is monotonic: a step of the host clock moves no window.
        """
        asked_at = time.monotonic()
        tp = TopicPartition(self.settings.input_topic, self.partition)
        try:
            if self._connection_trouble:
                _low, high = self._consumer.get_watermark_offsets(tp, timeout=HEAD_CHECK_TIMEOUT_S, cached=False)
                self._connection_trouble = False
            else:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException as exc:
            logger.warning("cannot confirm partition head %s", kv(partition=self.partition, reason=exc))
            return None
        if high > self._next_offset:
            return None
        return asked_at

    def _without_errors(self, messages: list[Message]) -> tuple[list[Message], bool | None, int | None]:
        """The readable messages, whether the read ended at the head (None: unknown), and the EOF offset."""
        readable: list[Message] = []
        at_head: bool | None = None
        eof_offset: int | None = None
        for message in messages:
            error = message.error()
            if error is None:
                readable.append(message)
                at_head = False
            elif error.code() == KafkaError._PARTITION_EOF:
                at_head = True
                eof_offset = message.offset()
            elif error.fatal() or error.code() in PERMANENT_ERRORS:
                msg = f"reading partition {self.partition} of {self.settings.input_topic!r}: {error.str()}"
                raise SourceError(msg)
            else:
                logger.warning("retriable read error %s", kv(partition=self.partition, reason=error.str()))
        return readable, at_head, eof_offset

    def _finish(
        self,
        values: list[bytes | None],
        message_at: Callable[[int], RawMessage],
        record_times: list[float] | None = None,
    ) -> list[PartitionBatch]:
        self._finished = True
        logger.info("partition read to its end %s", kv(partition=self.partition, next_offset=self._next_offset))
        batch = self._tracker.track_values(values, message_at, finished=True, record_times=record_times)
        self._observe(batch, len(values))
        return [batch]

    def next_awake(self) -> datetime | None:
        """Back off while the partition has nothing new, to spare the CPU: longer once it is idle."""
        if self._finished:
            return None
        if self._idle:
            return datetime.now(timezone.utc) + IDLE_POLL
        if self._empty_read:
            return datetime.now(timezone.utc) + EMPTY_READ_POLL
        return None

    def snapshot(self) -> PartitionState:
        """The next offset to read, with the watermark it had been reached at."""
        if not self._assigned:
            self._assign()
        topic_id = self._source.topic_id if self._source is not None else None
        return self._tracker.state(self._next_offset, topic_id)

    def close(self) -> None:
        """Leave the broker cleanly."""
        self._consumer.close()
