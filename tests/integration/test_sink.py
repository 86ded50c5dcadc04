"""The metrics/DLQ/late sink on the real broker: it writes, it refuses to lose a record, what it forwards fits."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import Producer

from devkit.records import Record, consume_all, headers_dict
from operators.kafka.sink import DeliveryError, KafkaTopicSink
from operators.kafka.transactional_writer import TransactionalWriter
from operators.pure.encoding import KafkaRecord, RecordChunk
from operators.pure.murmur2 import partition_for
from operators.pure.sizes import PRODUCER_MAX_MESSAGE_BYTES, TRUNCATED_BYTES
from operators.runtime.settings import Settings
from tests.outputs import TopicFactory

pytestmark = pytest.mark.kafka


def exactly_once(brokers: str) -> Settings:
    return Settings(brokers=brokers, processing_guarantee="exactly-once", transactional_id_prefix="sink-test")


def write_chunk(sink: KafkaTopicSink, records: list[KafkaRecord], origin: str = "shard#0") -> None:
    """What Bytewax does with one chunk: route it, build each partition, write, and close the epoch."""
    parts = sink.list_parts()
    for item_key, routed in sink.route(RecordChunk(origin, records)):
        part = sink.build_part("write", parts[sink.part_fn(item_key) % len(parts)], None)
        part.write_batch([routed])
        part.snapshot()
        part.close()


def test_sink_writes_every_record_with_its_key_value_and_headers(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1)
    sink = KafkaTopicSink(Settings(brokers=kafka_brokers), topic, "OUTPUT_TOPIC")
    records = [KafkaRecord(b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)] if i % 2 else []) for i in range(2_000)]
    write_chunk(sink, records)
    # To the high watermark after the producer closed, so a duplicate would show.
    got = consume_all(kafka_brokers, topic)
    assert [(r.key, r.value, headers_dict(r.headers)) for r in got] == [
        (key, value, dict(headers)) for key, value, headers in records
    ]


def test_sink_raises_at_the_epoch_boundary_when_the_broker_refuses_a_record(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    # Successes are not reported (delivery.report.only.error): a refusal must still surface.
    topic = topic_factory(1, {"max.message.bytes": "1000"})
    incompressible = os.urandom(5_000)  # the sink compresses with lz4
    sink = KafkaTopicSink(Settings(brokers=kafka_brokers), topic, "OUTPUT_TOPIC")
    with pytest.raises(DeliveryError, match="refused"):
        write_chunk(sink, [KafkaRecord(b"small", b"ok", []), KafkaRecord(b"big", incompressible, [])])


def test_a_forwarded_record_too_large_for_its_topic_is_written_truncated(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1, {"max.message.bytes": "100000"})
    sink = KafkaTopicSink(Settings(brokers=kafka_brokers), topic, "DLQ_TOPIC", forwards_input=True)
    big = os.urandom(300_000)
    write_chunk(sink, [KafkaRecord(b"k", big, [("error", b"too_long:app_version")]), KafkaRecord(b"s", b"x", [])])
    first, second = consume_all(kafka_brokers, topic)
    assert first.value == big[:TRUNCATED_BYTES]
    assert first.headers == {"error": b"too_long:app_version", "truncated": b"300000"}
    assert (second.key, second.value, second.headers) == (b"s", b"x", {})


GUARANTEES = ["at-least-once", "exactly-once"]


def forwarding_sink(brokers: str, topic: str, guarantee: str) -> KafkaTopicSink:
    settings = Settings(brokers=brokers, processing_guarantee=guarantee, transactional_id_prefix=f"fit-{topic}")
    return KafkaTopicSink(settings, topic, "DLQ_TOPIC", forwards_input=True)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_forwarded_record_whose_key_is_too_large_for_its_topic_is_written_with_the_key_cut(
    kafka_brokers: str, topic_factory: TopicFactory, guarantee: str
) -> None:
    topic = topic_factory(1, {"max.message.bytes": "100000"})
    big_key = os.urandom(200_000)
    records = [KafkaRecord(big_key, b"not json", [("error", b"invalid_json")]), KafkaRecord(b"s", b"x", [])]
    write_chunk(forwarding_sink(kafka_brokers, topic, guarantee), records)
    got = {r.value: r for r in read_committed_records(kafka_brokers, topic)}
    cut = got[b"not json"]
    assert cut.headers == {"error": b"invalid_json", "truncated": b"8", "truncated_key": b"200000"}
    assert 0 < len(cut.key or b"") < 100_000 and big_key.startswith(cut.key or b"-")
    assert (got[b"x"].key, got[b"x"].headers) == (b"s", {})


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_forwarded_records_that_each_fit_a_small_topic_are_all_written_whole(
    kafka_brokers: str, topic_factory: TopicFactory, guarantee: str
) -> None:
    # Together they are far more than the topic takes in one batch.
    topic = topic_factory(1, {"max.message.bytes": "100000"})
    records = [KafkaRecord(b"k%d" % i, os.urandom(5_000), [("error", b"invalid_json")]) for i in range(200)]
    write_chunk(forwarding_sink(kafka_brokers, topic, guarantee), records)
    got = read_committed_records(kafka_brokers, topic)
    assert sorted((r.key, r.value) for r in got) == sorted((r.key, r.value) for r in records)
    assert all(r.headers == {"error": b"invalid_json"} for r in got)


def test_a_forwarded_record_larger_than_the_producer_sends_is_cut_to_fit(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    # The topic would take it; the producer's own limit is the smaller one.
    topic = topic_factory(1, {"max.message.bytes": str(20 * 1024 * 1024)})
    big = os.urandom(PRODUCER_MAX_MESSAGE_BYTES + 1024 * 1024)
    write_chunk(forwarding_sink(kafka_brokers, topic, "at-least-once"), [KafkaRecord(b"k", big, [])])
    [cut] = consume_all(kafka_brokers, topic)
    assert (cut.key, cut.value, cut.headers) == (b"k", big[:TRUNCATED_BYTES], {"truncated": str(len(big)).encode()})


def read_committed_records(brokers: str, topic: str) -> list[Record]:
    return consume_all(brokers, topic, config={"isolation.level": "read_committed"})


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_keyed_records_land_where_javas_partitioner_puts_them(
    kafka_brokers: str, topic_factory: TopicFactory, guarantee: str
) -> None:
    topic = topic_factory(5)
    settings = Settings(brokers=kafka_brokers, processing_guarantee=guarantee, transactional_id_prefix="place")
    keys = [f'["w","user_id",u{i}]'.encode() for i in range(500)]
    records = [KafkaRecord(key, b"%d" % i, []) for i, key in enumerate(keys)]
    write_chunk(KafkaTopicSink(settings, topic, "OUTPUT_TOPIC"), records)
    placed = {r.key: r.partition for r in consume_all(kafka_brokers, topic)}
    assert placed == {key: partition_for(key, 5) for key in keys}
    # And librdkafka's own Java-compatible partitioner agrees, key by key.
    check = topic_factory(5)
    producer = Producer({"bootstrap.servers": kafka_brokers, "partitioner": "murmur2_random"})
    for record in records:
        producer.produce(check, record.value, record.key)
    assert producer.flush(30) == 0
    assert {r.key: r.partition for r in consume_all(kafka_brokers, check)} == placed


def read_committed(brokers: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(r.key, r.value) for r in consume_all(brokers, topic, config={"isolation.level": "read_committed"})]


@pytest.mark.parametrize("bare_offset", [False, True], ids=["state_of_today", "bare_offset_of_older_versions"])
def test_a_resumed_transactional_writer_skips_what_it_already_committed(
    kafka_brokers: str, topic_factory: TopicFactory, bare_offset: bool
) -> None:
    topic = topic_factory(1)
    settings = exactly_once(kafka_brokers)
    epoch1 = [KafkaRecord(b"a", b"1", []), KafkaRecord(b"b", b"1", [("h", b"x")])]
    epoch2 = [KafkaRecord(b"c", b"1", []), KafkaRecord(b"a", b"2", [])]
    writer = TransactionalWriter(settings, topic, "OUTPUT_TOPIC", 0, 1, None)
    writer.write_batch([epoch1])
    after_epoch1 = writer.snapshot()
    writer.write_batch([epoch2])
    writer.snapshot()
    # A crash before Bytewax made epoch 2's snapshot durable: the resumed run
    # replays epoch 2 from epoch 1's state, and goes on with epoch 3.
    resume_state = after_epoch1[0] if bare_offset else after_epoch1
    resumed = TransactionalWriter(settings, topic, "OUTPUT_TOPIC", 0, 1, resume_state)
    resumed.write_batch([[*epoch2, KafkaRecord(b"d", b"1", [])]])
    resumed.snapshot()
    resumed.close()
    expected = [(b"a", b"1"), (b"b", b"1"), (b"c", b"1"), (b"a", b"2"), (b"d", b"1")]
    assert read_committed(kafka_brokers, topic) == expected


def test_a_second_crash_during_the_replay_still_skips_what_the_first_run_committed(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    """The replay after a crash is caught only partway up when the next crash comes.

    The first run committed epochs 1 and 2, but only epoch 1's snapshot became
    durable. The second run replays epoch 2: one epoch of it, all already
    committed, then its snapshot is durable and it crashes. The third run
    resumes from that snapshot and replays the rest of epoch 2, which the
    first run committed too: it must still be skipped.
    """
    topic = topic_factory(1)
    settings = exactly_once(kafka_brokers)
    epoch1 = [KafkaRecord(b"a", b"1", [])]
    epoch2 = [KafkaRecord(f"k{index}".encode(), b"1", []) for index in range(6)]
    first = TransactionalWriter(settings, topic, "OUTPUT_TOPIC", 0, 1, None)
    first.write_batch([epoch1])
    after_epoch1 = first.snapshot()
    first.write_batch([epoch2])
    first.snapshot()

    second = TransactionalWriter(settings, topic, "OUTPUT_TOPIC", 0, 1, after_epoch1)
    second.write_batch([epoch2[:2]])
    partway = second.snapshot()

    third = TransactionalWriter(settings, topic, "OUTPUT_TOPIC", 0, 1, partway)
    third.write_batch([[*epoch2[2:], KafkaRecord(b"new", b"1", [])]])
    third.close()
    expected = [(record.key, record.value) for record in [*epoch1, *epoch2, KafkaRecord(b"new", b"1", [])]]
    assert read_committed(kafka_brokers, topic) == expected


def test_a_transaction_left_open_by_a_crash_is_aborted_by_the_next_writer(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(1)
    settings = exactly_once(kafka_brokers)
    crashed = TransactionalWriter(settings, topic, "OUTPUT_TOPIC", 0, 1, None)
    crashed.write_batch([[KafkaRecord(b"lost", b"1", [])]])
    crashed._producer.flush(10)  # on the broker, in an open transaction
    successor = TransactionalWriter(settings, topic, "OUTPUT_TOPIC", 0, 1, None)
    successor.write_batch([[KafkaRecord(b"kept", b"1", [])]])
    successor.close()
    assert read_committed(kafka_brokers, topic) == [(b"kept", b"1")]
