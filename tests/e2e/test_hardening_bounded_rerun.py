"""Issue 10: bounded runs repeated on one recovery directory, then the same directory in tail mode.

A STOP_AT_END run on a recovery directory that already reached the end counts
what was appended since, revising the windows it touches; a rerun with nothing
new writes nothing at all; and the directory then keeps working in tail mode.
"""

import time
from pathlib import Path

import pytest

from devkit.records import produce
from tests.dataflow_runner import RUN_SCRIPT, DataflowCluster, run_script_env
from tests.hardening import check_accounted, read_log, varied_login, wait_accounted, wait_for_log
from tests.outputs import collect, flow_env, output_topics

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
LATENESS = 2
BASE = 1709251200  # a window boundary, in 2024
RUN_TIMEOUT_S = 120
SLACK_S = 60.0


def run_bounded(env: dict[str, str], tmp_path: Path) -> str:
    with DataflowCluster({**env, "STOP_AT_END": "true"}, tmp_path, command=RUN_SCRIPT) as cluster:
        [finished] = cluster.wait(RUN_TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stderr


def test_bounded_reruns_count_only_what_is_new_and_the_directory_then_tails(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = {
        **flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS),
        **run_script_env(tmp_path / "recovery", 2, 1),
    }

    # Batch 1: windows BASE .. BASE+20 on both partitions, a reject and a late event.
    batch1 = [(0, b"k", varied_login(BASE + i * 0.5, i)) for i in range(40)]
    batch1 += [(0, b"k", b"[1, 2]"), (0, b"k", varied_login(BASE + 1, 7))]
    batch1 += [(1, b"k", varied_login(BASE + 0.3 + i * 0.6, i + 1)) for i in range(30)]
    produce(kafka_brokers, input_topic, batch1)
    run_bounded(env, tmp_path)
    check_accounted(
        collect(kafka_brokers, topics), read_log(kafka_brokers, input_topic), WINDOW, LATENESS, revisions=True
    )

    # Batch 2: on time in batch 1's last window (BASE+15 .. BASE+20), which the
    # first run closed at its end, then later windows; a late event and a reject.
    batch2 = [(0, b"k", varied_login(BASE + 18, 3)), (0, b"k", varied_login(BASE + 19, 1))]
    batch2 += [(0, b"k", varied_login(BASE + 20 + i * 0.7, i)) for i in range(20)]
    batch2 += [(0, b"k", varied_login(BASE + 2, 2)), (0, b"k", b"")]
    batch2 += [(1, b"k", varied_login(BASE + 17, 2)), (1, b"k", varied_login(BASE + 16, 0))]
    batch2 += [(1, b"k", varied_login(BASE + 21 + i * 0.9, i)) for i in range(12)]
    produce(kafka_brokers, input_topic, batch2)
    run_bounded(env, tmp_path)
    out = collect(kafka_brokers, topics)
    check_accounted(out, read_log(kafka_brokers, input_topic), WINDOW, LATENESS, revisions=True)

    # Nothing new: no topic gains a record.
    run_bounded(env, tmp_path)
    again = collect(kafka_brokers, topics)
    assert {name: len(records) for name, records in again.items()} == {
        name: len(records) for name, records in out.items()
    }, "a bounded rerun with nothing new wrote records"

    # The same directory in tail mode: current events, counted once their windows close.
    with DataflowCluster({**env, "STOP_AT_END": "false"}, tmp_path, command=RUN_SCRIPT) as cluster:
        wait_for_log(cluster, lambda text: text.count("reading partition") >= 2, 60, "reading partition lines")
        for i in range(24):
            produce(kafka_brokers, input_topic, [(i % 2, b"k", varied_login(time.time(), i, "tail"))])
            time.sleep(0.1)
        last_produced = time.time()
        log = read_log(kafka_brokers, input_topic)
        timeout = last_produced + WINDOW + LATENESS + SLACK_S - time.time()
        wait_accounted(kafka_brokers, topics, log, WINDOW, LATENESS, timeout, cluster, revisions=True)
