"""Tail mode: a live dataflow closes windows by wall time once its input is caught up.

An idle (empty) partition must not hold the watermark back, a window is not
emitted before its end plus the allowed lateness, and an event whose window
its partition's log has already passed goes to the late topic instead of
re-opening the window.
"""

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from devkit.broker import wait_until
from devkit.records import consume_all, produce
from devkit.reference import expected_output, iso
from tests.dataflow_runner import DataflowCluster
from tests.evidence import log_texts, partition_starts
from tests.outputs import json_of, read_partitions, source_of

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
LATENESS = 2
# A broker round trip, the dataflow's polling and a busy machine; not part of the contract.
SLACK_S = 30.0


def login(t: float, user: str = "tail-user") -> bytes:
    return json.dumps({"user_id": user, "device_id": "d1", "timestamp": t}).encode()


def broker_timestamps_ms(brokers: str, topic: str, count: int) -> list[int]:
    """The broker timestamps (producer create time) of the first `count` records of partition 0."""
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": f"tail-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        stamps: list[int] = []

        def read() -> bool:
            for message in consumer.consume(num_messages=count, timeout=1.0):
                assert message.error() is None, message.error()
                stamps.append(message.timestamp()[1])
            return len(stamps) >= count

        wait_until(read, timeout=60, message=f"fewer than {count} records in {topic}")
        return stamps[:count]
    finally:
        consumer.close()


def test_last_window_closes_by_wall_time_and_late_events_are_routed(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    output, late = topic_factory(partitions=1), topic_factory(partitions=1)
    env = {
        "KAFKA_BROKERS": kafka_brokers,
        "INPUT_TOPIC": input_topic,
        "OUTPUT_TOPIC": output,
        "DLQ_TOPIC": topic_factory(partitions=1),
        "LATE_TOPIC": late,
        "WINDOW_SECONDS": str(WINDOW),
        "ALLOWED_LATENESS_SECONDS": str(LATENESS),
        "SLICES": "user_id+device_id:1",
        "LOG_FORMAT": "kv",
    }
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:

        def reading_every_partition() -> bool:
            assert not cluster.any_exited(), f"the dataflow exited:\n{cluster.tail()}"
            return sorted(partition_starts(log_texts(cluster.logs))) == [0, 1]

        # Deadlines start once the dataflow reads, not while it starts up.
        wait_until(
            reading_every_partition,
            timeout=120,
            interval=0.2,
            message=f"the dataflow never started reading both partitions:\n{cluster.tail()}",
        )

        # Partition 1 stays empty for the whole test: it must not hold windows open.
        now = time.time()
        window_start = int(now // WINDOW) * WINDOW
        closes_at = window_start + WINDOW + LATENESS
        produce(kafka_brokers, input_topic, [(0, b"k", login(now)) for _ in range(3)])

        # The window [start, start+WINDOW) may close only once wall time passes
        # its end plus the allowed lateness; allow generous slack on top.
        records = wait_until(
            lambda: consume_all(kafka_brokers, output),
            timeout=max(closes_at + SLACK_S - time.time(), SLACK_S),
            message="the last window was not emitted by wall-clock progress",
        )
        values = [json_of(r.value) for r in records]
        assert [(v["key"]["user_id"], v["count"]) for v in values] == [("tail-user", 3)]
        assert values[0]["window_start"] == iso(window_start)
        (emitted_ms,) = broker_timestamps_ms(kafka_brokers, output, 1)
        assert emitted_ms >= closes_at * 1000, (
            f"emitted {closes_at - emitted_ms / 1000:.3f}s before its end plus the allowed lateness"
        )

        # Move partition 0's log past the window's end plus the lateness, then
        # send the window again: late (by its log, not by wall time), not a revision.
        produce(kafka_brokers, input_topic, [(0, b"k", login(closes_at)), (0, b"k", login(window_start + 1))])
        late_records = wait_until(
            lambda: consume_all(kafka_brokers, late),
            timeout=SLACK_S,
            message="the late event did not reach the late topic",
        )
        inputs = read_partitions(kafka_brokers, input_topic)
        expected = expected_output(inputs, WINDOW, LATENESS, slices=((("user_id", "device_id"), 1),))
        assert {source_of(r): (r.headers["window_start"] or b"").decode() for r in late_records} == expected.late
        assert [r.value for r in late_records] == [login(window_start + 1)]
        first_window = [
            r for r in consume_all(kafka_brokers, output) if json_of(r.value)["window_start"] == iso(window_start)
        ]
        assert len(first_window) == 1, f"the closed window was emitted again: {first_window}"
