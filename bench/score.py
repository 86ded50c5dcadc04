"""Correctness: a contender's metric records against the exact batch answer.

Every contender emits login-metrics-shaped records. They are compared key by
key with `devkit.reference.expected_output` over the same input (windows from
the trailer on excluded, see `bench.dataset`). Partial counts of one key
emitted several times are summed before the event-level comparison, so a
contender that splits a count is "not exact" but does not count as losing
events; one whose summed count falls short does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import orjson

MetricKey = tuple[str, str, tuple[str, ...]]
"""(window_start ISO, slice name, key values), as `devkit.reference` keys its metrics."""

# The slice whose events are tallied one by one: min_count 1, so every
# counted event appears in exactly one of its records.
CHECKED_SLICE = "app_version+device_type"


@dataclass(frozen=True)
class Score:
    """How a contender's output compares with the batch answer."""

    records: int
    duplicate_keys: int
    matching_records: int
    missing_records: int
    extra_records: int
    wrong_counts: int
    # Per slice: (expected sum of emitted counts, contender's sum).
    slice_sums: dict[str, tuple[int, int]]
    # Events of CHECKED_SLICE the contender did not count / counted too often.
    missed_events: int
    extra_events: int

    @property
    def exact(self) -> bool:
        """Every expected record, once, with its exact count, and nothing else."""
        return (
            self.duplicate_keys == 0
            and self.missing_records == 0
            and self.extra_records == 0
            and self.wrong_counts == 0
        )

    def verdict(self) -> str:
        """PASS, FAILING (loses events) or WRONG (no loss, but not the exact answer)."""
        if self.exact:
            return "PASS"
        if self.missed_events > 0:
            return "FAILING"
        return "WRONG"

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {**asdict(self), "exact": self.exact, "verdict": self.verdict()}


def decode_metrics(values: Iterable[bytes | None]) -> list[tuple[MetricKey, int]]:
    """(key, count) of each login-metrics record value, in emission order."""
    decoded = []
    for raw in values:
        if raw is None:
            continue
        record = orjson.loads(raw)
        fields = record["slice"].split("+")
        key = (record["window_start"], record["slice"], tuple(record["key"][name] for name in fields))
        decoded.append((key, int(record["count"])))
    return decoded


def score(emitted: list[tuple[MetricKey, int]], expected: Mapping[MetricKey, int], scored_before: str) -> Score:
    """Compare emitted records with the expected ones, in windows before `scored_before`."""
    # ISO-8601 instants of one format compare in time order as strings.
    emitted = [(key, count) for key, count in emitted if key[0] < scored_before]
    wanted = {key: count for key, count in expected.items() if key[0] < scored_before}
    times = Counter(key for key, _ in emitted)
    summed: Counter[MetricKey] = Counter()
    for key, count in emitted:
        summed[key] += count

    matching = missing = wrong = extra = 0
    missed_events = extra_events = 0
    for key, count in wanted.items():
        got = summed.get(key)
        if got is None:
            missing += 1
        elif got == count and times[key] == 1:
            matching += 1
        else:
            wrong += 1
        if key[1] == CHECKED_SLICE:
            missed_events += max(0, count - (got or 0))
            extra_events += max(0, (got or 0) - count)
    for key, got in summed.items():
        if key not in wanted:
            extra += 1
            if key[1] == CHECKED_SLICE:
                extra_events += got

    slice_sums: dict[str, tuple[int, int]] = {}
    for (_, name, _), count in wanted.items():
        exp, got_sum = slice_sums.get(name, (0, 0))
        slice_sums[name] = (exp + count, got_sum)
    for (_, name, _), count in emitted:
        exp, got_sum = slice_sums.get(name, (0, 0))
        slice_sums[name] = (exp, got_sum + count)

    return Score(
        records=len(emitted),
        duplicate_keys=sum(1 for n in times.values() if n > 1),
        matching_records=matching,
        missing_records=missing,
        extra_records=extra,
        wrong_counts=wrong,
        slice_sums=slice_sums,
        missed_events=missed_events,
        extra_events=extra_events,
    )


def contract_problems(
    metrics: Iterable[tuple[bytes | None, bytes | None]],
    dlq: Iterable[tuple[bytes | None, dict[str, bytes | None]]],
    late: Iterable[tuple[bytes | None, dict[str, bytes | None]]],
    expected_metrics: Mapping[MetricKey, int],
    expected_rejects: Mapping[tuple[int, int], str],
    expected_late: Mapping[tuple[int, int], str],
    inputs: Mapping[int, list[bytes | None]],
) -> list[str]:
    """Everything loginflow promises, checked like its end-to-end tests do.

    `metrics` are (Kafka key, value) pairs; `dlq` and `late` are (value,
    headers). Returns one line per broken promise; empty means exact.
    """
    problems: list[str] = []
    seen: dict[MetricKey, int] = {}
    for raw_key, raw_value in metrics:
        if raw_value is None:
            problems.append("a metric record without a value")
            continue
        value = orjson.loads(raw_value)
        key = (value["window_start"], value["slice"], tuple(value["key"].values()))
        if raw_key is None or orjson.loads(raw_key) != [key[0], key[1], *key[2]]:
            problems.append(f"Kafka key does not name the metric: {key}")
        if key in seen:
            problems.append(f"emitted twice: {key}")
        seen[key] = value["count"]
    if seen != dict(expected_metrics):
        differing = {k for k in seen.keys() | expected_metrics.keys() if seen.get(k) != expected_metrics.get(k)}
        problems.append(f"{len(differing)} metrics differ from the batch answer")
    for name, records, header, wanted in (
        ("DLQ", dlq, "error", expected_rejects),
        ("late", late, "window_start", expected_late),
    ):
        got: dict[tuple[int, int], str] = {}
        for value, headers in records:
            source = (int(headers.get("source_partition") or b"-1"), int(headers.get("source_offset") or b"-1"))
            if source in got:
                problems.append(f"{name}: {source} written twice")
            got[source] = (headers.get(header) or b"").decode()
            partition = inputs.get(source[0], [])
            if not 0 <= source[1] < len(partition) or partition[source[1]] != value:
                problems.append(f"{name}: {source} does not carry the original bytes")
        if got != dict(wanted):
            off = {k for k in got.keys() | wanted.keys() if got.get(k) != wanted.get(k)}
            problems.append(f"{name}: {len(off)} records differ from the batch answer")
    return problems[:20]
