"""Issue 22 (2), (4), (5): an exactly-once writer resumed from an older snapshot, on the real broker.

Each test makes the crash on purpose: a writer commits, and a second writer
resumes from the state the first had before that commit, as a resume does
when the epoch's snapshot never became durable. The second writer then
replays what the first committed, or something close to it.
"""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer

from devkit.records import consume_all
from operators.kafka.transactional_writer import TransactionalWriter
from operators.pure.encoding import Headers, KafkaRecord
from tests.integration.test_sink import exactly_once
from tests.outputs import TopicFactory

pytestmark = pytest.mark.kafka


def metric(user: str, count: int) -> KafkaRecord:
    key = b'["2024-03-01T00:00:00Z","user_id","%s"]' % user.encode()
    value = b'{"window_start":"2024-03-01T00:00:00Z","slice":"user_id","key":{"user_id":"%s"},"count":%d}'
    return KafkaRecord(key, value % (user.encode(), count), [])


def window_closed(user: str, count: int) -> KafkaRecord:
    key, value, _ = metric(user, count)
    return KafkaRecord(key, value, [("error", b"window_closed"), ("source_topic", b"user-login")])


def reject(offset: int, source_topic: bytes = b"user-login") -> KafkaRecord:
    headers: Headers = [
        ("error", b"invalid_json"),
        ("source_topic", source_topic),
        ("source_partition", b"0"),
        ("source_offset", str(offset).encode()),
    ]
    return KafkaRecord(b"k", b"{not json %d" % offset, headers)


def committed(brokers: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(r.key, r.value) for r in consume_all(brokers, topic, config={"isolation.level": "read_committed"})]


def writer(brokers: str, topic: str, setting: str, state: object = None) -> TransactionalWriter:
    return TransactionalWriter(exactly_once(brokers), topic, setting, 0, 1, state)  # type: ignore[arg-type]


def test_a_replay_never_commits_a_count_lower_than_one_committed(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1)
    first = writer(kafka_brokers, topic, "OUTPUT_TOPIC")
    first.write_batch([[metric("a", 2)]])
    before = first.snapshot()
    # The epoch that never became durable: an idle close at 3, then the window's count grew to 5.
    first.write_batch([[metric("a", 3), metric("a", 5)]])
    first.snapshot()
    # The replay's idle close fell later: 4, and then the committed 5 would follow.
    replay = writer(kafka_brokers, topic, "OUTPUT_TOPIC", before)
    replay.write_batch([[metric("a", 4)]])
    replay.snapshot()
    replay.write_batch([[metric("a", 5), metric("a", 6)]])
    replay.close()
    counts = [int(value.rsplit(b":", 1)[1][:-1]) for _key, value in committed(kafka_brokers, topic) if value]
    assert counts == [2, 3, 5, 6]


def test_identical_window_closed_records_are_each_skipped_once(kafka_brokers: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory(1)
    first = writer(kafka_brokers, topic, "DLQ_TOPIC")
    first.write_batch([[reject(0)]])
    before = first.snapshot()
    # Two one-event batches for the same window and key: two byte-identical records.
    first.write_batch([[window_closed("a", 1), window_closed("a", 1)]])
    first.snapshot()
    replay = writer(kafka_brokers, topic, "DLQ_TOPIC", before)
    replay.write_batch([[window_closed("a", 1), window_closed("a", 1), reject(5)]])
    replay.close()
    assert committed(kafka_brokers, topic) == [
        (reject(0).key, reject(0).value),
        *[(window_closed("a", 1).key, window_closed("a", 1).value)] * 2,
        (reject(5).key, reject(5).value),
    ]


def test_uncounted_counts_regrouped_by_a_replay_sum_to_what_one_run_writes(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1)
    first = writer(kafka_brokers, topic, "DLQ_TOPIC")
    first.write_batch([[reject(0)]])
    before = first.snapshot()
    # Read at the head of the log: one event for the closed window, then two more.
    first.write_batch([[window_closed("a", 1), window_closed("a", 2)]])
    first.snapshot()
    # The replay finds all three in one batch, then a fourth arrives.
    replay = writer(kafka_brokers, topic, "DLQ_TOPIC", before)
    replay.write_batch([[window_closed("a", 3), window_closed("a", 1)]])
    replay.close()
    counts = [
        int(value.rsplit(b":", 1)[1][:-1]) for key, value in committed(kafka_brokers, topic) if key != b"k" and value
    ]
    assert sum(counts) == 4, counts


def test_the_skip_state_ignores_other_dataflows_and_forgets_what_cannot_be_replayed(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1)
    first = writer(kafka_brokers, topic, "DLQ_TOPIC")
    first.write_batch([[reject(0)]])
    before = first.snapshot()
    first.write_batch([[reject(1), reject(2)]])
    first.snapshot()
    # Another dataflow shares the DLQ (its own prefix, its own input topic).
    other = Producer({"bootstrap.servers": kafka_brokers})
    for offset in range(2_000):
        key, value, headers = reject(offset, source_topic=b"other-input")
        other.produce(topic, value, key, partition=0, headers=headers)
    assert other.flush(30) == 0

    replay = writer(kafka_brokers, topic, "DLQ_TOPIC", before)
    assert len(replay._skip) == 2, "only this dataflow's own committed records are kept"
    # The replay decides offset 1 differently (it cannot, as rejects are a
    # function of the log; a record no replay writes again stands in for one
    # whose epoch will never be replayed), then writes offset 2 and goes on.
    replay.write_batch([[reject(2), reject(3)]])
    _offset, (copies, counts, _uncounted), _partitions = replay.snapshot()
    assert copies == () and counts == (), "offset 1 is behind the replay: no later resume can produce it"
    replay.close()
    ours = [
        (r.headers["source_offset"], r.value)
        for r in consume_all(kafka_brokers, topic, config={"isolation.level": "read_committed"})
        if r.headers.get("source_topic") == b"user-login"
    ]
    assert [offset for offset, _value in ours] == [b"0", b"1", b"2", b"3"]


def test_the_read_back_waits_for_another_producers_open_transaction(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    """Another dataflow on a shared DLQ holds the last stable offset below what this writer committed."""
    topic = topic_factory(1)
    first = writer(kafka_brokers, topic, "DLQ_TOPIC")
    first.write_batch([[reject(0)]])
    before = first.snapshot()
    other = Producer({"bootstrap.servers": kafka_brokers, "transactional.id": f"other-dataflow-{topic}"})
    other.init_transactions(30)
    other.begin_transaction()
    key, value, headers = reject(0, source_topic=b"other-input")
    other.produce(topic, value, key, partition=0, headers=headers)
    assert other.flush(30) == 0
    # Our epoch commits while the other transaction is open, then the crash.
    first.write_batch([[reject(1), reject(2)]])
    first.snapshot()
    # The other dataflow's epoch ends a few seconds later, while the replay reads back.
    ends = threading.Timer(3.0, other.commit_transaction, args=(30,))
    ends.start()
    try:
        replay = writer(kafka_brokers, topic, "DLQ_TOPIC", before)
    finally:
        ends.join()
    replay.write_batch([[reject(1), reject(2), reject(3)]])
    replay.close()
    ours = [
        r.headers["source_offset"]
        for r in consume_all(kafka_brokers, topic, config={"isolation.level": "read_committed"})
        if r.headers.get("source_topic") == b"user-login"
    ]
    assert ours == [b"0", b"1", b"2", b"3"]
