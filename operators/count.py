"""`count_slices_in_windows`: on-time events in, window counts per slice key out.

Each read batch is pre-aggregated per shard (`operators.pure.shards`), and
each shard's windows live in one `stateful_batch` step (`close_windows`,
holding `operators.pure.window_shard.WindowShard`). This module is the
Bytewax glue around them: the stateful logic, its metrics, and the encoding
of what a shard emits.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators.pure.encoding import Pseudonymizer, RecordChunk, encode_metrics, encode_uncounted
from operators.pure.partition import PartitionBatch
from operators.pure.shards import ConfigMismatchError, ShardCounter, ShardUpdate
from operators.pure.slices import SliceSpec
from operators.pure.window_shard import ClosedCounts, ShardSnapshot, WindowShard
from operators.runtime.collector import relax_collector
from operators.runtime.logs import kv
from operators.runtime.metrics import COUNTS_FOR_CLOSED_WINDOWS, RECORDS_EMITTED, WINDOWS_EMITTED, ClosingWatermark
from operators.runtime.settings import Settings
from operators.runtime.shutdown import stop_on

logger = logging.getLogger(__name__)


def meter(closed: ClosedCounts) -> None:
    """Count one shard's output for one batch in the metrics."""
    counts, uncounted = closed
    if counts:
        name = counts[0].slice.name
        RECORDS_EMITTED.labels(name).inc(len(counts))
        WINDOWS_EMITTED.labels(name).inc(len({count.window_start for count in counts}))
    if uncounted:
        name = uncounted[0].slice.name
        COUNTS_FOR_CLOSED_WINDOWS.labels(name).inc(sum(item.count for item in uncounted))


class WindowShardLogic(StatefulBatchLogic[ShardUpdate, ClosedCounts, ShardSnapshot]):
    """Bytewax glue around `WindowShard` for `op.stateful_batch`."""

    def __init__(
        self,
        slices: Sequence[SliceSpec],
        window_seconds: int,
        buckets: int,
        resume_state: ShardSnapshot | None,
    ) -> None:
        """Build or resume one shard; Bytewax passes `resume_state` last."""
        # The shards hold the long-lived state that default collections keep walking.
        relax_collector()
        self.shard = WindowShard(slices, window_seconds, buckets, resume_state)
        # Bytewax snapshots every stateful step each epoch, recovery or not;
        # reuse the last copy while nothing changed.
        self._snapshot: ShardSnapshot | None = resume_state

    def on_batch(self, values: list[ShardUpdate]) -> tuple[list[ClosedCounts], bool]:
        """Merge a batch of updates and emit what it closed, as one item."""
        self._snapshot = None
        with stop_on(ConfigMismatchError):
            closed = self.shard.apply(values)
        ClosingWatermark.observe(self.shard.closed_through)
        if not (closed.counts or closed.uncounted):
            return [], StatefulBatchLogic.RETAIN
        meter(closed)
        return [closed], StatefulBatchLogic.RETAIN

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
    pseudonymizer = Pseudonymizer(settings.pseudonymize, settings.pseudonymize_key) if settings.pseudonymize else None
    updates = op.flat_map("count_by_shard", events, ShardCounter(slices, window_seconds, shards))
    closed = op.stateful_batch("close_windows", updates, partial(WindowShardLogic, slices, window_seconds, shards))
    metrics = op.map("encode_metrics", closed, partial(encode_metrics, pseudonymizer=pseudonymizer))
    uncounted = op.map(
        "encode_uncounted",
        closed,
        partial(encode_uncounted, source_topic=settings.input_topic, pseudonymizer=pseudonymizer),
    )
    return SliceCounts(metrics=metrics, uncounted=uncounted)
