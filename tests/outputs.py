"""Reading a run's output topics back and checking them against the batch answer."""

import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from devkit.records import Record, consume_all, headers_dict, values_by_partition
from devkit.reference import Expected, MetricKey
from operators.pure.encoding import KafkaRecord

Inputs = dict[int, list[bytes | None]]
SourceLog = Mapping[int, Sequence[bytes | None]] | Mapping[int, Mapping[int, bytes | None]]
"""Where an output record's source message is looked up: partition -> offset -> value,
by list position (dense offsets, `Inputs`) or by real offset (`tests.hardening.Log`)."""

K = TypeVar("K", bound=Hashable)


class TopicFactory(Protocol):
    """Type of the ``topic_factory`` fixture: a fresh topic, deleted after the test."""

    def __call__(self, partitions: int = 1, config: Mapping[str, str] | None = None) -> str: ...


def read_partitions(brokers: str, topic: str) -> Inputs:
    """The input as the broker holds it, per partition in offset order (the offsets must be dense)."""
    return values_by_partition(consume_all(brokers, topic))


def json_of(data: bytes | None) -> Any:
    """The JSON in an output record's key or value, which must be there."""
    assert data is not None, "an output record without the key or value it must have"
    return json.loads(data)


def source_of(record: Record | KafkaRecord) -> tuple[int, int]:
    """The (partition, offset) of the input message a DLQ or late record carries."""
    headers = headers_dict(record.headers)
    return int(headers["source_partition"] or b"-1"), int(headers["source_offset"] or b"-1")


def latest_metrics(values: Iterable[bytes | None]) -> dict[MetricKey, int]:
    """The latest count per metric key of login-metrics values in order, as a compacted topic keeps it.

    Revisions only grow: a later record for a key never lowers its count.
    """
    latest: dict[MetricKey, int] = {}
    for value in values:
        metric = json.loads(value or b"")
        key = (metric["window_start"], metric["slice"], tuple(metric["key"].values()))
        assert metric["count"] >= latest.get(key, 0), f"a revision lowered {key}"
        latest[key] = metric["count"]
    return latest


def by_source(
    records: Iterable[Record | KafkaRecord], header: str, inputs: SourceLog | None = None
) -> dict[tuple[int, int], str]:
    """(source partition, source offset) -> the text of header `header`, for DLQ or late records.

    Each source appears once; with `inputs`, each record must carry its source message's bytes.
    """
    found: dict[tuple[int, int], str] = {}
    for record in records:
        source = source_of(record)
        assert source not in found, f"two records for one source message: {source}"
        if inputs is not None:
            assert record.value == inputs[source[0]][source[1]], f"not the source message's bytes: {source}"
        found[source] = (headers_dict(record.headers)[header] or b"").decode()
    return found


def dedupe(records: list[Record], key_of: Callable[[Record], K], allow_duplicates: bool) -> dict[K, Record]:
    """Records by identity; a repeated identity must repeat the record byte for byte."""
    first: dict[K, Record] = {}
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


def latest_by_key(records: list[Record]) -> dict[bytes | None, Record]:
    """The last record of each Kafka key, as a compacted topic keeps it.

    A window closed before its partitions' logs passed it (idle progress, the
    end of a bounded run) may be revised by a later record with the same key.
    A revision only ever adds counts, so each key's counts must not fall.
    """
    latest: dict[bytes | None, Record] = {}
    for record in records:
        earlier = latest.get(record.key)
        if earlier is not None:
            before, after = json_of(earlier.value)["count"], json_of(record.value)["count"]
            assert after >= before, f"a revision lowered a count from {before} to {after}: {record.key!r}"
        latest[record.key] = record
    return latest


def assert_exact(
    out: dict[str, list[Record]],
    expected: Expected,
    inputs: SourceLog,
    allow_duplicates: bool = False,
    revisions: bool = False,
) -> None:
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
        value = json_of(record.value)
        assert json_of(key) == [value["window_start"], value["slice"], *value["key"].values()]
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


def output_topics(topic_factory: TopicFactory) -> dict[str, str]:
    """Fresh metrics, DLQ and late topics, named as `collect` and `assert_exact` expect."""
    return {name: topic_factory(partitions=1) for name in ("metrics", "dlq", "late")}


def flow_env(
    brokers: str,
    input_topic: str,
    topics: dict[str, str],
    *,
    window: int | None = None,
    lateness: float | None = None,
    bounded: bool = False,
    **settings: str,
) -> dict[str, str]:
    """The dataflow's environment for one run: `bounded` stops at the input's end."""
    env = {
        "KAFKA_BROKERS": brokers,
        "INPUT_TOPIC": input_topic,
        "OUTPUT_TOPIC": topics["metrics"],
        "DLQ_TOPIC": topics["dlq"],
        "LATE_TOPIC": topics["late"],
    }
    if window is not None:
        env["WINDOW_SECONDS"] = str(window)
    if lateness is not None:
        env["ALLOWED_LATENESS_SECONDS"] = str(lateness)
    if bounded:
        env["STOP_AT_END"] = "true"
    return {**env, **settings}
