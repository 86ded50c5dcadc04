"""Shared helpers for the issue-10 hardening end-to-end tests.

The reference answer is taken over the log *as the broker holds it*: per
partition, the readable values in offset order. Transactional input leaves
offsets without a readable message (commit/abort markers, aborted records), so
the log here maps (partition, offset) -> value instead of assuming dense
offsets, and the reference's positions are mapped back to real offsets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from devkit.records import Record, consume_all
from devkit.reference import DEFAULT_SLICES, MAX_AHEAD, MAX_FIELD_BYTES, Expected, Slices, expected_output
from tests.dataflow_runner import DataflowCluster
from tests.outputs import assert_exact, collect, json_of, source_of

Log = dict[int, dict[int, bytes | None]]
"""partition -> offset -> value, as a read_committed consumer sees the topic."""


class TimedLog(dict[int, dict[int, bytes | None]]):
    """A `Log` that also keeps each record's Kafka timestamp (seconds): the ahead-of-record rule reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[int, dict[int, float]] = {}


TRUNCATED_BYTES = 65536


def read_log(brokers: str, topic: str, isolation: str = "read_committed", timeout: float = 60.0) -> Log:
    """Every readable record of `topic`, keyed by its real (partition, offset)."""
    log = TimedLog()
    for record in consume_all(brokers, topic, timeout=timeout, config={"isolation.level": isolation}):
        log.setdefault(record.partition, {})[record.offset] = record.value
        log.times.setdefault(record.partition, {})[record.offset] = record.timestamp_ms / 1000
    return log


def source_in(log: Log, value: bytes) -> tuple[int, int]:
    """The (partition, offset) of the one message in `log` whose value is `value`."""
    [source] = [(p, o) for p, rows in log.items() for o, found in rows.items() if found == value]
    return source


def log_size(log: Log) -> int:
    return sum(len(rows) for rows in log.values())


def expected_for_log(
    log: Log,
    window: int,
    lateness: float,
    slices: Slices = DEFAULT_SLICES,
    max_field_bytes: int = MAX_FIELD_BYTES,
    max_ahead: float = MAX_AHEAD,
) -> Expected:
    """The reference answer with rejects and late events keyed by real offsets.

    A `TimedLog` (what `read_log` returns) also applies the ahead-of-record rule.
    """
    offsets = {partition: sorted(rows) for partition, rows in log.items()}
    values = {partition: [log[partition][offset] for offset in offsets[partition]] for partition in log}
    stamps = log.times if isinstance(log, TimedLog) else {}
    times = {p: [stamps.get(p, {}).get(offset) for offset in offsets[p]] for p in log}
    by_position = expected_output(values, window, lateness, slices, max_field_bytes, times, max_ahead)
    result = Expected(metrics=by_position.metrics, counted=by_position.counted)
    result.rejects = {(p, offsets[p][pos]): reason for (p, pos), reason in by_position.rejects.items()}
    result.late = {(p, offsets[p][pos]): start for (p, pos), start in by_position.late.items()}
    # The reference itself must account for every message exactly once.
    assert result.counted + len(result.rejects) + len(result.late) == log_size(log)
    return result


def restore_truncated(out: dict[str, list[Record]], log: Log) -> dict[str, list[Record]]:
    """Check every `truncated` DLQ/late record against the contract, then put its full value back.

    A record too large for its topic is written with its value cut to 64 KiB and
    a header `truncated` holding the original length; with the value restored,
    `assert_exact` can compare it like any other record.
    """
    restored: dict[str, list[Record]] = dict(out)
    for name in ("dlq", "late"):
        records = []
        for record in out[name]:
            marker = record.headers.get("truncated")
            if marker is not None:
                partition, offset = source_of(record)
                original = log.get(partition, {}).get(offset)
                assert original is not None, f"{name} record names no message of the log: {(partition, offset)}"
                assert marker == str(len(original)).encode(), (
                    f"truncated header {marker!r}, original length {len(original)}"
                )
                assert record.value == original[:TRUNCATED_BYTES], (
                    f"a truncated {name} record must hold the first {TRUNCATED_BYTES} original bytes"
                    f" (got {len(record.value or b'')} bytes)"
                )
                records.append(record._replace(value=original))
            else:
                records.append(record)
        restored[name] = records
    return restored


def assert_accounted(
    out: dict[str, list[Record]],
    log: Log,
    window: int,
    lateness: float,
    *,
    revisions: bool = True,
    allow_duplicates: bool = False,
    slices: Slices = DEFAULT_SLICES,
    max_field_bytes: int = MAX_FIELD_BYTES,
) -> Expected:
    """Every message of `log` is counted, on the DLQ, or on the late topic, exactly once, as the batch answer says."""
    for name in ("dlq", "late"):
        for record in out[name]:
            source = source_of(record)
            assert source[1] in log.get(source[0], {}), (
                f"a {name} record points at no readable message of the log: {source}, headers {record.headers}"
            )
    expected = expected_for_log(log, window, lateness, slices, max_field_bytes)
    assert_exact(restore_truncated(out, log), expected, log, allow_duplicates=allow_duplicates, revisions=revisions)
    return expected


def _diff(name: str, got: Mapping, want: Mapping, limit: int = 5) -> list[str]:
    missing = [key for key in want if key not in got]
    extra = [key for key in got if key not in want]
    wrong = [(key, got[key], want[key]) for key in want if key in got and got[key] != want[key]]
    lines = []
    if missing:
        lines.append(f"{name}: {len(missing)} missing, e.g. {[(k, want[k]) for k in missing[:limit]]}")
    if extra:
        lines.append(f"{name}: {len(extra)} unexpected, e.g. {[(k, got[k]) for k in extra[:limit]]}")
    if wrong:
        lines.append(f"{name}: {len(wrong)} differ (key, got, want), e.g. {wrong[:limit]}")
    return lines


def describe_mismatch(
    out: dict[str, list[Record]],
    log: Log,
    window: int,
    lateness: float,
    slices: Slices = DEFAULT_SLICES,
    max_field_bytes: int = MAX_FIELD_BYTES,
) -> str:
    """What differs between the output (latest record per key) and the reference, in words."""
    expected = expected_for_log(log, window, lateness, slices, max_field_bytes)
    metrics: dict = {}
    for record in out["metrics"]:
        value = json_of(record.value)
        metrics[(value["window_start"], value["slice"], tuple(value["key"].values()))] = value["count"]
    rejects = {source_of(r): (r.headers.get("error") or b"").decode() for r in out["dlq"]}
    late = {source_of(r): (r.headers.get("window_start") or b"").decode() for r in out["late"]}
    lines = [
        *_diff("metrics", metrics, expected.metrics),
        *_diff("rejects", rejects, expected.rejects),
        *_diff("late", late, expected.late),
    ]
    counts = {name: len(records) for name, records in out.items()}
    lines.append(
        f"records per topic {counts}; expected {len(expected.metrics)} metrics, "
        f"{len(expected.rejects)} rejects, {len(expected.late)} late, {expected.counted} counted"
    )
    return "\n".join(lines)


def accounted(out: dict[str, list[Record]], log: Log, window: int, lateness: float, **kwargs) -> str | None:
    """None when `assert_accounted` holds, else why not."""
    try:
        assert_accounted(out, log, window, lateness, **kwargs)
    except AssertionError as exc:
        reason = str(exc) or repr(exc)
        extra = {k: v for k, v in kwargs.items() if k in ("slices", "max_field_bytes")}
        return f"{reason}\n{describe_mismatch(out, log, window, lateness, **extra)}"
    return None


def check_accounted(out: dict[str, list[Record]], log: Log, window: int, lateness: float, **kwargs) -> Expected:
    """`assert_accounted` with a readable account of the difference when it fails."""
    problem = accounted(out, log, window, lateness, **kwargs)
    assert problem is None, problem
    return expected_for_log(
        log, window, lateness, kwargs.get("slices", DEFAULT_SLICES), kwargs.get("max_field_bytes", MAX_FIELD_BYTES)
    )


def wait_accounted(
    brokers: str,
    topics: Mapping[str, str],
    log: Log,
    window: int,
    lateness: float,
    timeout: float,
    cluster: DataflowCluster | None = None,
    **kwargs,
) -> dict[str, list[Record]]:
    """Poll the output topics until they hold the exact answer for `log`; fail with the last mismatch."""
    deadline = time.monotonic() + timeout
    while True:
        out = collect(brokers, dict(topics))
        problem = accounted(out, log, window, lateness, **kwargs)
        if problem is None:
            return out
        if cluster is not None and cluster.any_exited():
            raise AssertionError(f"the dataflow exited while output was incomplete: {problem}\n{cluster.tail()}")
        if time.monotonic() >= deadline:
            tail = f"\n--- dataflow log tail ---\n{cluster.tail()}" if cluster is not None else ""
            raise AssertionError(f"output not exact within {timeout:.0f}s: {problem[:3000]}{tail}")
        time.sleep(1.0)


def log_text(cluster: DataflowCluster) -> str:
    return "\n".join(path.read_text(errors="replace") for path in cluster.logs if path.exists())


def wait_for_log(cluster: DataflowCluster, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
    """Wait until the cluster's combined log satisfies `predicate`."""
    deadline = time.monotonic() + timeout
    while True:
        text = log_text(cluster)
        if predicate(text):
            return text
        if cluster.any_exited():
            raise AssertionError(f"the dataflow exited before {what}:\n{cluster.tail()}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s:\n{cluster.tail()}")
        time.sleep(0.2)


def reading_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "reading partition" in line]


def kv_field(line: str, name: str) -> str | None:
    """The value of `name=...` in a kv log line."""
    for token in line.split():
        if token.startswith(f"{name}="):
            return token.split("=", 1)[1]
    return None


def login(
    t: float,
    user: str,
    device: str = "d1",
    ip: str = "10.0.0.1",
    app: str = "2.4.0",
    locale: str = "en-US",
    device_type: str = "android",
    **extra: object,
) -> bytes:
    """A valid login event."""
    return json.dumps(
        {
            "user_id": user,
            "timestamp": t,
            "device_id": device,
            "ip": ip,
            "app_version": app,
            "locale": locale,
            "device_type": device_type,
            **extra,
        }
    ).encode()


def varied_login(t: float, index: int, prefix: str = "u") -> bytes:
    """A valid event whose keys repeat often enough that min-count-2 slices emit something."""
    return login(
        t,
        f"{prefix}{index % 4}",
        device=f"d{index % 2}",
        ip=f"10.0.0.{index % 3}",
        app=("2.4.0", "3.0.0")[index % 2],
        locale=("en-US", "de-DE", "fr-FR")[index % 3],
        device_type=("android", "iOS")[index % 2],
    )
