"""What a resumed exactly-once writer must not write again, and when it may forget it.

A resumed writer reads back what its partition committed after the snapshot
it resumes from (`operators.kafka.transactional_writer`), and the replay then
produces some of those records again. Three rules decide what it skips:

- A login-metrics record is skipped when its count is not above the highest
  count committed for its key. A replay whose idle closes fell differently
  can produce an intermediate count (4) that was never committed, before or
  instead of the committed one (5); writing the 4 would make it the latest
  record of its key, and compaction would keep it. Counts per key only grow
  within a run, so the first replayed count above the committed one is new.
- A `window_closed` or `window_let_go` record on the DLQ sums one read
  batch's counts for one key, and a replay may cut its batches differently
  near where the crash fell (the first run read them at the head of the log,
  the replay finds them all there). So these are skipped by count: the
  committed counts of a key and reason are summed, replayed records are
  skipped while they fit in that sum, and the first one that does not is
  written with only the part beyond it. The DLQ's total per key is then what
  one uninterrupted run writes.
- Any other record is skipped by identity (key, value and headers), with
  multiplicity.
- Records another dataflow wrote to a shared DLQ or late topic (its
  `source_topic` header names another input) are not ours to skip, and are
  not kept.

What is kept must stay small. A forwarded record names its source partition
and offset; once a record from a later offset of that partition was written
or skipped, the snapshot taken next is past the earlier offset, so no replay
can produce a record from it again, and the remainder forgets it.
"""

from collections import Counter
from collections.abc import Iterable
from typing import Any

Identity = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]
Remainder = tuple[
    tuple[tuple[Identity, int], ...], tuple[tuple[bytes, int], ...], tuple[tuple[tuple[bytes, bytes], int], ...]
]
"""(identities with their multiplicity, (metric key, highest committed count), ((key, reason), committed
count not yet met)): plain tuples for the store."""

SKIP = object()
"""What `ReplaySkip.admit` returns for a record already committed."""

UNCOUNTED_REASONS = frozenset({b"window_closed", b"window_let_go"})

_COUNT_FIELD = b'"count":'


def identity(key: bytes | None, value: bytes | None, headers: Any) -> Identity:
    """A record's identity: its key, value and headers, with header values as bytes."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    normalized = tuple((name, data.encode() if isinstance(data, str) else (data or b"")) for name, data in items)
    return key, value, normalized


def metric_count(value: bytes | None) -> int | None:
    """The count of a login-metrics record value (it ends with ``"count":N}``), or None."""
    if not value or not value.endswith(b"}"):
        return None
    at = value.rfind(_COUNT_FIELD)
    if at < 0:
        return None
    digits = value[at + len(_COUNT_FIELD) : -1]
    return int(digits) if digits.isdigit() else None


def with_count(value: bytes, count: int) -> bytes:
    """A login-metrics-shaped value with another count."""
    return value[: value.rfind(_COUNT_FIELD) + len(_COUNT_FIELD)] + b"%d}" % count


def _uncounted_group(found: Identity) -> tuple[bytes, bytes] | None:
    reason = _header(found[2], "error")
    if found[0] is None or reason not in UNCOUNTED_REASONS:
        return None
    return found[0], reason


def _header(headers: tuple[tuple[str, bytes], ...], name: str) -> bytes | None:
    for header, data in headers:
        if header == name:
            return data
    return None


def _source_position(found: Identity) -> tuple[int, int] | None:
    headers = found[2]
    partition, offset = _header(headers, "source_partition"), _header(headers, "source_offset")
    if partition is None or offset is None or not (partition.isdigit() and offset.isdigit()):
        return None
    return int(partition), int(offset)


class ReplaySkip:
    """The records a resumed writer skips; see the module docstring."""

    def __init__(self, *, by_count: bool, source_topic: str, remainder: Remainder | None = None) -> None:
        """Skip metrics by count when `by_count`, everything else by identity."""
        self.by_count = by_count
        self.source_topic = source_topic.encode()
        self.copies: Counter[Identity] = Counter()
        self.counts: dict[bytes, int] = {}
        self.uncounted: Counter[tuple[bytes, bytes]] = Counter()
        # The highest source offset written or skipped since the last snapshot, per partition.
        self._passed: dict[int, int] = {}
        if remainder is not None:
            copies, counts, uncounted = remainder
            self.copies.update(dict(copies))
            self.counts.update(counts)
            self.uncounted.update(dict(uncounted))

    def __bool__(self) -> bool:
        """Whether anything is still to skip; checked per record, so without summing."""
        return bool(self.copies or self.counts or self.uncounted)

    def __len__(self) -> int:
        """How many records are still to skip (a key skipped by count is one)."""
        return self.copies.total() + len(self.counts) + len(self.uncounted)

    def add_committed(self, key: bytes | None, value: bytes | None, headers: Any) -> None:
        """Remember a record read back from the partition."""
        if self.by_count and key is not None:
            count = metric_count(value)
            if count is not None:
                self.counts[key] = max(count, self.counts.get(key, 0))
                return
        found = identity(key, value, headers)
        source = _header(found[2], "source_topic")
        if source is not None and source != self.source_topic:
            return
        group = _uncounted_group(found)
        count = metric_count(value)
        if group is not None and count is not None:
            self.uncounted[group] += count
            return
        self.copies[found] += 1

    def add_all(self, records: Iterable[tuple[bytes | None, bytes | None, Any]]) -> None:
        """Remember every record read back."""
        for key, value, headers in records:
            self.add_committed(key, value, headers)

    def admit(self, key: bytes | None, value: bytes | None, headers: Any) -> Any:
        """The value to write for this record of the replay, `SKIP` if it is committed already.

        Consumes what it skips. The value comes back unchanged, except for an
        uncounted-count record only partly committed: then with the rest of its count.
        """
        if self.by_count and key is not None and key in self.counts:
            count = metric_count(value)
            if count is not None:
                committed = self.counts[key]
                if count >= committed:
                    # Equal: this copy. Above: new. Either way later counts are new.
                    del self.counts[key]
                return SKIP if count <= committed else value
        if not (self.copies or self.uncounted):
            return value
        found = identity(key, value, headers)
        if self.uncounted:
            group = _uncounted_group(found)
            if group is not None and group in self.uncounted:
                return self._admit_uncounted(group, value)
        position = _source_position(found)
        if position is not None:
            partition, offset = position
            if offset > self._passed.get(partition, -1):
                self._passed[partition] = offset
        if self.copies.get(found, 0) <= 0:
            return value
        self.copies[found] -= 1
        if not self.copies[found]:
            del self.copies[found]
        return SKIP

    def _admit_uncounted(self, group: tuple[bytes, bytes], value: bytes | None) -> Any:
        count = metric_count(value)
        if count is None or value is None:
            return value
        committed = self.uncounted[group]
        if count <= committed:
            self.uncounted[group] -= count
            if not self.uncounted[group]:
                del self.uncounted[group]
            return SKIP
        del self.uncounted[group]
        return with_count(value, count - committed)

    def remainder(self) -> Remainder:
        """What a resume from the snapshot taken now must still skip, forgetting what it cannot replay."""
        if self._passed:
            for found in list(self.copies):
                position = _source_position(found)
                if position is not None and position[1] <= self._passed.get(position[0], -1):
                    del self.copies[found]
        return tuple(self.copies.items()), tuple(self.counts.items()), tuple(self.uncounted.items())
