"""The exactly-once writer's commit latency histogram, on the real broker: one observation per commit."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from operators.kafka.transactional_writer import TransactionalWriter
from operators.pure.encoding import KafkaRecord
from tests.integration.test_sink import exactly_once
from tests.outputs import TopicFactory

pytestmark = pytest.mark.kafka

NAME = "loginflow_transaction_commit_seconds"


def observed() -> tuple[float, float]:
    """(commits observed, seconds summed) in this process so far."""
    count = REGISTRY.get_sample_value(f"{NAME}_count")
    total = REGISTRY.get_sample_value(f"{NAME}_sum")
    assert count is not None and total is not None, f"{NAME} is not registered"
    return count, total


def test_each_commit_is_observed_once_and_an_epoch_without_records_not_at_all(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1)
    writer = TransactionalWriter(exactly_once(kafka_brokers), topic, "DLQ_TOPIC", 0, 1, None)
    count, total = observed()

    writer.write_batch([[KafkaRecord(b"k", b"v1", [])]])
    writer.snapshot()
    after_first = observed()
    assert after_first[0] == count + 1
    assert after_first[1] > total, "a commit to a real broker takes some time"

    writer.snapshot()  # an epoch that wrote nothing opens no transaction
    writer.write_batch([[]])
    writer.snapshot()
    assert observed() == after_first

    writer.write_batch([[KafkaRecord(b"k", b"v2", []), KafkaRecord(b"k", b"v3", [])]])
    writer.close()  # a bounded run's last commit
    assert observed()[0] == count + 2
    # Every observation falls in a finite bucket: none reached the 60 s commit timeout.
    assert REGISTRY.get_sample_value(f"{NAME}_bucket", {"le": "60.0"}) == observed()[0]
