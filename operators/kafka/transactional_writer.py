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

What the replay skips, and what it forgets, is `operators.pure.replay_skip`:
metrics by their highest committed count per key, so a replay never commits
a lower count than one already committed; everything else by identity with
multiplicity. Every output record is a pure function of the input log: a
metric record is keyed by window, slice and key values, and a DLQ or late
record carries its source partition and offset in its headers.

The snapshot also holds the topic's partition count. Records are routed by
the murmur2 hash of their key over that count, so after partitions were
added a replayed record or a revision would land in another partition than
its first copy: the read-back would not find it, and "latest record per key"
would span two partitions. A resume onto a topic with another count stops.

The transactional.id is stable per topic and partition, so `init_transactions`
fences any older process still writing there (a zombie after a network
partition) and aborts the transaction it left open. A writer that is fenced
itself cannot tell a zombie from another dataflow with the same prefix, and
restarting would only fence the other one back: it stops with one line
naming TRANSACTIONAL_ID_PREFIX and the id.
"""

import logging
import time
from typing import Any

from bytewax.outputs import StatefulSinkPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from operators.kafka.client import DEFAULT_BATCH_BYTES, client_reporting, producer_config
from operators.pure.encoding import KafkaRecord
from operators.pure.replay_skip import SKIP, Remainder, ReplaySkip
from operators.runtime.logs import kv
from operators.runtime.metrics import TRANSACTION_COMMIT_SECONDS
from operators.runtime.settings import PROCESSING_GUARANTEES, Settings
from operators.runtime.shutdown import stop_process

logger = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 60_000
COMMIT_TIMEOUT_S = 60.0
READ_BACK_TIMEOUT_S = 60.0
# A transaction open when this writer resumes ends within the broker's timeout
# of the producer that opened it; older loginflows used TRANSACTION_TIMEOUT_MS.
OPEN_TRANSACTION_WAIT_S = TRANSACTION_TIMEOUT_MS / 1000 + 30

WriterState = tuple[int, Remainder, int]
"""(the partition's end offset after a commit, what a resume must still skip, the topic's partition count).

A plain tuple, so the recovery store does not name a class that could move.
Older versions stored a bare int (the end offset), then (end offset, a
frozenset of identities).
"""
LegacyWriterState = int | tuple[int, frozenset[Any]]


# An at-least-once sink partition's state is (AT_LEAST_ONCE, partition count).
AT_LEAST_ONCE, EXACTLY_ONCE = PROCESSING_GUARANTEES


class GuaranteeChangedError(ValueError):
    """A sink partition's state was written under the other PROCESSING_GUARANTEE."""

    def __init__(self, was: str, now: str) -> None:
        """Name both guarantees."""
        super().__init__(
            f"PROCESSING_GUARANTEE: recovery state was written with {was}, now {now}; "
            "start with the guarantee it was written with, or use a new recovery directory"
        )


class OutputPartitionsChanged(ValueError):
    """The output topic has another partition count than the recovery state was written with."""


def check_output_partitions(setting_name: str, topic: str, stored: int | None, now: int) -> None:
    """Stop a resume onto an output topic whose partition count changed."""
    if stored is not None and stored != now:
        msg = (
            f"{setting_name}={topic!r} has {now} partitions, the recovery state was written with {stored}: "
            "records route by key over the partition count, so replays and revisions would land in other "
            "partitions than their first copies; write to a new topic with a new recovery directory, "
            f"or recreate {topic!r} with {stored} partitions"
        )
        raise OutputPartitionsChanged(msg)


def transactional_id(settings: Settings, topic: str, partition: int) -> str:
    """The stable transactional.id of one output partition."""
    return f"{settings.transactional_id_prefix}-{topic}-{partition}"


FENCED_CODES = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


def taken_over(txn_id: str, prefix: str, derived: bool) -> str:
    """The stop line of a writer whose transactional id another producer took over."""
    origin = "derived from its topic names" if derived else "set by TRANSACTIONAL_ID_PREFIX"
    return (
        f"TRANSACTIONAL_ID_PREFIX: transactional id {txn_id!r} was taken over by another producer "
        "(another dataflow with the same prefix, or a second copy of this one); "
        f"give each dataflow its own prefix (this one uses {prefix!r}, {origin})"
    )


LegacyRecords = list[tuple[bytes | None, bytes | None, Any]]


def _resume_parts(
    state: WriterState | LegacyWriterState | None,
) -> tuple[int | None, Remainder | None, int | None, LegacyRecords]:
    """(resume offset, remainder, partition count, identities an older version kept) of a state."""
    if state is None or isinstance(state, int):
        return state, None, None, []
    if len(state) == 2:  # noqa: PLR2004 - an older version's (offset, identities), or at-least-once's
        offset, identities = state
        if not isinstance(offset, int):
            raise GuaranteeChangedError(AT_LEAST_ONCE, EXACTLY_ONCE)
        # Fed through `ReplaySkip.add_committed`, as if read back, so metric and
        # uncounted records follow their own rules.
        return offset, None, None, list(identities)
    offset, remainder, partitions = state
    return offset, remainder, partitions, []


class TransactionalWriter(StatefulSinkPartition[list[KafkaRecord], WriterState]):
    """Writes one Kafka partition in transactions committed at each epoch's end."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        setting_name: str,
        partition: int,
        partitions: int,
        resume_state: WriterState | LegacyWriterState | None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        """Fence older writers of this partition, then learn what a resumed run must not write again.

        Batches stay within `batch_bytes`, which the topic takes.
        """
        self.topic = topic
        self.setting_name = setting_name
        self.partition = partition
        self.partitions = partitions
        self.txn_id = transactional_id(settings, topic, partition)
        self._prefix = settings.transactional_id_prefix
        self._prefix_derived = settings.transactional_id_prefix_is_derived
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
        resume_offset, not_yet_replayed, stored_partitions, legacy = _resume_parts(resume_state)
        check_output_partitions(setting_name, topic, stored_partitions, partitions)
        self._skip = ReplaySkip(
            by_count=setting_name == "OUTPUT_TOPIC", source_topic=settings.input_topic, remainder=not_yet_replayed
        )
        self._skip.add_all(legacy)
        carried_over = len(self._skip)
        if resume_offset is not None:
            self._skip.add_all(self._read_committed(resume_offset))
        logger.info(
            "transactional writer ready %s",
            kv(
                topic=topic,
                partition=partition,
                transactional_id=self.txn_id,
                resume_offset=resume_offset,
                carried_over=carried_over,
                already_committed=len(self._skip),
            ),
        )

    def _stop(self, what: str, exc: KafkaException) -> None:
        error = self._cause(exc.args[0])
        where = f"{self.setting_name}={self.topic!r} partition {self.partition}"
        if isinstance(error, KafkaError) and error.code() in FENCED_CODES:
            # Not "resumes from the last snapshot": a restart would fence the other producer back.
            stop_process(f"{taken_over(self.txn_id, self._prefix, self._prefix_derived)}; {where} {what}")
        stop_process(
            f"{where} (transactional.id {self.txn_id!r}) {what}: {error}; "
            "stopping so that recovery resumes from the last snapshot"
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

    def _read_committed(self, start: int) -> list[tuple[bytes | None, bytes | None, Any]]:
        """The committed records from `start` to the partition's end.

        A read_committed reader stops at the last stable offset: the first
        offset of any transaction still open there, such as another dataflow's
        on a shared topic, or one a crashed process of an older version left
        for the broker to time out. What this writer committed beyond it is
        only visible once that transaction ends, so the read waits for it,
        up to one transaction timeout and then some, rather than take the
        records it cannot see yet for ones the replay may write again.
        """
        tp = TopicPartition(self.topic, self.partition)
        consumer = Consumer({**self._reader_config, "isolation.level": "read_committed"})
        try:
            # The high watermark: a read_committed client would be told the last stable offset.
            _low, end = self._offsets.get_watermark_offsets(tp, timeout=READ_BACK_TIMEOUT_S, cached=False)
            found: list[tuple[bytes | None, bytes | None, Any]] = []
            if end <= start:
                return found
            consumer.assign([TopicPartition(self.topic, self.partition, start)])
            position = start
            stalled_since: float | None = None
            while position < end:
                at_stable_offset = False
                for message in consumer.consume(1000, 1.0):
                    error = message.error()
                    if error is None:
                        found.append((message.key(), message.value(), message.headers()))
                    elif error.code() == KafkaError._PARTITION_EOF:
                        at_stable_offset = True
                    else:
                        raise KafkaException(error)
                reached = consumer.position([tp])[0].offset
                if reached > position:
                    position, stalled_since = reached, None
                    continue
                if stalled_since is None:
                    stalled_since = time.monotonic()
                    if at_stable_offset:
                        logger.warning(
                            "reading back waits for an open transaction %s",
                            kv(topic=self.topic, partition=self.partition, stable_offset=position, end_offset=end),
                        )
                elif time.monotonic() - stalled_since > OPEN_TRANSACTION_WAIT_S:
                    stop_process(
                        f"{self.setting_name}={self.topic!r} partition {self.partition}: reading back what this "
                        f"writer committed has stopped at offset {position}, below the end {end}, for "
                        f"{OPEN_TRANSACTION_WAIT_S:.0f} s (a transaction of another producer holds the last "
                        "stable offset, or the broker does not answer); stop the producer holding it, or wait "
                        "for the broker to abort it, and start again"
                    )
            return found
        finally:
            consumer.close()

    def write_batch(self, values: list[list[KafkaRecord]]) -> None:
        """Add the records to this epoch's transaction, skipping copies already committed."""
        try:
            # The empty wake-up writes of an execution start (`operators.runtime.execution_start`) need none.
            if not self._in_transaction and any(values):
                self._producer.begin_transaction()
                self._in_transaction = True
            produce, topic, partition = self._producer.produce, self.topic, self.partition
            # Asked once a batch: outside a replay there is nothing to skip, and
            # a per-record truth test would cost more than the produce call.
            skip = self._skip if self._skip else None
            for records in values:
                for key, value, headers in records:
                    if skip is not None:
                        value = skip.admit(key, value, headers)  # noqa: PLW2901 - the rest of a partly committed count
                        if value is SKIP:
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
            started = time.perf_counter()
            try:
                self._producer.commit_transaction(COMMIT_TIMEOUT_S)
            except KafkaException as exc:
                self._stop("cannot commit", exc)
            TRANSACTION_COMMIT_SECONDS.observe(time.perf_counter() - started)
            self._in_transaction = False
        try:
            _low, end = self._offsets.get_watermark_offsets(
                TopicPartition(self.topic, self.partition), timeout=COMMIT_TIMEOUT_S, cached=False
            )
        except KafkaException as exc:
            self._stop("cannot read its end offset", exc)
        return int(end), self._skip.remainder(), self.partitions

    def close(self) -> None:
        """Commit what is left (bounded runs end here) and leave the broker."""
        self.snapshot()
        self._offsets.close()
