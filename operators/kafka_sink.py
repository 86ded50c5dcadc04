"""Kafka output that fails loudly instead of losing a record.

Bytewax's own `KafkaSink` flushes but never looks at delivery reports, so a
record the broker refused would vanish. Here every write is confirmed before
the step returns; a failed delivery stops the dataflow, and a resume from
recovery writes it again.
"""

import logging
from collections.abc import Mapping
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from operators.encoding import KafkaRecord
from operators.logs import kv
from operators.settings import Settings
from operators.topics import ensure_topic

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_QUEUED_RECORDS = 1_000_000


class DeliveryError(RuntimeError):
    """The broker did not accept a record."""


class KafkaTopicSink(DynamicSink[KafkaRecord]):
    """Writes `KafkaRecord`s to one topic, from every worker."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        setting_name: str,
        topic_config: Mapping[str, str] | None = None,
    ) -> None:
        """Produce to `topic`, creating it with `topic_config` if it is missing."""
        self.settings = settings
        self.topic = topic
        self.setting_name = setting_name
        self.topic_config = dict(topic_config or {})

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_TopicWriter":
        """One producer per worker, after making sure the topic exists."""
        ensure_topic(self.settings, self.topic, self.topic_config, self.setting_name)
        return _TopicWriter(self.settings, self.topic)


class _TopicWriter(StatelessSinkPartition[KafkaRecord]):
    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.failures: list[str] = []
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
            "error_cb": self._on_client_error,
        }
        self._producer = Producer(config)

    def _on_client_error(self, error: KafkaError) -> None:
        logger.warning("kafka producer error %s", kv(topic=self.topic, code=error.name(), reason=error.str()))

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.failures.append(error.str())

    def write_batch(self, items: list[KafkaRecord]) -> None:
        produce, topic = self._producer.produce, self.topic
        for key, value, headers in items:
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
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            msg = f"{remaining} records to {self.topic!r} still undelivered after {FLUSH_TIMEOUT_S:.0f}s"
            raise DeliveryError(msg)
        if self.failures:
            msg = f"{len(self.failures)} records to {self.topic!r} were refused, first: {self.failures[0]}"
            raise DeliveryError(msg)

    def close(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)
