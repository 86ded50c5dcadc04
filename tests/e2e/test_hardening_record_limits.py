"""Issue 22 item 8: no record loginflow writes exceeds what its topic or its producer takes.

Each limit is one run of the real dataflow on the real broker:
- MAX_FIELD_BYTES that would let a login-metrics record outgrow the output
  topic stops the start with one line naming it, the topic and its limit;
  a topic that takes the largest record runs, with the field counted;
- a forwarded message whose key is too large for a small DLQ is cut, key and
  value, with headers saying what was cut;
- a 17 MiB message, on an input topic that takes 20 MiB, is read and goes to
  the DLQ cut to what the producer sends, and the run goes on.
"""

import base64
import os
import uuid
from pathlib import Path

import pytest

from devkit.records import consume_all, delete_topics, produce
from operators.pure.sizes import TRUNCATED_BYTES, largest_field_bytes_within, record_budget
from operators.runtime.settings import Settings
from tests.dataflow_runner import DataflowCluster, Finished
from tests.hardening import check_accounted, login, read_log, source_in, varied_login
from tests.outputs import collect, flow_env, json_of, output_topics, source_of

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 60
LATENESS = 2
BASE = 1709251200
RUN_TIMEOUT_S = 180
BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
BIG_TOPIC = {"max.message.bytes": str(4 * 1024 * 1024)}
HUGE_TOPIC = {"max.message.bytes": str(20 * 1024 * 1024)}
HUGE_PRODUCER = {"message.max.bytes": 32 * 1024 * 1024}
FIELD_BYTES = 100_000
# Control characters: JSON writes each as a six-byte escape, in the input and in login-metrics.
CONTROL_FIELD = "\x01" * FIELD_BYTES


def incompressible(size: int) -> str:
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def run_once(env: dict[str, str], tmp_path: Path) -> Finished:
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:
        [finished] = cluster.wait(RUN_TIMEOUT_S)
    return finished


def produce_control_field_event(brokers: str, topic: str) -> bytes:
    big = login(BASE + 30, "big-user", app=CONTROL_FIELD)
    messages = [(i % 2, b"k", varied_login(BASE + i, i)) for i in range(20)]
    messages.insert(7, (1, b"big", big))
    produce(brokers, topic, messages, config=HUGE_PRODUCER)
    return big


def test_max_field_bytes_too_large_for_the_output_topic_stops_the_start_naming_it(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)  # login-metrics with the broker's default limit
    produce_control_field_event(kafka_brokers, input_topic)
    env = flow_env(
        kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True, MAX_FIELD_BYTES="100000"
    )
    finished = run_once(env, tmp_path)

    assert finished.returncode == 2, finished.stderr[-3000:]
    bound = largest_field_bytes_within(Settings().slices, record_budget(BROKER_DEFAULT_MAX_MESSAGE_BYTES))
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("loginflow: MAX_FIELD_BYTES=100000 lets a record reach "), last
    assert f"OUTPUT_TOPIC={topics['metrics']!r} takes (max.message.bytes={BROKER_DEFAULT_MAX_MESSAGE_BYTES})" in last
    assert f"set MAX_FIELD_BYTES to at most {bound}," in last
    assert consume_all(kafka_brokers, topics["metrics"]) == [], "nothing may be written before the check"


def test_max_field_bytes_an_output_topic_takes_runs_and_counts_the_long_field(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)
    topics["metrics"] = topic_factory(partitions=2, config=BIG_TOPIC)
    produce_control_field_event(kafka_brokers, input_topic)
    env = flow_env(
        kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True, MAX_FIELD_BYTES="100000"
    )
    finished = run_once(env, tmp_path)

    assert finished.returncode == 0, finished.stderr[-3000:]
    out = collect(kafka_brokers, topics)
    check_accounted(
        out, read_log(kafka_brokers, input_topic), WINDOW, LATENESS, revisions=False, max_field_bytes=100000
    )
    long_ones = [r for r in out["metrics"] if json_of(r.value)["key"].get("app_version") == CONTROL_FIELD]
    assert len(long_ones) == 2, "the long field is counted in both slices of app_version"
    assert max(len(r.key or b"") + len(r.value or b"") for r in long_ones) > 12 * FIELD_BYTES


def test_a_key_too_large_for_the_dlq_is_cut_and_the_run_goes_on(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)
    topics["dlq"] = topic_factory(partitions=1, config={"max.message.bytes": "100000"})
    big_key = incompressible(200_000).encode()
    messages = [(i % 2, b"k", varied_login(BASE + i, i)) for i in range(20)]
    messages.insert(5, (0, big_key, b"not json"))
    produce(kafka_brokers, input_topic, messages, config=HUGE_PRODUCER)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True)
    finished = run_once(env, tmp_path)

    assert finished.returncode == 0, finished.stderr[-3000:]
    [cut] = consume_all(kafka_brokers, topics["dlq"])
    assert cut.value == b"not json"
    assert (cut.headers.get("truncated"), cut.headers.get("truncated_key")) == (b"8", b"200000"), cut.headers
    assert cut.headers.get("error") == b"invalid_json", cut.headers
    assert 0 < len(cut.key or b"") < 100_000 and big_key.startswith(cut.key or b"-")
    log = read_log(kafka_brokers, input_topic)
    assert source_of(cut) == source_in(log, b"not json")
    check_accounted(collect(kafka_brokers, topics), log, WINDOW, LATENESS, revisions=False)


def test_a_17_mib_message_is_read_and_goes_to_the_dlq_cut_to_what_the_producer_sends(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    # loginflow creates the DLQ to take what the input takes: 20 MiB, more than its producer sends.
    input_topic = topic_factory(partitions=2, config=HUGE_TOPIC)
    topics = output_topics(topic_factory)
    topics["dlq"] = f"t-dlq-{uuid.uuid4().hex}"
    huge = login(BASE + 30, "huge-user", app=incompressible(17 * 1024 * 1024))
    messages = [(i % 2, b"k", varied_login(BASE + i, i)) for i in range(20)]
    messages.insert(9, (1, b"huge", huge))
    produce(kafka_brokers, input_topic, messages, config=HUGE_PRODUCER)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True)
    try:
        finished = run_once(env, tmp_path)

        assert finished.returncode == 0, finished.stderr[-3000:]
        [cut] = consume_all(kafka_brokers, topics["dlq"])
        assert cut.headers.get("truncated") == str(len(huge)).encode(), cut.headers
        assert cut.headers.get("error") == b"too_long:app_version", cut.headers
        assert (cut.key, cut.value) == (b"huge", huge[:TRUNCATED_BYTES])
        log = read_log(kafka_brokers, input_topic)
        assert source_of(cut) == source_in(log, huge)
        check_accounted(collect(kafka_brokers, topics), log, WINDOW, LATENESS, revisions=False)
    finally:
        delete_topics(kafka_brokers, [topics["dlq"]])
