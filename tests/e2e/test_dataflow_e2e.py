"""The real dataflow against a real broker: skewed partitions, bad and late input.

The input has one partition with 100 times the events of another over the
same event-time span. Each layout (1 worker, 2 workers, 2 processes) must give
exactly the batch answer computed independently in `devkit.reference`.
"""

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from devkit.generator.events import GeneratorConfig, generate
from devkit.records import delete_topics, produce
from devkit.reference import expected_output
from tests.dataflow_runner import DataflowCluster
from tests.evidence import error_lines, read_to_end
from tests.outputs import assert_exact, collect, flow_env, output_topics, read_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 60
LATENESS = 10
RUN_TIMEOUT_S = 240


def run_and_collect(
    brokers: str, topic_factory, input_topic: str, log_dir: Path, processes: int, workers: int, inputs: dict[int, list]
) -> dict[str, list]:
    topics = output_topics(topic_factory)
    env = flow_env(brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True, LOG_FORMAT="kv")
    cluster = DataflowCluster(env, log_dir, processes=processes, workers=workers)
    with cluster:
        results = cluster.wait(RUN_TIMEOUT_S)
    for finished in results:
        assert finished.returncode == 0, finished.stderr[-3000:]
    texts = [finished.stderr for finished in results]
    # Whatever its wording, a problem the product noticed (such as counts for a
    # window it had already closed) is logged at ERROR level.
    assert error_lines(texts) == []
    # The bounded run read every partition to the end it had at the start.
    assert read_to_end(texts) == {partition: len(values) for partition, values in inputs.items()}
    out = collect(brokers, topics)
    assert [r for r in out["dlq"] if r.headers.get("error") == b"window_closed"] == []
    return out


def test_skewed_partitions_match_batch_answer_in_every_layout(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=3)
    config = GeneratorConfig(
        count=30_300,
        users=300,
        partitions=3,
        skew=(100.0, 10.0, 1.0),
        span=3600.0,
        bad_fraction=0.03,
        late_fraction=0.02,
        late_by=300.0,
        seed=11,
    )
    produce(kafka_brokers, input_topic, [(m.partition, m.key, m.value) for m in generate(config)])

    inputs = read_partitions(kafka_brokers, input_topic)
    expected = expected_output(inputs, WINDOW, LATENESS)

    for processes, workers in ((1, 1), (1, 2), (2, 1)):
        out = run_and_collect(kafka_brokers, topic_factory, input_topic, tmp_path, processes, workers, inputs)
        assert_exact(out, expected, inputs)


def test_missing_output_topics_are_created_and_metrics_is_compacted(
    kafka_brokers: str, topic_factory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    produce(
        kafka_brokers,
        input_topic,
        [(m.partition, m.key, m.value) for m in generate(GeneratorConfig(count=500, partitions=2, seed=1))],
    )
    suffix = uuid.uuid4().hex
    topics = {name: f"created-{name}-{suffix}" for name in ("metrics", "dlq", "late")}
    env = flow_env(kafka_brokers, input_topic, topics, bounded=True)
    try:
        with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:
            (finished,) = cluster.wait(RUN_TIMEOUT_S)
        assert finished.returncode == 0, finished.stderr[-3000:]
        admin = AdminClient({"bootstrap.servers": kafka_brokers})
        resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics.values()]
        policies = {
            resource.name: configs["cleanup.policy"].value
            for resource, future in admin.describe_configs(resources).items()
            for configs in [future.result(timeout=30)]
        }
        assert policies == {topics["metrics"]: "compact,delete", topics["dlq"]: "delete", topics["late"]: "delete"}
        assert len(collect(kafka_brokers, topics)["metrics"]) > 0
    finally:
        delete_topics(kafka_brokers, topics.values())
