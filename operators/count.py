"""`count_slices_in_windows`: on-time events in, window counts per slice key out.

Each read batch is pre-aggregated per shard (`operators.pure.shards`), and
each shard's windows live in one `stateful_batch` step (`close_windows`,
holding `operators.pure.window_shard.WindowShard`). This module is the
Bytewax glue around them: the stateful logic, its metrics, and the encoding
of what a shard emits.
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators.pure.encoding import RecordChunk, encode_metrics, encode_uncounted
from operators.pure.partition import PartitionBatch
from operators.pure.shards import ConfigMismatchError, Decisions, ShardCounter, ShardUpdate
from operators.pure.slices import SliceSpec
from operators.pure.window_counts import ClosedCounts
from operators.pure.window_shard import FewerPartitionsError, ResumeMismatchError, ShardSnapshot, WindowShard
from operators.runtime.collector import relax_collector
from operators.runtime.logs import kv
from operators.runtime.metrics import (
    COUNTS_FOR_CLOSED_WINDOWS,
    OPEN_WINDOWS,
    RECORDS_EMITTED,
    REVISABLE_WINDOWS,
    SHARD_KEYS,
    WINDOWS_EMITTED,
    WINDOWS_LET_GO,
    ClosingWatermark,
)
from operators.runtime.settings import Settings
from operators.runtime.shutdown import stop_on, stop_process

logger = logging.getLogger(__name__)

GAUGE_INTERVAL_S = 0.5


def meter(closed: ClosedCounts) -> None:
    """Count one shard's output for one batch in the metrics."""
    counts, uncounted, _let_go = closed
    if counts:
        name = counts[0].slice.name
        RECORDS_EMITTED.labels(name).inc(len(counts))
        WINDOWS_EMITTED.labels(name).inc(len({count.window_start for count in counts}))
    if uncounted:
        name = uncounted[0].slice.name
        COUNTS_FOR_CLOSED_WINDOWS.labels(name).inc(sum(item.count for item in uncounted))


def zero_closed_window_counters(slices: Sequence[SliceSpec]) -> None:
    """Export the counters the window_closed alert watches at 0 before anything happens.

    A series that first appears at 1 has no earlier sample, so `increase()`
    over it is 0 and the alert would miss the first window_closed of a run.
    """
    for spec in slices:
        COUNTS_FOR_CLOSED_WINDOWS.labels(spec.name)
        WINDOWS_LET_GO.labels(spec.name)


def gauge_state(shard: WindowShard, name: str) -> None:
    """Set the state-size gauges of one shard."""
    OPEN_WINDOWS.labels(name).set(len(shard.windows))
    REVISABLE_WINDOWS.labels(name).set(len(shard.revisable))
    SHARD_KEYS.labels(name).set(sum(map(len, shard.windows.values())) + sum(map(len, shard.revisable.values())))


class WindowShardLogic(StatefulBatchLogic[ShardUpdate, ClosedCounts, ShardSnapshot]):
    """Bytewax glue around `WindowShard` for `op.stateful_batch`."""

    def __init__(
        self,
        slices: Sequence[SliceSpec],
        window_seconds: int,
        buckets: int,
        resume_state: ShardSnapshot | None,
        *,
        input_topic: str,
        max_windows: int | None,
        decisions: Decisions,
    ) -> None:
        """Build or resume one shard; Bytewax passes `resume_state` last."""
        # The shards hold the long-lived state that default collections keep walking.
        relax_collector()
        with stop_on(ResumeMismatchError):
            self.shard = WindowShard(slices, window_seconds, buckets, resume_state, max_windows, decisions)
        self.input_topic = input_topic
        self._gauge_name: str | None = None
        self._gauged_at = 0.0
        # Bytewax snapshots every stateful step each epoch, recovery or not;
        # reuse the last copy while nothing changed.
        self._snapshot: ShardSnapshot | None = resume_state

    def on_batch(self, values: list[ShardUpdate]) -> tuple[list[ClosedCounts], bool]:
        """Merge a batch of updates and emit what it closed, as one item."""
        self._snapshot = None
        try:
            with stop_on(ConfigMismatchError):
                closed = self.shard.apply(values)
        except FewerPartitionsError as exc:
            stop_process(
                f"INPUT_TOPIC={self.input_topic!r} has {exc.now} partitions, the recovery state was written "
                f"with {exc.stored}: the topic was deleted and recreated, or is another topic; "
                "start with a new recovery directory"
            )
        ClosingWatermark.observe(self.shard.closed_through)
        if closed.let_go:
            WINDOWS_LET_GO.labels(self.shard.slices[self.shard.slice_index].name).inc(closed.let_go)
        self._observe_state()
        if not (closed.counts or closed.uncounted):
            return [], StatefulBatchLogic.RETAIN
        meter(closed)
        return [closed], StatefulBatchLogic.RETAIN

    def _observe_state(self) -> None:
        # Summing keys walks the state: a few times a second is plenty.
        now = time.monotonic()
        if now - self._gauged_at < GAUGE_INTERVAL_S:
            return
        self._gauged_at = now
        if self._gauge_name is None:
            self._gauge_name = self.shard.shard_name()
        if self._gauge_name is not None:
            gauge_state(self.shard, self._gauge_name)

    def on_eof(self) -> tuple[list[ClosedCounts], bool]:
        """Input ended. Bounded reads already closed everything with infinite progress."""
        open_windows = len(self.shard.windows)
        if open_windows:
            logger.warning("input ended with open windows %s", kv(open_windows=open_windows))
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> ShardSnapshot:
        """Return the shard state, copied only when it changed since the last call."""
        if self._snapshot is None:
            self._snapshot = self.shard.snapshot()
        return self._snapshot


@dataclass(frozen=True)
class SliceCounts:
    """What `count_slices_in_windows` emits."""

    metrics: Stream[RecordChunk]
    """login-metrics records: one per slice key and closed (or revised) window."""
    uncounted: Stream[RecordChunk]
    """Dead-letter records for counts that reached a window no longer kept."""


@operator
def count_slices_in_windows(step_id: str, events: Stream[PartitionBatch], settings: Settings) -> SliceCounts:
    """Count every slice of SLICES in tumbling WINDOW_SECONDS windows, closed by event time."""
    slices, window_seconds, shards = settings.slices, settings.window_seconds, settings.shards_per_slice
    pseudonymizer = settings.pseudonymizer()
    decisions = settings.decisions()
    zero_closed_window_counters(slices)
    updates = op.flat_map("count_by_shard", events, ShardCounter(slices, window_seconds, shards, decisions))
    build_shard = partial(
        WindowShardLogic,
        slices,
        window_seconds,
        shards,
        input_topic=settings.input_topic,
        # A bounded run's memory is bounded by its input, and letting a window
        # go there would make its answer depend on how fast each partition
        # was read.
        max_windows=None if settings.stop_at_end else settings.max_windows_per_shard,
        decisions=decisions,
    )
    closed = op.stateful_batch("close_windows", updates, build_shard)
    metrics = op.map("encode_metrics", closed, partial(encode_metrics, pseudonymizer=pseudonymizer))
    uncounted = op.map(
        "encode_uncounted",
        closed,
        partial(encode_uncounted, source_topic=settings.input_topic, pseudonymizer=pseudonymizer),
    )
    return SliceCounts(metrics=metrics, uncounted=uncounted)
