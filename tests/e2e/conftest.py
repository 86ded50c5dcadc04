"""Fixtures the end-to-end crash tests share."""

import pytest

from tests.outputs import TopicFactory
from tests.skewed_input import Expected, Inputs, produce_skewed_input


@pytest.fixture
def skewed_input(kafka_brokers: str, topic_factory: TopicFactory) -> tuple[str, Inputs, Expected]:
    """A fresh input topic with partitions of very different sizes, and the reference answer for it."""
    return produce_skewed_input(kafka_brokers, topic_factory)
