"""Issue 10: an in-order producer whose clock lags far behind, with pauses.

Lateness is decided by the log alone: an in-order partition never produces a
late event, whatever its producer's clock says and however long it pauses.
Pauses longer than window + lateness let idle progress close windows early;
on-time counts that arrive after that are revisions of the same keys.
"""

import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.dataflow_runner import DataflowCluster
from tests.hardening import read_log, varied_login, wait_accounted, wait_for_log
from tests.outputs import flow_env, output_topics

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
LATENESS = 2
CLOCK_LAG_S = 30.0  # fifteen times the allowed lateness
SLACK_S = 60.0
# (seconds producing, seconds paused): every pause is longer than window + lateness.
SCHEDULE = ((6.0, 10.0), (5.0, 12.0), (4.0, 8.0), (4.0, 0.0))
INTERVAL_S = 0.25


def lagging_producer(brokers: str, topic: str, stop: threading.Event, errors: list[BaseException]) -> None:
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True})
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    try:
        index = 0
        last = 0.0
        for producing, paused in SCHEDULE:
            until = time.monotonic() + producing
            while time.monotonic() < until and not stop.is_set():
                # In order, whatever the wall clock does.
                last = max(last, time.time() - CLOCK_LAG_S)
                producer.produce(
                    topic, value=varied_login(last, index, "lag"), key=b"k", partition=0, on_delivery=on_delivery
                )
                assert producer.flush(30) == 0, "a message stayed undelivered"
                assert not failures, failures
                index += 1
                time.sleep(INTERVAL_S)
            if stop.wait(paused):
                return
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)


def test_lagging_in_order_producer_with_pauses_has_no_late_events(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)  # partition 1 never gets an event
    topics = output_topics(topic_factory)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS)
    stop = threading.Event()
    errors: list[BaseException] = []
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:
        wait_for_log(cluster, lambda text: text.count("reading partition") >= 2, 60, "reading partition lines")
        thread = threading.Thread(target=lagging_producer, args=(kafka_brokers, input_topic, stop, errors))
        thread.start()
        try:
            thread.join(timeout=120)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not errors, errors
        stopped = time.time()
        assert not cluster.any_exited(), cluster.tail()

        log = read_log(kafka_brokers, input_topic)
        assert set(log) == {0} and len(log[0]) > 50
        timeout = stopped + WINDOW + LATENESS + SLACK_S - time.time()
        out = wait_accounted(kafka_brokers, topics, log, WINDOW, LATENESS, timeout, cluster, revisions=True)
    assert out["late"] == [], f"an in-order partition produced late events: {out['late'][:3]}"
    assert out["dlq"] == []
