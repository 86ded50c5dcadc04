"""Reading a run's output topics back and checking them against the batch answer."""

import json
from collections import defaultdict

from tests.kafka_harness import Record, consume_all
from tests.reference import Expected, MetricKey

Inputs = dict[int, list[bytes | None]]


def read_partitions(brokers: str, topic: str) -> Inputs:
    """The input as the broker holds it, per partition in offset order."""
    by_partition: dict[int, list[tuple[int, bytes | None]]] = defaultdict(list)
    for record in consume_all(brokers, topic):
        by_partition[record.partition].append((record.offset, record.value))
    result = {}
    for partition, rows in by_partition.items():
        rows.sort()
        assert [offset for offset, _ in rows] == list(range(len(rows))), "input offsets must be dense"
        result[partition] = [value for _, value in rows]
    return result


def source_of(record: Record) -> tuple[int, int]:
    return int(record.headers["source_partition"] or b"-1"), int(record.headers["source_offset"] or b"-1")


def dedupe(records: list[Record], key_of, allow_duplicates: bool) -> dict:
    """Records by identity; a repeated identity must repeat the record byte for byte."""
    first: dict = {}
    for record in records:
        identity = key_of(record)
        if identity in first:
            assert allow_duplicates, f"emitted twice: {identity}"
            earlier = first[identity]
            assert (record.key, record.value, record.headers) == (earlier.key, earlier.value, earlier.headers), (
                f"a re-emitted record differs from its first copy: {identity}"
            )
            continue
        first[identity] = record
    return first


def latest_by_key(records: list[Record]) -> dict:
    """The last record of each Kafka key, as a compacted topic keeps it.

    A window closed before its partitions' logs passed it (idle progress, the
    end of a bounded run) may be revised by a later record with the same key.
    A revision only ever adds counts, so each key's counts must not fall.
    """
    latest: dict = {}
    for record in records:
        earlier = latest.get(record.key)
        if earlier is not None:
            before, after = json.loads(earlier.value)["count"], json.loads(record.value)["count"]
            assert after >= before, f"a revision lowered a count from {before} to {after}: {record.key!r}"
        latest[record.key] = record
    return latest


def assert_exact(out: dict[str, list[Record]], expected: Expected, inputs: Inputs,
                 allow_duplicates: bool = False, revisions: bool = False) -> None:
    """Metrics, rejects and late events all equal the batch answer.

    With `allow_duplicates` (runs that crashed and resumed), repeats are
    allowed only as byte-identical copies, which a compacted topic or a
    consumer deduplicating by key collapses into the no-failure answer.
    With `revisions` (tail mode with idle progress, bounded reruns), the
    latest record per key is the answer, as in a compacted topic.
    """
    if revisions:
        metrics_by_key = latest_by_key(out["metrics"])
    else:
        metrics_by_key = dedupe(out["metrics"], lambda r: r.key, allow_duplicates)
    metrics: dict[MetricKey, int] = {}
    for key, record in metrics_by_key.items():
        value = json.loads(record.value)
        assert json.loads(key) == [value["window_start"], value["slice"], *value["key"].values()]
        metric_key = (value["window_start"], value["slice"], tuple(value["key"].values()))
        assert metric_key not in metrics, f"two Kafka keys for one metric: {metric_key}"
        metrics[metric_key] = value["count"]
    assert metrics == expected.metrics

    rejects = dedupe(out["dlq"], source_of, allow_duplicates)
    for (partition, offset), record in rejects.items():
        assert record.value == inputs[partition][offset], "DLQ must carry the original bytes"
    assert {source: (r.headers["error"] or b"").decode() for source, r in rejects.items()} == expected.rejects

    late = dedupe(out["late"], source_of, allow_duplicates)
    for (partition, offset), record in late.items():
        assert record.value == inputs[partition][offset], "the late topic must carry the original bytes"
    assert {source: (r.headers["window_start"] or b"").decode() for source, r in late.items()} == expected.late


def collect(brokers: str, topics: dict[str, str]) -> dict[str, list[Record]]:
    return {name: consume_all(brokers, topic) for name, topic in topics.items()}


def output_topics(topic_factory) -> dict[str, str]:
    """Fresh metrics, DLQ and late topics, named as `collect` and `assert_exact` expect."""
    return {name: topic_factory(partitions=1) for name in ("metrics", "dlq", "late")}


def flow_env(brokers: str, input_topic: str, topics: dict[str, str], **settings: str) -> dict[str, str]:
    """The dataflow's environment for one run."""
    return {
        "KAFKA_BROKERS": brokers,
        "INPUT_TOPIC": input_topic,
        "OUTPUT_TOPIC": topics["metrics"],
        "DLQ_TOPIC": topics["dlq"],
        "LATE_TOPIC": topics["late"],
        **settings,
    }
