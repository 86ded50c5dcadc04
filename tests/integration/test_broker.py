"""The local broker and the dev kit's topic and record helpers themselves: round trips, restarts, status codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from devkit.broker import LocalBroker, free_ports
from devkit.records import OutMessage, Record, consume_all, create_topic, headers_dict, produce
from tests.outputs import TopicFactory

pytestmark = pytest.mark.kafka


Content = tuple[int, int, bytes | None, bytes | None, dict[str, bytes | None]]
"""A record's (partition, offset, key, value, headers): all but the broker's timestamp."""


def contents(records: list[Record]) -> list[Content]:
    return [(r.partition, r.offset, r.key, r.value, r.headers) for r in records]


def expected_records(messages: list[OutMessage], offsets: list[tuple[int, int]]) -> list[Content]:
    """What consume_all should return for ``messages`` written with the given delivery offsets, timestamps aside."""
    by_partition: dict[int, list[OutMessage]] = {}
    for message in messages:
        by_partition.setdefault(message[0], []).append(message)
    next_offset = {p: min(o for q, o in offsets if q == p) for p in by_partition}
    records: list[Content] = []
    for partition, sent in sorted(by_partition.items()):
        for message in sent:
            headers = headers_dict(message[3]) if len(message) > 3 else {}
            records.append((partition, next_offset[partition], message[1], message[2], headers))
            next_offset[partition] += 1
    return records


def test_round_trip_on_three_partitions(kafka_brokers: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=3)
    messages: list[OutMessage] = [(i % 3, f"k{i}".encode(), f"v{i}".encode()) for i in range(60)]
    messages += [
        (0, None, b"no key"),
        (1, b"tombstone", None),
        (2, b"with-headers", b"h", {"trace": b"abc", "empty": None}),
    ]

    offsets = produce(kafka_brokers, topic, messages)
    records = consume_all(kafka_brokers, topic)

    assert contents(records) == expected_records(messages, offsets)
    assert sorted({r.partition for r in records}) == [0, 1, 2]
    assert all(r.timestamp_ms > 0 and not r.log_append_time for r in records), "producer (CreateTime) timestamps"


def test_consume_all_empty_topic_returns_nothing(kafka_brokers: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=2)

    assert consume_all(kafka_brokers, topic, timeout=30.0) == []


def test_consume_all_times_out_when_expected_count_never_arrives(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory()
    produce(kafka_brokers, topic, [(0, b"k", b"only one")])

    assert len(consume_all(kafka_brokers, topic, expected_count=1)) == 1
    with pytest.raises(TimeoutError, match="without reaching 2 records"):
        consume_all(kafka_brokers, topic, expected_count=2, timeout=2.0)


def test_topic_factory_applies_config(kafka_brokers: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=1, config={"cleanup.policy": "compact"})
    admin = AdminClient({"bootstrap.servers": kafka_brokers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=15)

    assert configs["cleanup.policy"].value == "compact"


def test_records_survive_broker_restart(tmp_path: Path) -> None:
    broker = LocalBroker.on_free_ports(tmp_path / "kafka")
    try:
        broker.up()
        assert broker.kind() == "apache"
        topic = create_topic(broker.bootstrap, partitions=2)
        messages: list[OutMessage] = [(i % 2, f"user-{i}".encode(), f"login {i}".encode()) for i in range(200)]
        offsets = produce(broker.bootstrap, topic, messages)

        broker.down()
        assert broker.status() == 3
        broker.up()
        assert broker.status() == 0

        records = consume_all(broker.bootstrap, topic, expected_count=len(messages))
        assert contents(records) == expected_records(messages, offsets)
        assert consume_all(broker.bootstrap, topic) == records
    finally:
        broker.down()
    assert broker.status() == 3


def test_status_and_down_on_a_stopped_broker(tmp_path: Path) -> None:
    broker = LocalBroker.on_free_ports(tmp_path / "never-started")

    assert broker.status() == 3
    down = broker.run("down")
    assert down.returncode == 0, down.stderr
    assert "not running" in down.stdout


def test_script_rejects_unknown_commands(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    broker = LocalBroker(port=port, controller_port=controller_port, state_dir=tmp_path)

    result = broker.run("bogus")
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_up_without_java_fails_instead_of_falling_back_to_tansu(tmp_path: Path) -> None:
    # A `java` first on PATH that is too old to run Kafka 4, and no JAVA_HOME.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    java = fake_bin / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    environment = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "JAVA_HOME": "", "LOCAL_BROKER": "apache"}
    broker = LocalBroker.on_free_ports(tmp_path / "kafka", environment)
    try:
        result = broker.run("up")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no Java >= 17 found" in result.stderr and "LOCAL_BROKER=tansu" in result.stderr, result.stderr
        assert broker.status() == 3
        assert broker.kind() == "unknown", "nothing was started"
    finally:
        broker.down()
