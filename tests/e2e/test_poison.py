"""Poison input at scale: every bad kind, random bytes up to about 1 MB, nothing lost."""

from pathlib import Path

import pytest

from devkit.generator.events import MAX_BAD_SIZE_LIMIT, GeneratorConfig, generate, summarize
from devkit.records import produce
from devkit.reference import expected_output
from tests.dataflow_runner import DataflowCluster
from tests.evidence import error_lines, read_to_end
from tests.outputs import assert_exact, collect, flow_env, output_topics, read_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def test_five_percent_poison_is_all_on_the_dlq(kafka_brokers: str, topic_factory, tmp_path: Path) -> None:
    input_topic = topic_factory(partitions=3)
    config = GeneratorConfig(
        count=200_000,
        users=5000,
        partitions=3,
        bad_fraction=0.05,
        max_bad_size=MAX_BAD_SIZE_LIMIT,
        late_fraction=0.01,
        seed=99,
    )
    messages = list(generate(config))
    kinds = summarize(messages)
    bad = sum(n for kind, n in kinds.items() if kind.startswith("bad:"))
    produce(kafka_brokers, input_topic, [(m.partition, m.key, m.value) for m in messages])

    topics = output_topics(topic_factory)
    env = flow_env(kafka_brokers, input_topic, topics, bounded=True, LOG_FORMAT="kv")
    with DataflowCluster(env, tmp_path, processes=2, workers=1) as cluster:
        results = cluster.wait(300)
    for finished in results:
        assert finished.returncode == 0, finished.stderr[-3000:]
    texts = [finished.stderr for finished in results]
    assert error_lines(texts) == []

    out = collect(kafka_brokers, topics)
    # The generator's own count of what it made bad, a second oracle beside devkit.reference.
    assert len(out["dlq"]) == bad
    assert max(len(r.value or b"") for r in out["dlq"]) > 500_000, "the large poison reached the DLQ whole"
    inputs = read_partitions(kafka_brokers, input_topic)
    assert read_to_end(texts) == {partition: len(values) for partition, values in inputs.items()}
    assert_exact(out, expected_output(inputs, 60, 10), inputs)
