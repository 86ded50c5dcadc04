"""The windows of one shard: open, closed, revised, let go of.

A shard holds the open windows' counts for its keys, and every input
partition's watermark and progress (`operators.pure.partition`). It emits a
window once the minimum progress over partitions passes the window's end.

Why nothing on time is lost: a batch's counts travel in the same item as its
partition's watermark, and items of one partition reach a shard in order.
An on-time event's window ends after its partition's watermark. While every
partition is being read, progress is the watermark, so the window is still
open when the count arrives, and it is emitted once, when it closes.

Progress can run ahead of the log: an idle partition moves on with the wall
clock, and a bounded run closes everything at its end. A window closed that
way is not final, because on-time counts for it can still come (a paused
producer resumes, a later run reads what was appended). The shard keeps its
counts until the minimum watermark over all partitions (the log's own
answer) passes it, and re-emits each key whose count grows: a revision
under the same Kafka key, so the latest record per key (a compacted topic)
is the exact answer. A count for a window the shard no longer keeps (a
partition added to the topic with old events, or a revision more than
REVISION_HORIZON_WINDOWS behind) cannot be merged any more; it comes out as
an `UncountedCount`, which the dataflow writes to the DLQ, rather than
disappearing.
"""

import logging
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from operators.pure.shards import (
    ROUTING_VERSION,
    ConfigFingerprint,
    ConfigMismatchError,
    KeyValues,
    ShardUpdate,
    WindowCounts,
)
from operators.pure.slices import SliceSpec
from operators.runtime.logs import kv

logger = logging.getLogger(__name__)

# Building the count tuples without NamedTuple.__new__'s Python frame.
_new_count = tuple.__new__


class WindowCount(NamedTuple):
    """The count of one key of one slice in one closed window."""

    window_start: int
    window_end: int
    slice: SliceSpec
    values: KeyValues
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose: the record field is "count"


class UncountedCount(NamedTuple):
    """A count that reached its shard after the shard let go of its window."""

    window_start: int
    window_end: int
    slice: SliceSpec
    values: KeyValues
    count: int  # type: ignore[assignment]  # as in WindowCount


class ClosedCounts(NamedTuple):
    """What one shard emitted for one batch of updates, as one item.

    A closing window can emit hundreds of thousands of counts; one item per
    batch keeps the runtime's per-item work (exchange, routing) off each count.
    """

    counts: list[WindowCount]
    uncounted: list[UncountedCount]


REVISION_HORIZON_WINDOWS = 8
"""How many windows behind the closed watermark a window may still be revised.

Bounds the state kept for windows closed ahead of the log, when one
partition's log stops moving for good (a producer gone quiet forever).
"""


def merge_counts(into: dict[KeyValues, int], counts: dict[KeyValues, int]) -> None:
    """Add `counts` to `into`, key by key.

    Most keys of the user slices are new to the window, so the bulk goes
    through C-level `dict.update`; only keys present on both sides are summed
    in Python.
    """
    both = into.keys() & counts.keys()
    if both:
        summed = {values: into[values] + counts[values] for values in both}
        into.update(counts)
        into.update(summed)
    else:
        into.update(counts)


class ShardSnapshot(NamedTuple):
    """A shard's resumable state. Immutable once taken."""

    slice_name: str
    window_seconds: int
    buckets: int
    partition_count: int
    # Each partition's watermark, from its log. Progress is not kept: what
    # ran ahead of the log (idle time, the end of a bounded run) belongs to
    # the run that saw it, and a resumed run hears it again from its sources.
    watermarks: dict[int, float]
    closed_through: float
    windows: WindowCounts
    # Snapshots from before routing was versioned unpickle with 1.
    routing: int = 1
    # Emitted windows that may still be revised; None in snapshots from
    # before revisions, whose `watermarks` could hold +inf for finished runs.
    revisable: WindowCounts | None = None


class WindowShard:
    """The counts and watermarks of one shard. Pure: no clock, no I/O."""

    def __init__(
        self,
        slices: Sequence[SliceSpec],
        window_seconds: int,
        buckets: int,
        snapshot: ShardSnapshot | None = None,
    ) -> None:
        """Start empty, or resume from `snapshot` taken with compatible settings."""
        self.slices = slices
        self.window_seconds = window_seconds
        self.buckets = buckets
        self.fingerprint = ConfigFingerprint.of(slices, window_seconds, buckets)
        self.slice_index = -1
        self.partition_count = 0
        # Per partition: the watermark its log has reached (only grows), and
        # the latest progress it reported (falls back when it leaves idle).
        self.watermarks: dict[int, float] = {}
        self.progress: dict[int, float] = {}
        # Everything ending at or before this has been emitted (always finite).
        self.closed_through = -math.inf
        self.windows: WindowCounts = {}
        # Emitted windows the log has not passed yet, with their full counts.
        self.revisable: WindowCounts = {}
        self.uncounted = 0
        if snapshot is not None:
            self._restore(snapshot)

    def _restore(self, snapshot: ShardSnapshot) -> None:
        # Changing any of these under existing state would strand open windows
        # in shards nobody routes to, or count one key in two shards.
        for name, was, now in (
            ("WINDOW_SECONDS", snapshot.window_seconds, self.window_seconds),
            ("SHARDS_PER_SLICE", snapshot.buckets, self.buckets),
        ):
            if was != now:
                msg = f"{name}: recovery state was written with {was}, now {now}; use a new recovery directory"
                raise ValueError(msg)
        if snapshot.routing != ROUTING_VERSION:
            msg = (
                f"SHARDS_PER_SLICE: recovery state routes keys to shards by scheme {snapshot.routing}, "
                f"this version by scheme {ROUTING_VERSION}; use a new recovery directory"
            )
            raise ValueError(msg)
        names = [spec.name for spec in self.slices]
        if snapshot.slice_name and snapshot.slice_name not in names:
            msg = f"SLICES: recovery state holds slice {snapshot.slice_name!r}, which is no longer configured"
            raise ValueError(msg)
        # An empty name: the shard was snapshotted before its first update.
        self.slice_index = names.index(snapshot.slice_name) if snapshot.slice_name else -1
        self.partition_count = snapshot.partition_count
        # Older versions stored a finished partition as +inf, which would
        # close every later window on arrival; its log position is unknown,
        # so it must report again.
        self.watermarks = {p: w for p, w in snapshot.watermarks.items() if w != math.inf}
        self.progress = dict(self.watermarks)
        self.closed_through = snapshot.closed_through
        if self.closed_through == math.inf:
            self.closed_through = max(self.watermarks.values(), default=-math.inf)
            logger.warning(
                "recovery state from a bounded run of an older version %s",
                kv(
                    shard=snapshot.slice_name,
                    closed_through=self.closed_through,
                    note="windows it flushed at its end cannot be revised",
                ),
            )
        self.windows = {start: dict(counts) for start, counts in snapshot.windows.items()}
        self.revisable = {start: dict(counts) for start, counts in (snapshot.revisable or {}).items()}

    def watermark(self) -> float:
        """The minimum progress over all input partitions (-inf until all reported)."""
        if self.partition_count == 0 or len(self.progress) < self.partition_count:
            return -math.inf
        return min(self.progress.values())

    def final_through(self) -> float:
        """Windows ending at or before this can get no more on-time counts from any partition.

        A partition that has had no event yet holds this at -inf: its first
        events may be older than anything the others have read.
        """
        if self.partition_count == 0 or len(self.watermarks) < self.partition_count:
            return -math.inf
        return min(self.watermarks.values())

    def apply(self, updates: Iterable[ShardUpdate]) -> ClosedCounts:
        """Merge updates, then emit revisions and every window the progress has passed."""
        window = self.window_seconds
        revised: dict[int, set[KeyValues]] = {}
        uncounted: list[UncountedCount] = []
        for update in updates:
            if update.fingerprint != self.fingerprint:
                problem = self.fingerprint.mismatch(update.fingerprint)
                raise ConfigMismatchError(problem)
            self.slice_index = update.slice_index
            self.partition_count = max(self.partition_count, update.partition_count)
            for start, counts in update.counts.items():
                if start + window > self.closed_through:
                    keys = self.windows.get(start)
                    if keys is None:
                        # The update was built for this shard alone and is not used again.
                        self.windows[start] = counts
                    else:
                        merge_counts(keys, counts)
                elif self._revisable(start):
                    merge_counts(self.revisable.setdefault(start, {}), counts)
                    revised.setdefault(start, set()).update(counts)
                else:
                    uncounted.extend(self._uncounted(start, counts, update.partition))
            if update.watermark > self.watermarks.get(update.partition, -math.inf):
                self.watermarks[update.partition] = update.watermark
            self.progress[update.partition] = update.progress
        emitted = self._revisions(revised)
        emitted.extend(self._close(self.watermark()))
        self._forget_final()
        return ClosedCounts(emitted, uncounted)

    def _revisable(self, start: int) -> bool:
        """Whether an emitted window may still take counts: neither final nor beyond the horizon."""
        end = start + self.window_seconds
        if start in self.revisable:
            return True
        return end > self.final_through() and end > self.closed_through - REVISION_HORIZON_WINDOWS * self.window_seconds

    def _uncounted(self, start: int, counts: dict[KeyValues, int], partition: int) -> list[UncountedCount]:
        spec = self.slices[self.slice_index]
        total = sum(counts.values())
        self.uncounted += total
        logger.error(
            "counts for a closed window %s",
            kv(
                window_start=start,
                slice=spec.name,
                keys=len(counts),
                count=total,
                partition=partition,
                closed_through=self.closed_through,
                route="DLQ error=window_closed",
            ),
        )
        end = start + self.window_seconds
        items = sorted(counts.items())
        return [_new_count(UncountedCount, (start, end, spec, values, count)) for values, count in items]

    def _revisions(self, revised: dict[int, set[KeyValues]]) -> list[WindowCount]:
        if not revised:
            return []
        spec = self.slices[self.slice_index]
        minimum = spec.min_count
        emitted: list[WindowCount] = []
        for start in sorted(revised):
            keys = self.revisable[start]
            end = start + self.window_seconds
            for values in sorted(revised[start]):
                count = keys[values]
                if count >= minimum:
                    emitted.append(_new_count(WindowCount, (start, end, spec, values, count)))
        return emitted

    def _close(self, watermark: float) -> list[WindowCount]:
        if watermark <= self.closed_through:
            return []
        window = self.window_seconds
        closing = sorted(start for start in self.windows if start + window <= watermark)
        if watermark == math.inf:
            # The end of a bounded run: close through the last window only, so
            # that a later run's counts for later windows are still on time.
            watermark = max((start + window for start in closing), default=self.closed_through)
        self.closed_through = watermark
        if not closing:
            return []
        spec = self.slices[self.slice_index]
        emitted: list[WindowCount] = []
        minimum = spec.min_count
        final_through = self.final_through()
        for start in closing:
            keys = self.windows.pop(start)
            end = start + window
            if end > final_through:
                self.revisable[start] = keys
            # Filter before sorting: most user keys never reach a minimum of 2.
            kept = keys.items() if minimum <= 1 else [item for item in keys.items() if item[1] >= minimum]
            # A window can emit hundreds of thousands of records at once:
            # build them at C speed (NamedTuple's own __new__ is Python).
            emitted.extend(_new_count(WindowCount, (start, end, spec, values, count)) for values, count in sorted(kept))
        return emitted

    def _forget_final(self) -> None:
        if not self.revisable:
            return
        window = self.window_seconds
        final_through = self.final_through()
        horizon = self.closed_through - REVISION_HORIZON_WINDOWS * window
        for start in [start for start in self.revisable if start + window <= max(final_through, horizon)]:
            del self.revisable[start]

    def snapshot(self) -> ShardSnapshot:
        """Copy the state; dict copies of flat dicts, far cheaper than deepcopy."""
        return ShardSnapshot(
            self.slices[self.slice_index].name if self.slice_index >= 0 else "",
            self.window_seconds,
            self.buckets,
            self.partition_count,
            dict(self.watermarks),
            self.closed_through,
            {start: keys.copy() for start, keys in self.windows.items()},
            ROUTING_VERSION,
            {start: keys.copy() for start, keys in self.revisable.items()},
        )
