"""The benchmark's settings for topics and whole-topic reads (`devkit.records` does the work; not timed)."""

from __future__ import annotations

from devkit.records import Record, consume_all

ADMIN_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 300.0

# The broker stamps every output record when it appends it, so "last output
# flushed" is read from one clock for every contender, whatever its producer does.
OUTPUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def read_topic(brokers: str, topic: str) -> list[Record]:
    """Every record of `topic` up to the high watermarks it had on entry, by (partition, offset).

    A benchmark topic holds millions of records: more time than a test's read gets.
    """
    return consume_all(brokers, topic, timeout=READ_TIMEOUT_S)
