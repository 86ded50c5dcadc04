"""Issue 22 (3): an output topic whose partition count changed under a recovery directory.

Records are placed by the murmur2 hash of their key over the partition count.
With more partitions, a replayed record or a revision lands in another
partition than its first copy: exactly-once's read-back of its own partition
misses it, and "latest record per key" then spans two partitions with no
order between them. A resume onto such a topic stops with one line.
"""

import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions

from devkit.records import consume_all, produce
from tests.dataflow_runner import DataflowCluster, init_recovery
from tests.hardening import varied_login
from tests.outputs import TopicFactory, flow_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

RUN_TIMEOUT_S = 90.0


def logins(prefix: str, count: int) -> list[tuple[int, bytes, bytes]]:
    start = time.time() - 900
    return [(i % 2, b"k", varied_login(start + i * 3, i, prefix)) for i in range(count)]


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_resume_onto_an_output_topic_with_more_partitions_stops_with_one_line(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path, guarantee: str
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = {"metrics": topic_factory(partitions=2), "dlq": topic_factory(1), "late": topic_factory(1)}
    env = flow_env(
        kafka_brokers,
        input_topic,
        topics,
        window=5,
        lateness=2,
        bounded=True,
        PROCESSING_GUARANTEE=guarantee,
        TRANSACTIONAL_ID_PREFIX=f"parts-{guarantee}-{time.monotonic_ns()}",
    )
    recovery = init_recovery(tmp_path / "recovery")
    produce(kafka_brokers, input_topic, logins("a", 60))
    (first,) = DataflowCluster(env, tmp_path, extra_args=recovery).start().wait(RUN_TIMEOUT_S)
    assert first.returncode == 0, first.stderr[-3000:]
    written = len(consume_all(kafka_brokers, topics["metrics"]))
    assert written > 0

    admin = AdminClient({"bootstrap.servers": kafka_brokers})
    admin.create_partitions([NewPartitions(topics["metrics"], 4)])[topics["metrics"]].result(timeout=30)
    produce(kafka_brokers, input_topic, logins("b", 60))
    (second,) = DataflowCluster(env, tmp_path, extra_args=recovery).start().wait(RUN_TIMEOUT_S)
    assert second.returncode != 0, second.stderr[-3000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"loginflow: OUTPUT_TOPIC='{topics['metrics']}' has 4 partitions, the recovery state was written with 2:"
    ), second.stderr[-3000:]
    assert len(consume_all(kafka_brokers, topics["metrics"])) == written
