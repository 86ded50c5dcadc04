"""Issue 10: partitions added to the input topic while the dataflow runs.

Within 30 s the dataflow exits non-zero, saying the topic grew. Restarted on
the same recovery directory it reads the new partition from its beginning
(also with START_OFFSET=latest, which only applies without recovery state) and
every message of all three partitions is accounted for.
"""

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions

from devkit.broker import wait_until
from devkit.records import consume_all, produce
from tests.dataflow_runner import RUN_SCRIPT, DataflowCluster, run_script_env
from tests.hardening import (
    kv_field,
    read_log,
    reading_lines,
    varied_login,
    wait_accounted,
    wait_for_log,
)
from tests.outputs import flow_env, output_topics

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
LATENESS = 2
GROWTH_NOTICE_S = 30.0  # the contract
SLACK_S = 45.0


def current_events(partition: int, count: int, prefix: str) -> list[tuple[int, bytes, bytes]]:
    return [(partition, b"k", varied_login(time.time() + i * 0.05, i, prefix)) for i in range(count)]


def add_partitions(brokers: str, topic: str, total: int) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_partitions([NewPartitions(topic, total)], operation_timeout=30)[topic].result(timeout=30)

    def ready() -> bool:
        meta = admin.list_topics(topic=topic, timeout=5.0).topics[topic]
        return len(meta.partitions) == total and all(p.leader >= 0 for p in meta.partitions.values())

    wait_until(ready, timeout=30, message=f"{topic} did not reach {total} partitions", retry_on=(KafkaException,))


@pytest.mark.parametrize(
    ("start_offset", "processes"),
    [
        pytest.param("earliest", 1, id="earliest-1-process"),
        pytest.param("latest", 1, id="latest-1-process"),
        # One partition per process after the growth: the process reading the new
        # partition has no resumed partition of its own to tell it that this is a resume.
        pytest.param("latest", 3, id="latest-3-processes"),
    ],
)
def test_added_partition_stops_the_run_and_is_read_from_its_beginning_after_restart(
    kafka_brokers: str, topic_factory, tmp_path: Path, start_offset: str, processes: int
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = {
        **flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, START_OFFSET=start_offset),
        **run_script_env(tmp_path / "recovery", 2, 1),
    }

    with DataflowCluster(env, tmp_path, processes=processes, command=RUN_SCRIPT) as first:
        # With START_OFFSET=latest, only what is produced after the readers started is read.
        wait_for_log(first, lambda text: len(reading_lines(text)) >= 2, 60, "reading partition lines")
        produce(kafka_brokers, input_topic, [*current_events(0, 12, "a"), (0, b"k", b"nope")])
        produce(kafka_brokers, input_topic, current_events(1, 10, "b"))
        wait_until(
            lambda: consume_all(kafka_brokers, topics["metrics"]) or first.any_exited(),
            timeout=60,
            message="no window was emitted before the topic grew",
        )
        assert not first.any_exited(), first.tail()

        add_partitions(kafka_brokers, input_topic, 3)
        grown_at = time.monotonic()
        now = time.time()
        produce(
            kafka_brokers,
            input_topic,
            [
                *current_events(2, 10, "c"),
                (2, b"k", b"{}"),  # a reject on the new partition
                (2, b"k", varied_login(now - 60, 1, "c")),  # late by partition 2's own log
            ],
        )
        results = first.wait(max(1.0, grown_at + GROWTH_NOTICE_S + SLACK_S - time.monotonic()))
    notice = f"INPUT_TOPIC='{input_topic}' grew from 2 to 3 partitions"
    told = [finished for finished in results if notice in finished.stderr]
    assert told, f"no process said {notice!r}:\n{results[0].stderr[-3000:]}"
    assert all(finished.returncode != 0 for finished in told), told[0].stderr[-3000:]

    with DataflowCluster(env, tmp_path, processes=processes, command=RUN_SCRIPT) as second:
        text = wait_for_log(second, lambda text: len(reading_lines(text)) >= 3, 60, "reading lines for 3 partitions")
        lines = {kv_field(line, "partition"): line for line in reading_lines(text)}
        assert set(lines) == {"0", "1", "2"}, lines
        assert kv_field(lines["2"], "start_offset") == "0", lines["2"]
        assert kv_field(lines["2"], "resumed") == "False", lines["2"]
        assert kv_field(lines["0"], "resumed") == "True", lines["0"]

        produce(
            kafka_brokers,
            input_topic,
            [*current_events(0, 4, "d"), *current_events(1, 4, "d"), *current_events(2, 4, "d")],
        )
        last_produced = time.time()
        log = read_log(kafka_brokers, input_topic)
        assert set(log) == {0, 1, 2}
        timeout = last_produced + WINDOW + LATENESS + SLACK_S - time.time()
        out = wait_accounted(
            kafka_brokers, topics, log, WINDOW, LATENESS, timeout, second, revisions=True, allow_duplicates=True
        )
    assert {record.headers.get("source_partition") for record in out["late"]} == {b"2"}
