"""Exactly-once output: one transactional writer per Kafka partition, committed at each epoch.

Bytewax calls a sink partition's `snapshot()` at the end of every epoch in
which it wrote, and only then can that epoch's recovery snapshot become
durable. So a partition's records for one epoch go into one transaction,
and `snapshot()` commits it.

A crash can fall between a commit and the moment Bytewax made that epoch's
snapshot durable. The resumed run then replays the epoch and produces its
records again. Before writing, a resumed writer therefore reads its own
partition's committed records from the snapshot's offset to the end and
skips replayed records it finds there.

The replay can itself be cut short by a second crash. What the first run
committed and the replay has not reached yet must still be skipped after
that: the snapshot is the partition's end offset together with those
identities (the skip set's remainder), so the next resume skips both what
they name and what was committed after the offset. Once the replay has
caught up the remainder is empty, unless the first run wrote something the
replay never writes again (a window an idle partition closed early, in tail
mode), which is kept, small, rather than guessed away.

The end offset is the high watermark, read as a read_uncommitted client:
right after a commit the last stable offset may still stop at this very
transaction (its commit marker is written after `commit_transaction`
returns), and resuming from there would take the epoch's own records for
ones a replay will write again.

Why skipping by identity is exact: every output record is a pure function
of the input log. A metric record is keyed by window, slice and key values,
and its value holds the count; a DLQ or late record carries its source
partition and offset in its headers. The identity used here is the whole
record (key, value and headers), so a replay skips exactly the copies that
are already committed. (The key alone would not do: a revision of a window
has the same key as the record it revises, with a larger count.)

The transactional.id is stable per topic and partition, so `init_transactions`
fences any older process still writing there (a zombie after a network
partition) and aborts the transaction it left open.
"""

import logging
from typing import Any

from bytewax.outputs import StatefulSinkPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from operators.kafka.client import DEFAULT_BATCH_BYTES, client_reporting, producer_config
from operators.pure.encoding import KafkaRecord
from operators.runtime.logs import kv
from operators.runtime.settings import Settings
from operators.runtime.shutdown import stop_process

logger = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 60_000
COMMIT_TIMEOUT_S = 60.0
READ_BACK_TIMEOUT_S = 60.0

Identity = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]
WriterState = tuple[int, frozenset[Identity]]
"""(the partition's end offset after a commit, identities committed before the resume and not yet replayed).

A plain tuple, so the recovery store does not name a class that could move.
A bare int is the state of a loginflow from before the remainder was kept.
"""


def identity(key: bytes | None, value: bytes | None, headers: Any) -> Identity:
    """A record's identity: its key, value and headers (see the module docstring)."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    normalized = tuple((name, data.encode() if isinstance(data, str) else (data or b"")) for name, data in items)
    return key, value, normalized


def transactional_id(settings: Settings, topic: str, partition: int) -> str:
    """The stable transactional.id of one output partition."""
    return f"{settings.transactional_id_prefix}-{topic}-{partition}"


def _resume_parts(state: WriterState | int | None) -> tuple[int | None, frozenset[Identity]]:
    if state is None or isinstance(state, int):
        return state, frozenset()
    return state


class TransactionalWriter(StatefulSinkPartition[list[KafkaRecord], WriterState]):
    """Writes one Kafka partition in transactions committed at each epoch's end."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        setting_name: str,
        partition: int,
        resume_state: WriterState | int | None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        """Fence older writers of this partition, then learn what a resumed run must not write again.

        Batches stay within `batch_bytes`, which the topic takes.
        """
        self.topic = topic
        self.setting_name = setting_name
        self.partition = partition
        self.txn_id = transactional_id(settings, topic, partition)
        self._producer = Producer(
            {
                **producer_config(settings, batch_bytes),
                "transactional.id": self.txn_id,
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            }
        )
        self._reader_config = {
            **settings.kafka_config(),
            "group.id": "loginflow-assign-only",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            **client_reporting(),
        }
        # Only asks for the high watermark (see the module docstring).
        self._offsets = Consumer({**self._reader_config, "isolation.level": "read_uncommitted"})
        self._in_transaction = False
        try:
            self._producer.init_transactions(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            self._stop("cannot start its transactions", exc)
        resume_offset, not_yet_replayed = _resume_parts(resume_state)
        self._committed: set[Identity] = set(not_yet_replayed)
        if resume_offset is not None:
            self._committed |= self._read_committed(resume_offset)
        logger.info(
            "transactional writer ready %s",
            kv(
                topic=topic,
                partition=partition,
                transactional_id=self.txn_id,
                resume_offset=resume_offset,
                carried_over=len(not_yet_replayed),
                already_committed=len(self._committed),
            ),
        )

    def _stop(self, what: str, exc: KafkaException) -> None:
        error = self._cause(exc.args[0])
        fenced = isinstance(error, KafkaError) and error.code() in (
            KafkaError._FENCED,
            KafkaError.PRODUCER_FENCED,
            KafkaError.INVALID_PRODUCER_EPOCH,
        )
        why = (
            "another process took over its transactional.id (same TRANSACTIONAL_ID_PREFIX); this one is a zombie"
            if fenced
            else str(error)
        )
        stop_process(
            f"{self.setting_name}={self.topic!r} partition {self.partition} (transactional.id {self.txn_id!r}) "
            f"{what}: {why}; stopping so that recovery resumes from the last snapshot"
        )

    def _cause(self, error: object) -> object:
        """The error behind librdkafka's generic fatal one (a produce after fencing says only `_FATAL`)."""
        if not (isinstance(error, KafkaError) and error.code() == KafkaError._FATAL):
            return error
        try:
            # In the fatal state this raises the error that caused it.
            self._producer.abort_transaction(1.0)
        except KafkaException as exc:
            return exc.args[0]
        return error

    def _read_committed(self, start: int) -> set[Identity]:
        """Identities of the committed records from `start` to the partition's end."""
        tp = TopicPartition(self.topic, self.partition)
        consumer = Consumer({**self._reader_config, "isolation.level": "read_committed"})
        try:
            _low, end = consumer.get_watermark_offsets(tp, timeout=READ_BACK_TIMEOUT_S, cached=False)
            found: set[Identity] = set()
            if end <= start:
                return found
            consumer.assign([TopicPartition(self.topic, self.partition, start)])
            done = False
            while not done:
                for message in consumer.consume(1000, 1.0):
                    error = message.error()
                    if error is None:
                        found.add(identity(message.key(), message.value(), message.headers()))
                        done = (message.offset() or 0) + 1 >= end
                    elif error.code() == KafkaError._PARTITION_EOF:
                        done = True
                    else:
                        raise KafkaException(error)
                position = consumer.position([tp])[0].offset
                done = done or position >= end
            return found
        finally:
            consumer.close()

    def write_batch(self, values: list[list[KafkaRecord]]) -> None:
        """Add the records to this epoch's transaction, skipping copies already committed."""
        try:
            if not self._in_transaction:
                self._producer.begin_transaction()
                self._in_transaction = True
            produce, topic, partition = self._producer.produce, self.topic, self.partition
            committed = self._committed
            for records in values:
                for key, value, headers in records:
                    if committed:
                        found = identity(key, value, headers)
                        if found in committed:
                            committed.discard(found)
                            continue
                    while True:
                        try:
                            produce(topic, value, key, partition=partition, headers=headers or None)
                            break
                        except BufferError:
                            self._producer.poll(0.1)
            self._producer.poll(0)
        except KafkaException as exc:
            self._stop("cannot write", exc)

    def snapshot(self) -> WriterState:
        """Commit this epoch's transaction; the state is the end offset and what is still to skip."""
        if self._in_transaction:
            try:
                self._producer.commit_transaction(COMMIT_TIMEOUT_S)
            except KafkaException as exc:
                self._stop("cannot commit", exc)
            self._in_transaction = False
        try:
            _low, end = self._offsets.get_watermark_offsets(
                TopicPartition(self.topic, self.partition), timeout=COMMIT_TIMEOUT_S, cached=False
            )
        except KafkaException as exc:
            self._stop("cannot read its end offset", exc)
        return int(end), frozenset(self._committed)

    def close(self) -> None:
        """Commit what is left (bounded runs end here) and leave the broker."""
        self.snapshot()
        self._offsets.close()
