"""Helpers for the exactly-once end-to-end tests: watching an output topic grow, counting duplicates."""

from devkit.records import READ_UNCOMMITTED, Record, consume_all, reader
from tests.outputs import source_of


class TopicWatcher:
    """Counts the records a topic holds, as a read_uncommitted reader sees them (aborted ones included).

    It keeps one consumer reading from the beginning, so each `count()` only
    reads what was written since the last one.
    """

    def __init__(self, brokers: str, topic: str) -> None:
        self.topic = topic
        self.records = 0
        self._consumer, _partitions = reader(brokers, topic, READ_UNCOMMITTED, timeout=30)

    def count(self) -> int:
        """Records read so far, after reading whatever arrived (for at most about half a second)."""
        for message in self._consumer.consume(num_messages=10_000, timeout=0.5):
            if message.error() is None:
                self.records += 1
        return self.records

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "TopicWatcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_outputs(brokers: str, topics: dict[str, str], isolation: dict[str, str]) -> dict[str, list[Record]]:
    """Every output topic read to its high watermark with the given isolation level."""
    return {name: consume_all(brokers, topic, config=isolation) for name, topic in topics.items()}


def identity_of(name: str, record: Record) -> object:
    """What makes a record the same result as another: the metric's key, or the rejected/late event's source."""
    return record.key if name == "metrics" else source_of(record)


def duplicate_counts(out: dict[str, list[Record]]) -> dict[str, int]:
    """Per output, how many records repeat an identity seen before (0 means every result is there once)."""
    counts = {}
    for name, records in out.items():
        counts[name] = len(records) - len({identity_of(name, record) for record in records})
    return counts


def summary(out: dict[str, list[Record]]) -> str:
    dups = duplicate_counts(out)
    return ", ".join(f"{name}: {len(records)} records, {dups[name]} duplicates" for name, records in out.items())
