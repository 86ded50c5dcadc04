"""What the report shows, computed from decoded records: pure functions, no Kafka, no HTML.

The answer in `login-metrics` is the latest record per Kafka key
(docs/contracts.md): a revision repeats a key with its whole, larger count, so
anything summed here is summed over the latest records only.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from operators.pure import jsonio


@dataclass(frozen=True)
class Metric:
    """One `login-metrics` record: a (window, slice, key) and its count."""

    window_start: datetime
    window_end: datetime
    slice: str
    values: tuple[str, ...]
    """The key's values in the order of the slice's fields."""
    count: int


@dataclass(frozen=True)
class WindowPoint:
    """One window of one slice: how many keys reached the slice's minimum, and their summed counts."""

    window_start: datetime
    records: int
    total: int


@dataclass(frozen=True)
class TopKey:
    """A key of one slice over the chosen windows: its summed count and the windows it appears in."""

    values: tuple[str, ...]
    total: int
    windows: tuple[datetime, ...]


@dataclass(frozen=True)
class UserSpread:
    """A user and how many distinct values of another field (devices, IPs) their repeated logins came from."""

    user: str
    distinct: int
    logins: int


def latest_per_key(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[bytes | None, bytes]:
    """The last value per key of ``(key, value)`` pairs of one partition in log order, as compaction keeps it.

    A null value is a tombstone and removes its key, as it would from a
    compacted topic.

    >>> latest_per_key([(b"k", b"1"), (b"j", b"5"), (b"k", b"2")])
    {b'k': b'2', b'j': b'5'}
    """
    latest: dict[bytes | None, bytes] = {}
    for key, value in records:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest


def latest_metrics(records: Iterable[tuple[int, bytes | None, bytes | None]]) -> tuple[list[Metric], int]:
    """The answer in `login-metrics` from ``(partition, key, value)`` records, and how many were not metrics.

    Log order exists only within a partition, so the latest record per key is
    taken there. A key's records share a partition until partitions are added
    to the topic; then the same key sits in two, and as counts only grow
    (docs/contracts.md) the larger count is the later revision.
    """
    per_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
    for partition, key, value in records:
        per_partition[partition].append((key, value))
    answer: dict[tuple[datetime, str, tuple[str, ...]], Metric] = {}
    unreadable = 0
    for pairs in per_partition.values():
        for key, value in latest_per_key(pairs).items():
            try:
                metric = decode_record(key, value)
            except ValueError:
                unreadable += 1
                continue
            identity = (metric.window_start, metric.slice, metric.values)
            if identity not in answer or answer[identity].count < metric.count:
                answer[identity] = metric
    return list(answer.values()), unreadable


def parse_utc(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; one without an offset is taken as UTC.

    >>> parse_utc("2024-03-01T00:01:00Z").isoformat()
    '2024-03-01T00:01:00+00:00'
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def decode_metric(value: bytes) -> Metric:
    """A `login-metrics` record value; raises ValueError when it is not one."""
    try:
        doc = jsonio.loads(value)
        slice_name = doc["slice"]
        key = doc["key"]
        values = tuple(key[name] for name in slice_name.split("+"))
        count = doc["count"]
        metric = Metric(parse_utc(doc["window_start"]), parse_utc(doc["window_end"]), slice_name, values, count)
    except (jsonio.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        msg = f"not a login-metrics record: {exc!r}"
        raise ValueError(msg) from exc
    # bool is an int to Python, not a count to anyone else.
    if not (type(count) is int and count > 0 and all(isinstance(v, str) for v in values)):
        msg = "not a login-metrics record: count or key values of the wrong type"
        raise ValueError(msg)
    return metric


def decode_record(key: bytes | None, value: bytes) -> Metric:
    """A `login-metrics` record whose Kafka key names the window, slice and values its value holds.

    The key is a function of those alone (docs/contracts.md); a record under
    any other key would add a second count for them, so it is refused.
    """
    metric = decode_metric(value)
    start = metric.window_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        named = jsonio.loads(key) if key is not None else None
    except jsonio.JSONDecodeError:
        named = None
    if named != [start, metric.slice, *metric.values]:
        msg = f"not a login-metrics record: its Kafka key {key!r} does not name its window, slice and values"
        raise ValueError(msg)
    return metric


def once_per_source(headers: Iterable[Mapping[str, bytes | None]]) -> tuple[list[Mapping[str, bytes | None]], int]:
    """DLQ or late records' headers with each input message once, and how many repeats were left out.

    At-least-once forwards a message again after a crash; its
    `source_topic`/`source_partition`/`source_offset` headers identify it
    (docs/contracts.md). A record without them (`window_closed`,
    `window_let_go`) is not an input message and is kept as it is.
    """
    kept: list[Mapping[str, bytes | None]] = []
    seen: set[tuple[bytes | None, bytes, bytes]] = set()
    repeats = 0
    for record in headers:
        partition, offset = record.get("source_partition"), record.get("source_offset")
        if partition is not None and offset is not None:
            source = (record.get("source_topic"), partition, offset)
            if source in seen:
                repeats += 1
                continue
            seen.add(source)
        kept.append(record)
    return kept, repeats


def in_range(window_start: datetime, start: datetime | None, end: datetime | None) -> bool:
    """Whether a window starting at `window_start` is in ``[start, end)``; None leaves that side open."""
    return (start is None or window_start >= start) and (end is None or window_start < end)


def window_series(metrics: Iterable[Metric]) -> dict[str, list[WindowPoint]]:
    """Per slice, each window's record count and summed count, in window order."""
    records: dict[str, Counter[datetime]] = defaultdict(Counter)
    totals: dict[str, Counter[datetime]] = defaultdict(Counter)
    for metric in metrics:
        records[metric.slice][metric.window_start] += 1
        totals[metric.slice][metric.window_start] += metric.count
    return {
        name: [WindowPoint(start, per_window[start], totals[name][start]) for start in sorted(per_window)]
        for name, per_window in sorted(records.items())
    }


def top_keys(metrics: Iterable[Metric], n: int) -> dict[str, list[TopKey]]:
    """Per slice, the `n` keys with the largest summed count; ties go to the smaller key values."""
    totals: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    windows: dict[tuple[str, tuple[str, ...]], list[datetime]] = defaultdict(list)
    for metric in metrics:
        totals[metric.slice][metric.values] += metric.count
        windows[(metric.slice, metric.values)].append(metric.window_start)
    result: dict[str, list[TopKey]] = {}
    for name, per_key in sorted(totals.items()):
        ranked = sorted(per_key.items(), key=lambda item: (-item[1], item[0]))[:n]
        result[name] = [TopKey(values, total, tuple(sorted(windows[(name, values)]))) for values, total in ranked]
    return result


def most_distinct(metrics: Iterable[Metric], slice_name: str, user_index: int, n: int) -> list[UserSpread]:
    """The `n` users with the most distinct other values in the two-field slice `slice_name`.

    `user_index` is the position of `user_id` in the slice's fields; the other
    field is the one counted. Ties go to the user with more logins, then the
    smaller user id.
    """
    seen: dict[str, set[str]] = defaultdict(set)
    logins: Counter[str] = Counter()
    for metric in metrics:
        if metric.slice != slice_name:
            continue
        user, other = metric.values[user_index], metric.values[1 - user_index]
        seen[user].add(other)
        logins[user] += metric.count
    ranked = sorted(seen, key=lambda user: (-len(seen[user]), -logins[user], user))[:n]
    return [UserSpread(user, len(seen[user]), logins[user]) for user in ranked]


def count_by(labels: Iterable[str]) -> list[tuple[str, int]]:
    """How often each label occurs, most frequent first, ties by label."""
    return sorted(Counter(labels).items(), key=lambda item: (-item[1], item[0]))


def pair_slice(slices: Mapping[str, tuple[str, ...]], first: str, second: str) -> tuple[str, int] | None:
    """The slice of exactly the fields `first` and `second` (in either order), and `first`'s position in it."""
    for name, fields in slices.items():
        if set(fields) == {first, second} and len(fields) == 2:
            return name, fields.index(first)
    return None
