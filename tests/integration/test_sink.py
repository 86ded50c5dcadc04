"""The metrics/DLQ/late sink against the real broker: it writes, and it refuses to lose a record."""

from __future__ import annotations

import os

import pytest

from operators.encoding import KafkaRecord
from operators.kafka_sink import DeliveryError, KafkaTopicSink
from operators.settings import Settings
from tests.kafka_harness import TopicFactory, consume_all, headers_dict

pytestmark = pytest.mark.kafka


def test_sink_writes_every_record_with_its_key_value_and_headers(kafka_brokers: str,
                                                                 topic_factory: TopicFactory) -> None:  # fmt: skip
    topic = topic_factory(1)
    writer = KafkaTopicSink(Settings(brokers=kafka_brokers), topic, "OUTPUT_TOPIC").build("write", 0, 1)
    records = [KafkaRecord(b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)] if i % 2 else []) for i in range(2_000)]
    writer.write_batch(records)
    writer.close()
    # To the high watermark after the producer closed, so a duplicate would show.
    got = consume_all(kafka_brokers, topic)
    assert [(r.key, r.value, headers_dict(r.headers)) for r in got] == [
        (key, value, dict(headers)) for key, value, headers in records
    ]


def test_sink_raises_when_the_broker_refuses_a_record(kafka_brokers: str, topic_factory: TopicFactory) -> None:
    # Successes are not reported (delivery.report.only.error): a refusal must still surface.
    topic = topic_factory(1, {"max.message.bytes": "1000"})
    incompressible = os.urandom(5_000)  # the sink compresses with lz4
    writer = KafkaTopicSink(Settings(brokers=kafka_brokers), topic, "DLQ_TOPIC").build("write", 0, 1)
    with pytest.raises(DeliveryError, match="refused"):
        writer.write_batch([KafkaRecord(b"small", b"ok", []), KafkaRecord(b"big", incompressible, [])])
