"""Issue 10: input written by a transactional producer, read in tail mode.

Commit markers take offsets at the end of each partition's log, so a reader
that compares its next offset with the high watermark never sees itself at
the head. The windows must still close by idle progress, aborted messages must
be invisible (read_committed), and everything committed must be accounted for.
"""

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.dataflow_runner import DataflowCluster
from tests.hardening import check_accounted, log_size, read_log, varied_login, wait_accounted, wait_for_log
from tests.outputs import collect, flow_env, output_topics

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
LATENESS = 2
# Start-up, a broker round trip and a loaded 2-core machine; not part of the contract.
SLACK_S = 60.0
ABORTED_USER = "aborted-user"


def transactional_producer(brokers: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "transactional.id": f"hardening-{uuid.uuid4().hex}",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    producer.init_transactions(30)
    return producer


def send_transaction(producer: Producer, topic: str, messages: list[tuple[int, bytes]], commit: bool) -> None:
    producer.begin_transaction()
    for partition, value in messages:
        producer.produce(topic, value=value, key=b"k", partition=partition)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def aborted_messages() -> list[tuple[int, bytes]]:
    """An aborted transaction's messages; none may be counted, rejected or routed late."""
    now = time.time()
    rows = [(p, varied_login(now, i, ABORTED_USER)) for i, p in enumerate((0, 1, 0, 1, 0, 1))]
    return [*rows, (0, b"aborted-not-json"), (1, varied_login(now - 120, 1, ABORTED_USER))]


def produce_transactions(brokers: str, topic: str, end_with_abort: bool) -> tuple[list[bytes], float]:
    """Committed transactions with an aborted one among them; returns the aborted values and the last end time."""
    producer = transactional_producer(brokers)
    index = 0
    aborted_values: list[bytes] = []

    def batch(count: int, prefix: str = "u") -> list[tuple[int, bytes]]:
        nonlocal index
        rows = []
        for _ in range(count):
            rows.append((index % 2, varied_login(time.time(), index, prefix)))
            index += 1
        return rows

    def abort() -> None:
        rows = aborted_messages()
        aborted_values.extend(value for _, value in rows)
        send_transaction(producer, topic, rows, commit=False)

    # 1: committed, with a reject among the events.
    send_transaction(producer, topic, [*batch(12), (0, b"{not json"), *batch(6)], commit=True)
    time.sleep(1.0)
    abort()
    time.sleep(1.0)
    # 3: committed, with an event whose window is long past on partition 1: late by the log.
    send_transaction(producer, topic, [*batch(10), (1, varied_login(time.time() - 60, 5))], commit=True)
    time.sleep(1.5)
    # 4: the last commit; its markers end both partitions' logs.
    send_transaction(producer, topic, batch(8), commit=True)
    if end_with_abort:
        # Or an abort's markers do.
        time.sleep(0.5)
        abort()
    ended = time.time()
    producer.flush(10)
    return aborted_values, ended


COMMITTED = 12 + 1 + 6 + 10 + 1 + 8


def check_log(brokers: str, topic: str, aborted_values: list[bytes]) -> dict:
    """The committed log, after checking the aborted messages are in the raw log but not in it."""
    raw = read_log(brokers, topic, isolation="read_uncommitted")
    assert set(aborted_values) <= {v for rows in raw.values() for v in rows.values()}, (
        "the aborted messages should be in the raw log, else this test checks nothing"
    )
    log = read_log(brokers, topic)
    assert log_size(log) == COMMITTED
    assert not set(aborted_values) & {v for rows in log.values() for v in rows.values()}
    # Transaction markers make the offsets sparse: the case this test is about.
    assert any(max(rows) + 1 > len(rows) for rows in log.values())
    return log


def check_no_aborted_output(out: dict, aborted_values: list[bytes]) -> None:
    assert len(out["late"]) == 1
    assert len(out["dlq"]) == 1 and out["dlq"][0].value == b"{not json"
    assert all(ABORTED_USER.encode() not in (record.key or b"") for record in out["metrics"])
    for name in ("dlq", "late"):
        assert not {record.value for record in out[name]} & set(aborted_values)


@pytest.mark.parametrize("end_with_abort", [False, True], ids=["log-ends-in-commit", "log-ends-in-abort"])
def test_transactional_input_closes_every_window_and_hides_aborted_messages(
    kafka_brokers: str, topic_factory, tmp_path: Path, end_with_abort: bool
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS)
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:
        wait_for_log(cluster, lambda text: text.count("reading partition") >= 2, 60, "reading partition lines")
        aborted_values, ended = produce_transactions(kafka_brokers, input_topic, end_with_abort)
        log = check_log(kafka_brokers, input_topic, aborted_values)
        timeout = ended + WINDOW + LATENESS + SLACK_S - time.time()
        out = wait_accounted(kafka_brokers, topics, log, WINDOW, LATENESS, timeout, cluster, revisions=True)
        assert not cluster.any_exited(), cluster.tail()

    check_no_aborted_output(out, aborted_values)
    # Still exact a moment later: nothing spurious follows the complete answer.
    check_accounted(collect(kafka_brokers, topics), log, WINDOW, LATENESS, revisions=True)


def test_bounded_run_over_transactional_input_ends_and_is_exact(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    aborted_values, _ = produce_transactions(kafka_brokers, input_topic, end_with_abort=True)
    log = check_log(kafka_brokers, input_topic, aborted_values)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True)
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:
        [finished] = cluster.wait(120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    out = collect(kafka_brokers, topics)
    check_accounted(out, log, WINDOW, LATENESS, revisions=False)
    check_no_aborted_output(out, aborted_values)
