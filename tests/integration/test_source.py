"""The Kafka source against the real broker: where it starts, and what it says when it cannot start there."""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from devkit.records import produce
from operators.kafka.source import EMPTY_READ_POLL, IDLE_POLL, KafkaPartitionReader
from operators.pure.partition import PartitionState
from operators.runtime.metrics import OFFSETS_SKIPPED
from operators.runtime.settings import Settings
from tests.outputs import TopicFactory

pytestmark = pytest.mark.kafka


def login(t: int) -> bytes:
    return json.dumps({"user_id": "u", "timestamp": t}).encode()


def test_a_resume_offset_deleted_by_retention_is_skipped_loudly(
    kafka_brokers: str, topic_factory: TopicFactory, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_factory(1)
    produce(kafka_brokers, topic, [(0, b"k", login(1_709_251_200 + i)) for i in range(10)])
    admin = AdminClient({"bootstrap.servers": kafka_brokers})
    admin.delete_records([TopicPartition(topic, 0, 6)])[TopicPartition(topic, 0, 6)].result(timeout=30)
    settings = Settings(brokers=kafka_brokers, input_topic=topic, stop_at_end=True)
    before = OFFSETS_SKIPPED.labels("0")._value.get()
    reader = KafkaPartitionReader(settings, 0, 1, PartitionState(2, -math.inf, -math.inf))
    with caplog.at_level(logging.WARNING, logger="operators.kafka.source"):
        batches = []
        while True:
            try:
                batches += reader.next_batch()
            except StopIteration:
                break
    reader.close()
    assert OFFSETS_SKIPPED.labels("0")._value.get() - before == 4
    assert "resume offset fell out of retention" in caplog.text and "skipped_messages=4" in caplog.text
    assert [event.event_time for batch in batches for event in batch.events] == [
        1_709_251_200.0 + i for i in range(6, 10)
    ]


def test_a_tailing_reader_backs_off_briefly_after_an_empty_read_and_longer_once_idle(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1)
    produce(kafka_brokers, topic, [(0, b"k", login(1_709_251_200 + i)) for i in range(5)])
    reader = KafkaPartitionReader(Settings(brokers=kafka_brokers, input_topic=topic), 0, 1, None)
    read, backoffs = 0, []
    deadline = time.monotonic() + 30
    try:
        # Until the five are read and the partition reports itself idle.
        while time.monotonic() < deadline:
            got = sum(len(batch.events) + len(batch.rejects) + len(batch.late) for batch in reader.next_batch())
            read += got
            awake = reader.next_awake()
            if got:
                assert awake is None, "a read that found messages reads on at once"
                continue
            assert awake is not None, "a read that found nothing must not be repeated after Bytewax's 1 ms"
            backoffs.append(awake - datetime.now(timezone.utc))
            if read == 5 and backoffs[-1] > EMPTY_READ_POLL:
                break
    finally:
        reader.close()
    assert read == 5
    # The first read comes before the first fetch response: a short back-off;
    # once at the head with nothing new, the idle one.
    assert timedelta(0) < backoffs[0] <= EMPTY_READ_POLL
    assert EMPTY_READ_POLL < backoffs[-1] <= IDLE_POLL
