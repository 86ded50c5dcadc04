"""Tail mode: a live dataflow closes windows by wall time once its input is caught up.

An idle (empty) partition must not hold the watermark back, and an event that
arrives after its window closed goes to the late topic instead of re-opening it.
"""

import json
import time
from pathlib import Path

import pytest

from tests.dataflow_runner import DataflowCluster
from tests.kafka_harness import consume_all, produce, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
LATENESS = 2
# Start-up of the dataflow and a broker round trip; not part of the contract.
SLACK_S = 20.0


def login(t: float, user: str = "tail-user") -> bytes:
    return json.dumps({"user_id": user, "device_id": "d1", "timestamp": t}).encode()


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
    }
    with DataflowCluster(env, tmp_path, processes=1, workers=2):
        # Partition 1 stays empty for the whole test: it must not hold windows open.
        now = time.time()
        window_start = int(now // WINDOW) * WINDOW
        produce(kafka_brokers, input_topic, [(0, b"k", login(now)) for _ in range(3)])

        # The window [start, start+WINDOW) may close only once wall time passes
        # its end plus the allowed lateness; allow start-up slack on top.
        deadline = window_start + WINDOW + LATENESS + SLACK_S - time.time()
        records = wait_until(lambda: consume_all(kafka_brokers, output), timeout=deadline,
                             message="the last window was not emitted by wall-clock progress")
        values = [json.loads(r.value) for r in records]
        assert [(v["key"]["user_id"], v["count"]) for v in values] == [("tail-user", 3)]
        assert values[0]["window_start"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(window_start))

        # The same window again, now that it was emitted: late, not a second record.
        produce(kafka_brokers, input_topic, [(0, b"k", login(window_start + 1))])
        late_records = wait_until(lambda: consume_all(kafka_brokers, late), timeout=SLACK_S,
                                  message="the late event did not reach the late topic")
        assert [r.value for r in late_records] == [login(window_start + 1)]
        assert len(consume_all(kafka_brokers, output)) == 1
