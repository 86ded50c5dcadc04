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
METRICS_TOPIC = {"max.message.bytes": str(8 * 1024 * 1024)}
FIELD_BYTES = 300_000


def incompressible(size: int) -> str:
    """Random text: the sink compresses, and the broker's limit applies to the compressed batch."""
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def run_once(env: dict[str, str], tmp_path: Path) -> Finished:
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:
        [finished] = cluster.wait(RUN_TIMEOUT_S)
    return finished


def produce_long_fields_event(brokers: str, topic: str) -> tuple[str, str]:
    """An event whose app_version+device_type record, about 1.2 MB, exceeds the broker's default limit."""
    app, device_type = incompressible(FIELD_BYTES), incompressible(FIELD_BYTES)
    messages = [(i % 2, b"k", varied_login(BASE + i, i)) for i in range(20)]
    messages.insert(7, (1, b"big", login(BASE + 30, "big-user", app=app, device_type=device_type)))
    produce(brokers, topic, messages, config=HUGE_PRODUCER)
    return app, device_type


def long_fields_env(brokers: str, input_topic: str, topics: dict[str, str]) -> dict[str, str]:
    limit = str(FIELD_BYTES)
    return flow_env(brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True, MAX_FIELD_BYTES=limit)


def test_max_field_bytes_too_large_for_the_output_topic_stops_the_start_naming_it(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)  # login-metrics with the broker's default limit
    produce_long_fields_event(kafka_brokers, input_topic)
    finished = run_once(long_fields_env(kafka_brokers, input_topic, topics), tmp_path)

    assert finished.returncode == 2, finished.stderr[-3000:]
    bound = largest_field_bytes_within(Settings().slices, record_budget(BROKER_DEFAULT_MAX_MESSAGE_BYTES))
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith(f"loginflow: MAX_FIELD_BYTES={FIELD_BYTES} lets a record reach "), last
    assert f"OUTPUT_TOPIC={topics['metrics']!r} takes (max.message.bytes={BROKER_DEFAULT_MAX_MESSAGE_BYTES})" in last
    assert f"set MAX_FIELD_BYTES to at most {bound}," in last
    assert consume_all(kafka_brokers, topics["metrics"]) == [], "nothing may be written before the check"


def test_max_field_bytes_an_output_topic_takes_runs_and_counts_the_long_fields(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2, config=BIG_TOPIC)
    topics = output_topics(topic_factory)
    topics["metrics"] = topic_factory(partitions=2, config=METRICS_TOPIC)
    app, device_type = produce_long_fields_event(kafka_brokers, input_topic)
    finished = run_once(long_fields_env(kafka_brokers, input_topic, topics), tmp_path)

    assert finished.returncode == 0, finished.stderr[-3000:]
    out = collect(kafka_brokers, topics)
    log = read_log(kafka_brokers, input_topic)
    check_accounted(out, log, WINDOW, LATENESS, revisions=False, max_field_bytes=FIELD_BYTES)
    [both] = [r for r in out["metrics"] if json_of(r.value)["key"] == {"app_version": app, "device_type": device_type}]
    assert len(both.key or b"") + len(both.value or b"") > BROKER_DEFAULT_MAX_MESSAGE_BYTES


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
