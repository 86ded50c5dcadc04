"""Shared pytest fixtures: a Kafka broker for the session and per-test topics."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping

import pytest

from devkit.broker import LocalBroker, broker_reachable
from devkit.records import create_topic, delete_topics
from tests.outputs import TopicFactory

log = logging.getLogger(__name__)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kafka: needs a real Kafka broker (started by the harness when none is given)")
    # Tansu loses acknowledged records at volume: tests would fail for the
    # broker's sake, or pass by skipping. It is a `make demo` option only.
    if os.environ.get("LOCAL_BROKER", "apache") != "apache":
        pytest.exit(
            f"LOCAL_BROKER={os.environ['LOCAL_BROKER']!r}: the tests run on Apache Kafka only "
            "(Tansu is a development option for make demo); unset LOCAL_BROKER",
            returncode=2,
        )


@pytest.fixture(scope="session")
def kafka_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a reachable broker.

    Uses ``KAFKA_BROKERS`` when it answers; otherwise starts a private broker on
    free ports with its state in a pytest temp dir, so tests never touch the
    developer's demo broker, and always stops it at session end.
    """
    given = os.environ.get("KAFKA_BROKERS")
    if given:
        if broker_reachable(given, timeout=5.0):
            yield given
            return
        log.warning("KAFKA_BROKERS=%s does not answer; starting a local broker instead", given)
    with LocalBroker.on_free_ports(tmp_path_factory.mktemp("kafka-broker")) as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_factory(kafka_brokers: str) -> Iterator[TopicFactory]:
    """Return ``make_topic(partitions=1, config=None) -> name``; the topics are deleted after the test."""
    created: list[str] = []

    def make_topic(partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        topic = create_topic(kafka_brokers, partitions=partitions, config=config)
        created.append(topic)
        return topic

    yield make_topic
    delete_topics(kafka_brokers, created)
