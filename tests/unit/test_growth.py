"""The partition count watch: which watermarks a check came after (no broker: a stand-in consumer)."""

import math
from types import SimpleNamespace
from typing import cast

import pytest
from confluent_kafka import Consumer

from operators.kafka import growth
from operators.kafka.growth import PartitionCountWatch, Settling, TopicGrewError


class Metadata:
    """A consumer whose `list_topics` answers with `partitions` partitions of `topic`."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.calls = 0

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        self.calls += 1
        found = SimpleNamespace(partitions=dict.fromkeys(range(self.partitions)), error=None)
        return SimpleNamespace(topics={self.topic: found})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(growth.time, "monotonic", lambda: now[0])
    return now


def test_a_watermark_settles_only_after_a_check_that_began_after_it(clock: list[float]) -> None:
    consumer = Metadata("t", 2)
    watch = PartitionCountWatch("t", 2)
    settling = Settling()
    assert settling.settled(watch, 10.0) is None  # marked at 100.0
    watch.poll(cast(Consumer, consumer))
    assert consumer.calls == 0, "no check before the interval since the start's listing"
    clock[0] = 100.0 + growth.CHECK_INTERVAL_S
    assert settling.settled(watch, 15.0) is None  # not checked yet: 10.0 is still pending
    watch.poll(cast(Consumer, consumer))
    assert watch.confirmed_from == clock[0]
    assert settling.settled(watch, 20.0) == 10.0
    assert settling.settled(watch, 20.0) is None  # 20.0 marked now, after that check began


def test_a_grown_topic_stops_and_settles_nothing(clock: list[float]) -> None:
    watch = PartitionCountWatch("t", 2)
    clock[0] += growth.CHECK_INTERVAL_S
    with pytest.raises(TopicGrewError, match="grew from 2 to 3 partitions"):
        watch.poll(cast(Consumer, Metadata("t", 3)))
    assert watch.confirmed_from == -math.inf
