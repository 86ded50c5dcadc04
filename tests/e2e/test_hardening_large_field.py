"""Issue 10: a valid event with a field over a megabyte, on a topic configured to accept it.

The event is rejected with `too_long:<field>` (MAX_FIELD_BYTES, default 1024).
A DLQ topic loginflow creates accepts what the input accepted, so the reject
keeps its full original bytes; a DLQ topic that refuses it still gets it, cut to
64 KiB with a `truncated` header holding the original length. Either way the
run ends normally and the counts are exact.
"""

import base64
import os
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from devkit.records import consume_all, delete_topics, produce
from tests.dataflow_runner import DataflowCluster
from tests.hardening import TRUNCATED_BYTES, check_accounted, login, read_log, source_in, varied_login
from tests.outputs import collect, flow_env, output_topics, source_of

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 60
LATENESS = 2
BASE = 1709251200
RUN_TIMEOUT_S = 120
BIG_TOPIC = {"max.message.bytes": str(4 * 1024 * 1024)}
BIG_PRODUCER = {"message.max.bytes": 8 * 1024 * 1024}


def incompressible(size: int) -> str:
    """Random text: the sink compresses, and a repeated character would shrink below any limit."""
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def topic_config(brokers: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": brokers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def produce_with_big_event(brokers: str, topic: str, big_field: str) -> bytes:
    big = login(BASE + 30, "big-user", app=big_field)
    assert len(big) > 1_100_000
    messages = [(i % 2, b"k", varied_login(BASE + i, i)) for i in range(40)]
    messages.insert(17, (1, b"big", big))
    messages.append((0, b"k", b"not json"))
    produce(brokers, topic, messages, config=BIG_PRODUCER)
    return big


def run_to_end(env: dict[str, str], tmp_path: Path) -> str:
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:
        [finished] = cluster.wait(RUN_TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stderr


def test_megabyte_field_goes_to_a_created_dlq_whole(kafka_brokers: str, topic_factory, tmp_path: Path) -> None:
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)
    # A DLQ topic that does not exist yet: loginflow creates it.
    topics["dlq"] = f"t-dlq-{uuid.uuid4().hex}"
    try:
        big = produce_with_big_event(kafka_brokers, input_topic, incompressible(1_200_000))
        env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True)
        run_to_end(env, tmp_path)

        assert int(topic_config(kafka_brokers, topics["dlq"])["max.message.bytes"]) >= 4 * 1024 * 1024
        out = collect(kafka_brokers, topics)
        log = read_log(kafka_brokers, input_topic)
        [big_reject] = [record for record in out["dlq"] if record.headers.get("error") == b"too_long:app_version"]
        assert "truncated" not in big_reject.headers, "a DLQ loginflow created must hold the whole reject"
        assert big_reject.value == big
        assert log[source_of(big_reject)[0]][source_of(big_reject)[1]] == big
        check_accounted(out, log, WINDOW, LATENESS, revisions=False)
    finally:
        delete_topics(kafka_brokers, [topics["dlq"]])


def test_reject_too_large_for_its_dlq_is_truncated_with_its_length(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)
    topics["dlq"] = topic_factory(partitions=1, config={"max.message.bytes": "100000"})
    big = produce_with_big_event(kafka_brokers, input_topic, incompressible(1_200_000))
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True)
    run_to_end(env, tmp_path)

    dlq = consume_all(kafka_brokers, topics["dlq"])
    cut_records = [record for record in dlq if "truncated" in record.headers]
    assert len(cut_records) == 1, f"one truncated DLQ record expected: {[r.headers for r in dlq]}"
    [cut] = cut_records
    assert cut.headers.get("truncated") == str(len(big)).encode()
    assert cut.value == big[:TRUNCATED_BYTES]
    # Cut or not, a reject still says why and where it came from.
    assert cut.headers.get("error") == b"too_long:app_version", f"truncated record headers: {cut.headers}"
    log = read_log(kafka_brokers, input_topic)
    big_source = source_in(log, big)
    assert source_of(cut) == big_source, f"truncated record headers: {cut.headers}"
    [small] = [record for record in dlq if record is not cut]
    assert small.value == b"not json" and "truncated" not in small.headers
    # With the truncated value checked and restored, everything else is exact.
    check_accounted(collect(kafka_brokers, topics), log, WINDOW, LATENESS, revisions=False)


def test_large_late_event_is_truncated_on_a_small_late_topic_and_a_large_on_time_one_counts(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    # Unknown extra fields are ignored, so a megabyte of them leaves an event valid.
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)
    topics["late"] = topic_factory(partitions=1, config={"max.message.bytes": "100000"})
    padding = incompressible(1_200_000)
    on_time_big = login(BASE + 30, "padded-user", padding=padding)
    late_big = login(BASE + 5, "padded-user", padding=padding[::-1])
    messages = [(i % 2, b"k", varied_login(BASE + i, i)) for i in range(20)]
    messages += [(0, b"big", on_time_big), (0, b"k", varied_login(BASE + 200, 1)), (0, b"big", late_big)]
    produce(kafka_brokers, input_topic, messages, config=BIG_PRODUCER)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True)
    run_to_end(env, tmp_path)

    log = read_log(kafka_brokers, input_topic)
    late_source = source_in(log, late_big)
    [cut] = consume_all(kafka_brokers, topics["late"])
    assert cut.headers.get("truncated") == str(len(late_big)).encode(), cut.headers
    assert cut.value == late_big[:TRUNCATED_BYTES]
    assert cut.headers.get("window_start") == b"2024-03-01T00:00:00Z", f"truncated record headers: {cut.headers}"
    assert source_of(cut) == late_source, f"truncated record headers: {cut.headers}"
    expected = check_accounted(collect(kafka_brokers, topics), log, WINDOW, LATENESS, revisions=False)
    # The large on-time event is one of the counted ones, not a reject.
    on_time_source = source_in(log, on_time_big)
    assert on_time_source not in expected.rejects and on_time_source not in expected.late


def test_rejects_sharing_a_producer_batch_with_an_oversized_one_are_written_intact(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    # Under the producer's batch size, the oversized reject travels in one batch
    # with its neighbours, and the broker refuses that whole batch.
    input_topic = topic_factory(partitions=1, config=BIG_TOPIC)
    topics = output_topics(topic_factory)
    topics["dlq"] = topic_factory(partitions=1, config={"max.message.bytes": "100000"})
    big = login(BASE + 30, "big-user", app=incompressible(200_000))
    messages = [(0, b"k", varied_login(BASE + i, i)) for i in range(10)]
    messages += [(0, b"s1", b"bad one"), (0, b"big", big), (0, b"s2", b"bad two")]
    messages += [(0, b"k", varied_login(BASE + 10 + i, i)) for i in range(10)]
    produce(kafka_brokers, input_topic, messages, config=BIG_PRODUCER)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True)
    run_to_end(env, tmp_path)

    dlq = consume_all(kafka_brokers, topics["dlq"])
    shown = [(r.key, r.headers) for r in dlq]
    assert sorted(record.key or b"" for record in dlq) == [b"big", b"s1", b"s2"], shown
    by_key = {record.key: record.headers for record in dlq}
    assert {key: headers.get("truncated") for key, headers in by_key.items()} == {
        b"s1": None,
        b"big": str(len(big)).encode(),
        b"s2": None,
    }, f"only the oversized reject may be truncated: {shown}"
    assert {key: headers.get("error") for key, headers in by_key.items()} == {
        b"s1": b"invalid_json",
        b"big": b"too_long:app_version",
        b"s2": b"invalid_json",
    }, shown
    check_accounted(
        collect(kafka_brokers, topics), read_log(kafka_brokers, input_topic), WINDOW, LATENESS, revisions=False
    )
