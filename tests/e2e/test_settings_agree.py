"""Issue 22 (6): settings that decide something must agree across processes and across a resume.

A process started with another ALLOWED_LATENESS_SECONDS, MAX_FIELD_BYTES,
PSEUDONYMIZE... would decide the same message differently from its peers, and
a resume under another value could count a replayed message that the first
run rejected. Both stop with one line naming the setting and both values.
"""

import time
from pathlib import Path

import pytest

from devkit.records import consume_all, produce
from tests.dataflow_runner import DataflowCluster, init_recovery
from tests.hardening import varied_login
from tests.outputs import TopicFactory, flow_env, output_topics

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
RUN_TIMEOUT_S = 90.0


def logins(partitions: int, per_partition: int, prefix: str) -> list[tuple[int, bytes, bytes]]:
    start = time.time() - 600
    return [
        (partition, b"k", varied_login(start + i, i, f"{prefix}{partition}"))
        for partition in range(partitions)
        for i in range(per_partition)
    ]


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_a_resume_under_another_lateness_stops_with_one_line(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    recovery = init_recovery(tmp_path / "recovery")
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=2, bounded=True)
    produce(kafka_brokers, input_topic, logins(2, 20, "a"))
    (first,) = DataflowCluster(env, tmp_path, extra_args=recovery).start().wait(RUN_TIMEOUT_S)
    assert first.returncode == 0, first.stderr[-3000:]
    written = len(consume_all(kafka_brokers, topics["metrics"]))
    assert written > 0

    # More input, so the resumed run has shards to restore and counts to merge.
    produce(kafka_brokers, input_topic, logins(2, 20, "b"))
    changed = {**env, "ALLOWED_LATENESS_SECONDS": "5"}
    (second,) = DataflowCluster(changed, tmp_path, extra_args=recovery).start().wait(RUN_TIMEOUT_S)
    assert second.returncode != 0, second.stderr[-3000:]
    assert last_line(second.stderr).startswith(
        "loginflow: ALLOWED_LATENESS_SECONDS: recovery state was written with 2.0, now 5.0;"
    ), second.stderr[-3000:]
    assert len(consume_all(kafka_brokers, topics["metrics"])) == written

    # Back to the value it was written with, the resume goes on.
    (third,) = DataflowCluster(env, tmp_path, extra_args=recovery).start().wait(RUN_TIMEOUT_S)
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(consume_all(kafka_brokers, topics["metrics"])) > written


def test_processes_that_disagree_on_max_field_bytes_stop_with_one_line(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=2, bounded=True)
    produce(kafka_brokers, input_topic, logins(2, 20, "a"))
    cluster = DataflowCluster(env, tmp_path, processes=2, process_env=[{}, {"MAX_FIELD_BYTES": "64"}])
    with cluster:
        results = cluster.wait(RUN_TIMEOUT_S)
    told = [
        finished
        for finished in results
        if "MAX_FIELD_BYTES: the processes of this dataflow disagree" in finished.stderr
    ]
    assert told, "\n---\n".join(finished.stderr[-2000:] for finished in results)
    line = last_line(told[0].stderr)
    assert line.startswith("loginflow: MAX_FIELD_BYTES: the processes of this dataflow disagree:"), line
    assert "1024" in line and "64" in line, line
    assert all(finished.returncode != 0 for finished in results)
    assert consume_all(kafka_brokers, topics["metrics"]) == []
