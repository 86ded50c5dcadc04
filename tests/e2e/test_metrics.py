"""Scrape /metrics during a live run: the counters equal the batch answer of devkit.reference.

The same scrape feeds the coverage check of the Grafana dashboards and the
alert rules (tests/monitoring.py): every metric and label they query must
be among what the run exported. The run is at-least-once: the commit
latency histogram has no labels, so it is exported, empty, in every run
(tests/integration/test_commit_metric.py shows each commit observed).
"""

import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.broker import free_port, wait_until
from devkit.generator.events import GeneratorConfig, generate
from devkit.records import produce
from devkit.reference import expected_output, metrics_from_records
from tests.dataflow_runner import DataflowCluster
from tests.monitoring import Exported, missing
from tests.outputs import collect, flow_env, output_topics, read_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def exported(samples: dict) -> Exported:
    """Sample name -> every label name it was exported with."""
    found: dict[str, frozenset[str]] = {}
    for name, labels in samples:
        found[name] = found.get(name, frozenset()) | {label for label, _ in labels}
    return found


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (sample, labels), value in samples.items() if sample == name and value}


def test_metrics_endpoint_counts_what_the_run_produced(kafka_brokers: str, topic_factory, tmp_path: Path) -> None:
    input_topic = topic_factory(partitions=3)
    config = GeneratorConfig(count=20_000, users=500, partitions=3, bad_fraction=0.05, late_fraction=0.02, seed=8)
    produce(kafka_brokers, input_topic, [(m.partition, m.key, m.value) for m in generate(config)])
    inputs = read_partitions(kafka_brokers, input_topic)
    expected = expected_output(inputs, 60, 10)

    topics = output_topics(topic_factory)
    port = free_port()
    # Tail mode, so the process keeps serving /metrics after the last window:
    # historic event times close every window once all partitions are idle.
    env = flow_env(
        kafka_brokers,
        input_topic,
        topics,
        BYTEWAX_DATAFLOW_API_ENABLED="true",
        BYTEWAX_DATAFLOW_API_PORT=str(port),
        # An existing directory for Bytewax's dataflow.json, not the repo.
        BYTEWAX_DATAFLOW_API_CACHE_PATH=str(tmp_path),
    )
    with DataflowCluster(env, tmp_path, processes=1, workers=2) as cluster:

        def completed() -> bool:
            assert not cluster.any_exited(), f"the dataflow exited:\n{cluster.tail()}"
            records = collect(kafka_brokers, topics)["metrics"]
            return metrics_from_records([r.value for r in records]) == expected.metrics

        wait_until(completed, timeout=120, interval=1.0, message="the run never completed")
        samples = wait_until(lambda: scrape(port), timeout=30, retry_on=(OSError,))
        assert expected.rejects and expected.late, "the input must exercise rejects and late events"
        out = collect(kafka_brokers, topics)

    # Each counter against the independent answer, not against what the run wrote.
    assert by_label(samples, "loginflow_rejects_total", "reason") == {
        reason: float(n) for reason, n in Counter(expected.rejects.values()).items()
    }
    assert by_label(samples, "loginflow_late_events_total", "partition") == {
        str(partition): float(n) for partition, n in Counter(p for p, _ in expected.late).items()
    }
    # Every window closed once its partitions' logs passed it: one record per metric, no revisions.
    assert by_label(samples, "loginflow_records_emitted_total", "slice") == {
        name: float(n) for name, n in Counter(name for _, name, _ in expected.metrics).items()
    }
    read = by_label(samples, "loginflow_messages_read_total", "partition")
    assert read == {str(p): float(len(values)) for p, values in inputs.items()}
    assert samples[("loginflow_closing_watermark_seconds", ())] > 0
    # At-least-once commits no transaction, and the histogram is there all the same.
    assert samples[("loginflow_transaction_commit_seconds_count", ())] == 0
    # No panel of deploy/grafana/dashboards/ and no rule of deploy/prometheus/alerts.yml reads a
    # metric or label this run did not export.
    assert missing(exported(samples)) == []
    assert len(out["metrics"]) == len(expected.metrics)
