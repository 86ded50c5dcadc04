"""Window and partition edges an adversarial read of the issue-21 change found: bounded runs far apart,
snapshots from before revisions, garbage before the first event. Pure modules only, no broker.
"""

import math

from operators.pure.partition import PartitionTracker
from operators.pure.shards import ROUTING_VERSION, ConfigFingerprint, ShardUpdate
from operators.pure.slices import SliceSpec
from operators.pure.window_counts import WINDOW_LET_GO
from operators.pure.window_shard import ShardSnapshot, WindowShard

T0 = 1_709_251_200  # a 60 s window boundary
W = 60
BY_APP = SliceSpec(("app_version",), 1)
BY_USER_MIN2 = SliceSpec(("user_id",), 2)


def update(
    spec: SliceSpec,
    partition: int,
    watermark: float,
    counts: dict[int, dict[tuple[str, ...], int]],
    *,
    progress: float | None = None,
    partition_count: int = 2,
) -> ShardUpdate:
    return ShardUpdate(
        0,
        partition,
        partition_count,
        watermark,
        watermark if progress is None else progress,
        counts,
        ConfigFingerprint.of([spec], W, 1),
    )


def test_a_bounded_run_counts_a_slower_partitions_on_time_counts_however_far_apart() -> None:
    """A bounded backfill over >MAX_WINDOWS_PER_SHARD windows, partitions read at different speeds.

    Partition 0 is read slowly (its watermark at window 0), partition 1 has
    already been read 200 windows further (a partition of half the event
    density reaches twice the event time for the same number of messages).
    Every count partition 0 sends afterwards is on time for its log. A bound
    on windows would emit the oldest early and send those counts to the DLQ,
    so the answer would depend on read timing: bounded runs have none.
    """
    # What count.py builds for STOP_AT_END: no bound, the input bounds memory.
    shard = WindowShard([BY_APP], W, 1, max_windows=None)
    shard.apply([update(BY_APP, 0, T0 + 5, {T0: {("a",): 1}})])
    ahead: dict[int, dict[tuple[str, ...], int]] = {T0 + i * W: {("a",): 1} for i in range(1, 201)}
    shard.apply([update(BY_APP, 1, T0 + 200 * W, ahead)])
    # Partition 0 continues in order: an on-time event in window 10 (its watermark is still in window 0).
    closed = shard.apply([update(BY_APP, 0, T0 + 10 * W + 5, {T0 + 10 * W: {("a",): 1}})])
    assert not [u for u in closed.uncounted if u.reason == WINDOW_LET_GO], (
        "an on-time count of a partition read more slowly went to the DLQ as window_let_go"
    )


def test_a_snapshot_from_before_revisions_never_lowers_a_count() -> None:
    """Legacy path: a ShardSnapshot with revisable=None (explicitly supported by its comment).

    That version closed windows ahead of a partition's log (idle progress)
    and kept no counts for them. The upgrade sets let_go_through to
    max(final, closed_through - 8 windows), so a window 5 windows behind
    closed_through counts as revisable, but there are no counts for it: an
    on-time count from partition 1 makes `revisable.setdefault(start, {})`
    and emits a "revision" holding only the new count, lower than the count
    already on login-metrics. It must go to the DLQ instead.
    """
    legacy = ShardSnapshot(
        "app_version",
        W,
        1,
        2,
        {0: float(T0 + 20 * W), 1: float(T0 + 130)},
        float(T0 + 20 * W),
        {},
        ROUTING_VERSION,
    )
    assert legacy.revisable is None and legacy.let_go_through is None
    shard = WindowShard([BY_APP], W, 1, legacy)
    late_window = T0 + 15 * W  # on time for partition 1 (watermark T0 + 130), emitted by the old run
    closed = shard.apply([update(BY_APP, 1, T0 + 15 * W + 5, {late_window: {("a",): 1}})])
    lowered = [c for c in closed.counts if c.window_start == late_window]
    assert not lowered, f"emitted {lowered}: a revision from a partial count of a window emitted before the upgrade"


def test_a_partition_with_only_rejects_so_far_does_not_release_everything_while_it_is_still_being_read() -> None:
    """Design question: a reject-only batch of a partition without events makes its progress +inf.

    It is not at the head (rejects were just read; valid events may follow
    in its backlog), yet from now on it holds nothing back: other partitions'
    windows close ahead of this log and are revised (or, past the cap, let
    go) once its events come. Base kept progress at the watermark (-inf)
    while reading. The first batches of a bounded run starting with a few
    garbage records behave differently from ones starting with an event.
    """
    tracker = PartitionTracker(0, 2, W, 10.0)
    batch = tracker.track_values([b"garbage"], lambda i: None, record_times=[0.0], now=1.0)  # type: ignore[arg-type,return-value]
    assert batch.rejects
    assert batch.progress != math.inf, "a partition that has read one reject now holds no window back"
