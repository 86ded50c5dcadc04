"""Kafka output that fails loudly instead of losing a record.

Bytewax's own `KafkaSink` flushes but never looks at delivery reports, so a
record the broker refused would vanish. Here every write is confirmed before
the step returns; a failed delivery stops the dataflow, and a resume from
recovery writes it again.

One refusal would repeat on every resume: a forwarded input message larger
than the DLQ or late topic accepts (the input topic may allow more). Those
sinks write such a record again with its value cut and a `truncated` header
giving the original length, so one message can never stop the dataflow.
"""

import logging
from collections.abc import Mapping
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from operators.encoding import Headers, KafkaRecord
from operators.kafka_client import client_reporting
from operators.logs import kv
from operators.settings import Settings
from operators.shutdown import stop_on
from operators.topics import KafkaSetupError, ensure_topic, topic_max_message_bytes

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_QUEUED_RECORDS = 1_000_000
TRUNCATED_VALUE_BYTES = 64 * 1024
# Room left in a refused record for its key, headers and the batch framing.
RECORD_OVERHEAD_BYTES = 4096


class DeliveryError(RuntimeError):
    """The broker did not accept a record."""


def truncated(record: KafkaRecord, max_message_bytes: int) -> KafkaRecord:
    """`record` with its value cut to fit the topic, and a `truncated` header with the original length."""
    key, value, headers = record
    room = max_message_bytes - len(key or b"") - RECORD_OVERHEAD_BYTES
    keep = max(0, min(TRUNCATED_VALUE_BYTES, room))
    original = len(value or b"")
    return KafkaRecord(key, (value or b"")[:keep], [*headers, ("truncated", str(original).encode())])


class KafkaTopicSink(DynamicSink[KafkaRecord]):
    """Writes `KafkaRecord`s to one topic, from every worker."""

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
        input topic's largest message, and truncates a record still refused.
        """
        self.settings = settings
        self.topic = topic
        self.setting_name = setting_name
        self.topic_config = dict(topic_config or {})
        self.forwards_input = forwards_input

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_TopicWriter":
        """One producer per worker, after making sure the topic exists."""
        with stop_on(KafkaSetupError):
            ensure_topic(self.settings, self.topic, self.topic_config, self.setting_name, self.forwards_input)
            limit = topic_max_message_bytes(self.settings, self.topic) if self.forwards_input else None
        return _TopicWriter(self.settings, self.topic, limit)


class _TopicWriter(StatelessSinkPartition[KafkaRecord]):
    def __init__(self, settings: Settings, topic: str, truncate_to_fit: int | None) -> None:
        self.topic = topic
        self.truncate_to_fit = truncate_to_fit
        self.failures: list[str] = []
        self.too_large: list[KafkaRecord] = []
        config: dict[str, Any] = {
            **settings.kafka_config(),
            # Retries must not reorder or duplicate within a run.
            "enable.idempotence": "true",
            "linger.ms": "5",
            "compression.type": "lz4",
            # A reject is forwarded byte for byte, so allow what the input
            # topic allowed; the broker's per-topic limit still applies.
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            # A closing window writes its records in one burst; room for the
            # whole burst keeps `produce` from stalling on a full queue.
            "queue.buffering.max.messages": str(MAX_QUEUED_RECORDS),
            # Successes need no report: `flush` returning 0 already says every
            # record was either delivered or failed, and failures are reported.
            # This spares a Python callback per record.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            **client_reporting(),
        }
        self._producer = Producer(config)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        if self.truncate_to_fit is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            raw = message.headers() or []
            headers: Headers = list(raw.items() if isinstance(raw, dict) else raw)
            self.too_large.append(KafkaRecord(message.key(), message.value(), headers))
            return
        self.failures.append(error.str())

    def _produce(self, record: KafkaRecord) -> None:
        key, value, headers = record
        while True:
            try:
                if headers:
                    self._producer.produce(self.topic, value, key, headers=headers)
                else:
                    self._producer.produce(self.topic, value, key)
                return
            except BufferError:
                # Local queue full: serve delivery reports to make room.
                self._producer.poll(0.1)
            except KafkaException as exc:
                too_large = exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
                if not (too_large and self.truncate_to_fit is not None):
                    raise
                # Larger than this producer may send at all: cut it now.
                record = self._cut(record)
                key, value, headers = record

    def _cut(self, record: KafkaRecord) -> KafkaRecord:
        limit = self.truncate_to_fit if self.truncate_to_fit is not None else MAX_MESSAGE_BYTES
        cut = truncated(record, min(limit, MAX_MESSAGE_BYTES))
        logger.warning(
            "record too large for its topic, written truncated %s",
            kv(topic=self.topic, original_bytes=len(record.value or b""), written_bytes=len(cut.value or b"")),
        )
        return cut

    def write_batch(self, items: list[KafkaRecord]) -> None:
        for item in items:
            self._produce(item)
        self._flush()
        if self.too_large:
            refused, self.too_large = self.too_large, []
            for record in refused:
                self._produce(self._cut(record))
            self._flush()
        if self.too_large:
            self.failures.extend(f"{len(record.value or b'')} bytes even when truncated" for record in self.too_large)
        if self.failures:
            msg = f"{len(self.failures)} records to {self.topic!r} were refused, first: {self.failures[0]}"
            raise DeliveryError(msg)

    def _flush(self) -> None:
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            msg = f"{remaining} records to {self.topic!r} still undelivered after {FLUSH_TIMEOUT_S:.0f}s"
            raise DeliveryError(msg)

    def close(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)
