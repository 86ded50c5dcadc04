"""Shard routing and window closing, without Bytewax running."""

import copy
import dataclasses
import logging
import math
import pickle
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.count import WindowShardLogic
from operators.pure.events import LoginEvent
from operators.pure.partition import PartitionBatch
from operators.pure.shards import (
    ROUTING_VERSION,
    ConfigFingerprint,
    ConfigMismatchError,
    ShardCounter,
    ShardUpdate,
    bucket_of,
    key_getter,
    routing_index,
    shard_key,
    shard_of,
)
from operators.pure.slices import SliceSpec
from operators.pure.window_counts import WINDOW_LET_GO, ClosedCounts, UncountedCount, WindowCount, merge_counts
from operators.pure.window_shard import FewerPartitionsError, ShardSnapshot, WindowShard

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z, a window boundary for 60 s windows
BUCKETS = 4

BY_USER = SliceSpec(("user_id",), 1)
BY_APP_DEVICE = SliceSpec(("app_version", "device_type"), 1)
BY_USER_MIN2 = SliceSpec(("user_id",), 2)


def event(
    t: float,
    user: str = "u1",
    app: str = "2.3.0",
    device_type: str = "android",
    ip: str = "10.0.0.1",
    locale: str = "TX",
    device_id: str = "d1",
) -> LoginEvent:
    return LoginEvent(float(t), user, app, device_type, ip, locale, device_id)


def batch(
    *events: LoginEvent,
    partition: int = 0,
    partition_count: int = 2,
    watermark: float = -math.inf,
    finished: bool = False,
    progressed: bool = True,
) -> PartitionBatch:
    progress = math.inf if finished else watermark
    return PartitionBatch(partition, partition_count, list(events), [], [], watermark, finished, progressed, progress)


def nested(flat: dict[tuple[int, tuple[str, ...]], int]) -> dict[int, dict[tuple[str, ...], int]]:
    """{(window_start, values): n} as the shard updates carry it: {window_start: {values: n}}."""
    windows: dict[int, dict[tuple[str, ...], int]] = {}
    for (start, values), n in flat.items():
        windows.setdefault(start, {})[values] = n
    return windows


def flat(windows: dict[int, dict[tuple[str, ...], int]]) -> dict[tuple[int, tuple[str, ...]], int]:
    return {(start, values): n for start, keys in windows.items() for values, n in keys.items()}


def update(
    partition: int,
    watermark: float,
    counts: dict | None = None,
    *,
    partition_count: int = 2,
    finished: bool = False,
    slice_index: int = 0,
    progress: float | None = None,
    slices: tuple[SliceSpec, ...] = (BY_USER,),
    window: int = 60,
) -> ShardUpdate:
    """A shard update; progress defaults to the watermark (being read), or +inf once finished."""
    if progress is None:
        progress = math.inf if finished else watermark
    fingerprint = ConfigFingerprint.of(slices, window, BUCKETS)
    return ShardUpdate(slice_index, partition, partition_count, watermark, progress, nested(counts or {}), fingerprint)


def count(start: int, user: str, n: int, spec: SliceSpec = BY_USER) -> WindowCount:
    return WindowCount(start, start + 60, spec, (user,), n)


def closed(*counts: WindowCount, uncounted: tuple[UncountedCount, ...] = ()) -> ClosedCounts:
    """What `WindowShard.apply` returns: the counts for login-metrics, and the uncounted ones."""
    return ClosedCounts(list(counts), list(uncounted))


# --- routing -----------------------------------------------------------------


def test_shard_key_names_slice_and_bucket() -> None:
    assert shard_key(BY_APP_DEVICE, 3) == "app_version+device_type#3"


def test_key_getter_returns_tuples_in_slice_field_order() -> None:
    e = event(T0, user="u", app="a", device_type="dt", ip="i", locale="l", device_id="d")
    assert key_getter(SliceSpec(("user_id",), 1))(e) == ("u",)
    assert key_getter(SliceSpec(("device_id", "user_id"), 1))(e) == ("d", "u")
    assert key_getter(SliceSpec(("app_version", "device_type", "ip", "locale"), 1))(e) == ("a", "dt", "i", "l")


def test_bucket_of_is_a_fixed_crc32_not_the_salted_hash() -> None:
    assert bucket_of("u1", 4) == 2
    assert bucket_of("u2", 4) == 0
    assert bucket_of("u1", 2**32) == 1_112_514_422 == zlib.crc32(b"u1")


def test_bucket_of_is_within_range_and_single_bucket_is_zero() -> None:
    keys = [f"user{i}" for i in range(200)]
    assert {bucket_of(k, 1) for k in keys} == {0}
    assert {bucket_of(k, 8) for k in keys} == set(range(8))


def test_a_slice_is_routed_by_its_most_selective_field() -> None:
    assert routing_index(SliceSpec(("user_id",), 1)) == 0
    assert routing_index(SliceSpec(("device_type", "user_id"), 1)) == 1
    assert routing_index(SliceSpec(("app_version", "device_type"), 1)) == 0
    assert routing_index(SliceSpec(("device_type", "locale", "ip"), 1)) == 2
    # Both user slices hash the same value, so they share a bucket per user.
    assert shard_of(SliceSpec(("user_id", "ip"), 1), ("u1", "10.0.0.1"), 4) == "user_id+ip#2"
    assert shard_of(SliceSpec(("device_type", "user_id"), 1), ("ios", "u1"), 4) == "device_type+user_id#2"


def test_merge_counts_adds_shared_keys_and_keeps_the_rest() -> None:
    into: dict[tuple[str, ...], int] = {("a",): 2, ("b",): 1}
    merge_counts(into, {("b",): 3, ("c",): 1})
    assert into == {("a",): 2, ("b",): 4, ("c",): 1}
    merge_counts(into, {("d",): 5})
    assert into == {("a",): 2, ("b",): 4, ("c",): 1, ("d",): 5}


def test_counter_gives_every_shard_a_progressed_watermark_even_with_no_counts() -> None:
    counter = ShardCounter((BY_USER, BY_APP_DEVICE), 60, 3)
    updates = counter(batch(partition=1, partition_count=4, watermark=T0 + 5.5, finished=True))
    assert [key for key, _ in updates] == [
        "user_id#0",
        "user_id#1",
        "user_id#2",
        "app_version+device_type#0",
        "app_version+device_type#1",
        "app_version+device_type#2",
    ]
    fingerprint = ConfigFingerprint.of((BY_USER, BY_APP_DEVICE), 60, 3)
    assert [u for _, u in updates] == [ShardUpdate(0, 1, 4, T0 + 5.5, math.inf, {}, fingerprint)] * 3 + [
        ShardUpdate(1, 1, 4, T0 + 5.5, math.inf, {}, fingerprint)
    ] * 3


def test_counter_sends_nothing_for_a_batch_without_counts_or_progress() -> None:
    counter = ShardCounter((BY_USER, BY_APP_DEVICE), 60, 3)
    assert counter(batch(watermark=T0 + 5, progressed=False)) == []


def test_counter_without_progress_sends_only_to_shards_with_counts() -> None:
    counter = ShardCounter((BY_USER,), 60, 4)
    updates = counter(batch(event(T0 + 1, user="u1"), event(T0 + 2, user="u1"), watermark=T0 + 5, progressed=False))
    fingerprint = ConfigFingerprint.of((BY_USER,), 60, 4)
    assert updates == [("user_id#2", ShardUpdate(0, 0, 2, T0 + 5, T0 + 5, {T0: {("u1",): 2}}, fingerprint))]


def test_counter_aggregates_per_window_and_key() -> None:
    counter = ShardCounter((BY_USER,), 60, 1)
    events = [event(T0 + 1), event(T0 + 59.9), event(T0 + 60), event(T0 + 2, user="u2"), event(T0 + 3)]
    ((key, shard_update),) = counter(batch(*events, watermark=T0 + 50))
    assert key == "user_id#0"
    assert flat(shard_update.counts) == {(T0, ("u1",)): 3, (T0 + 60, ("u1",)): 1, (T0, ("u2",)): 1}
    assert shard_update.watermark == T0 + 50


def test_counter_routes_each_key_to_exactly_one_bucket() -> None:
    counter = ShardCounter((BY_USER, BY_APP_DEVICE), 60, 4)
    users = [f"user{i}" for i in range(40)]
    events = [event(T0 + i % 120, user=user, app=f"v{i % 3}") for i, user in enumerate(users * 2)]
    updates = counter(batch(*events))
    seen: dict[tuple[int, tuple], list[str]] = {}
    for key, shard_update in updates:
        for _, values in flat(shard_update.counts):
            seen.setdefault((shard_update.slice_index, values), []).append(key)
    for (slice_index, values), keys in seen.items():
        spec = (BY_USER, BY_APP_DEVICE)[slice_index]
        assert set(keys) == {shard_of(spec, values, 4)}
    assert {values for (index, values) in seen if index == 0} == {(user,) for user in users}
    total = sum(n for key, u in updates if key.startswith("user_id#") for n in flat(u.counts).values())
    assert total == len(events)


def test_counter_routes_a_key_to_the_same_bucket_in_every_batch() -> None:
    counter = ShardCounter((BY_USER,), 60, 8)
    first = {key for key, u in counter(batch(event(T0, user="alice"), event(T0, user="bob"))) if u.counts}
    again = {key for key, u in counter(batch(event(T0 + 600, user="bob"), event(T0 + 7, user="alice"))) if u.counts}
    assert first == again == {shard_of(BY_USER, ("alice",), 8), shard_of(BY_USER, ("bob",), 8)}


# --- closing windows ---------------------------------------------------------


def test_nothing_closes_until_every_partition_has_reported() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    assert shard.apply([update(0, T0 + 500, {(T0, ("u1",)): 2}, partition_count=3)]) == closed()
    assert shard.apply([update(1, T0 + 500, partition_count=3)]) == closed()
    assert shard.watermark() == -math.inf
    assert shard.apply([update(2, T0 + 60, partition_count=3)]) == closed(count(T0, "u1", 2))


def test_partition_that_has_seen_no_event_holds_windows_open() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 500, {(T0, ("u1",)): 1})])
    assert shard.apply([update(1, -math.inf)]) == closed()
    assert shard.watermark() == -math.inf


def test_window_closes_exactly_when_min_watermark_reaches_its_end() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("u1",)): 1}), update(1, T0 + 10)])
    assert shard.apply([update(0, T0 + 59.9), update(1, T0 + 59.9)]) == closed()
    assert shard.apply([update(0, T0 + 60)]) == closed()  # partition 1 still at T0+59.9
    assert shard.apply([update(1, T0 + 60)]) == closed(count(T0, "u1", 1))


def test_watermark_is_the_minimum_over_partitions() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 300), update(1, T0 + 45)])
    assert shard.watermark() == T0 + 45


def test_fast_partition_does_not_close_windows_a_slow_one_still_fills() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    fast = [update(0, T0 + 60 * i, {(T0 + 60 * i, ("fast",)): 1}) for i in range(60)]
    assert shard.apply(fast) == closed()
    assert shard.apply([update(1, T0 + 6, {(T0, ("slow",)): 2})]) == closed()
    # The slow partition passes T0+120: only the first two windows close.
    assert shard.apply([update(1, T0 + 120, {(T0 + 60, ("slow",)): 1})]) == closed(
        count(T0, "fast", 1),
        count(T0, "slow", 2),
        count(T0 + 60, "fast", 1),
        count(T0 + 60, "slow", 1),
    )


def test_finished_partition_counts_as_infinitely_far_ahead_for_this_run_only() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 5, {(T0, ("a",)): 1, (T0 + 600, ("a",)): 1}, finished=True)])
    assert (shard.watermarks, shard.progress) == ({0: T0 + 5}, {0: math.inf})
    assert shard.apply([update(1, T0 + 60)]) == closed(count(T0, "a", 1))
    assert shard.apply([update(1, T0 + 30, finished=True)]) == closed(count(T0 + 600, "a", 1))
    assert shard.watermark() == math.inf
    # Closed through the last window, not through +inf: later windows stay open.
    assert shard.closed_through == T0 + 660
    restored = WindowShard([BY_USER], 60, BUCKETS, shard.snapshot())
    assert restored.progress == {0: T0 + 5, 1: T0 + 60}


def test_partition_watermark_never_moves_back_but_progress_is_the_latest_report() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 100), update(0, T0 + 50), update(1, T0 + 70)])
    assert shard.watermarks == {0: T0 + 100, 1: T0 + 70}
    assert shard.progress == {0: T0 + 50, 1: T0 + 70}


def test_closed_windows_come_out_in_window_then_key_order() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    counts = {(T0 + 60, ("b",)): 1, (T0, ("c",)): 1, (T0 + 60, ("a",)): 4, (T0, ("a",)): 2}
    emitted = shard.apply([update(0, T0 + 120, counts), update(1, T0 + 500)])
    assert emitted == closed(count(T0, "a", 2), count(T0, "c", 1), count(T0 + 60, "a", 4), count(T0 + 60, "b", 1))


@given(
    keys=st.dictionaries(
        st.tuples(st.sampled_from(["", "a", "ab", "b", "\x00", "é"]), st.text(max_size=3)),
        st.integers(1, 3),
        max_size=40,
    ),
    minimum=st.integers(1, 2),
)
def test_a_closing_window_emits_its_keys_in_value_tuple_order(keys: dict[tuple[str, str], int], minimum: int) -> None:
    # Two fields, the first often shared or a prefix of another: the order
    # is the tuples' own, whichever fields decide it.
    spec = SliceSpec(("app_version", "device_type"), minimum)
    shard = WindowShard([spec], 60, BUCKETS)
    counts = {(T0, values): n for values, n in keys.items()}
    emitted = shard.apply([update(0, T0 + 60, counts, slices=(spec,)), update(1, T0 + 60, slices=(spec,))])
    assert [c.values for c in emitted.counts] == sorted(values for values, n in keys.items() if n >= minimum)


def test_counts_from_several_partitions_and_updates_add_up() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("u1",)): 2}), update(1, T0 + 10, {(T0, ("u1",)): 3})])
    shard.apply([update(0, T0 + 20, {(T0, ("u1",)): 1})])
    assert shard.apply([update(0, T0 + 60), update(1, T0 + 60)]) == closed(count(T0, "u1", 6))


def test_min_count_filters_small_counts() -> None:
    slices = (BY_USER, BY_USER_MIN2)
    shard = WindowShard(slices, 60, BUCKETS)
    counts = {(T0, ("once",)): 1, (T0, ("twice",)): 2, (T0, ("thrice",)): 3}
    emitted = shard.apply(
        [update(0, T0 + 60, counts, slice_index=1, slices=slices), update(1, T0 + 60, slice_index=1, slices=slices)]
    )
    assert emitted == closed(count(T0, "thrice", 3, BY_USER_MIN2), count(T0, "twice", 2, BY_USER_MIN2))
    assert shard.windows == {}


def test_each_window_is_emitted_once() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    first = shard.apply([update(0, T0 + 60, {(T0, ("u1",)): 1}), update(1, T0 + 60)])
    assert first == closed(count(T0, "u1", 1))
    assert shard.apply([update(0, T0 + 60), update(1, T0 + 60)]) == closed()
    assert shard.apply([update(0, T0 + 90), update(1, T0 + 119)]) == closed()
    assert shard.apply([update(0, T0 + 180, finished=True), update(1, T0 + 200, finished=True)]) == closed()


def test_count_for_a_window_its_log_passed_comes_out_uncounted(caplog: pytest.LogCaptureFixture) -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 60, {(T0, ("u1",)): 1}), update(1, T0 + 65)])
    # Both logs passed T0+60: no on-time count can come, so the window is let go of.
    assert shard.revisable == {}
    with caplog.at_level(logging.ERROR, logger="operators.pure.window_shard"):
        out = shard.apply([update(1, T0 + 70, {(T0, ("u1",)): 4, (T0 + 60, ("u1",)): 1})])
    assert out == closed(uncounted=(UncountedCount(T0, T0 + 60, BY_USER, ("u1",), 4),))
    assert shard.uncounted == 4
    assert T0 not in shard.windows
    assert shard.apply([update(0, T0 + 120), update(1, T0 + 120)]) == closed(count(T0 + 60, "u1", 1))
    assert [record.levelno for record in caplog.records] == [logging.ERROR]
    assert "counts for a closed window" in caplog.records[0].getMessage()


def test_count_for_empty_window_its_log_passed_comes_out_uncounted() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 120), update(1, T0 + 120)])
    out = shard.apply([update(0, T0 + 130, {(T0 + 60, ("u1",)): 2})])
    assert out == closed(uncounted=(UncountedCount(T0 + 60, T0 + 120, BY_USER, ("u1",), 2),))
    assert shard.windows == {}


def test_window_closed_by_idle_progress_is_revised_by_a_later_on_time_count() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    # Partition 0 read up to T0+10 and then sat idle long enough to let T0 close.
    first = shard.apply(
        [update(0, T0 + 10, {(T0, ("u1",)): 1, (T0, ("u2",)): 5}, progress=T0 + 130), update(1, T0 + 130)]
    )
    assert first == closed(count(T0, "u1", 1), count(T0, "u2", 5))
    assert shard.revisable == {T0: {("u1",): 1, ("u2",): 5}}
    # Its producer resumes in order, at T0+40: on time by its log. Only the
    # changed key comes out again, with its whole count.
    revised = shard.apply([update(0, T0 + 40, {(T0, ("u1",)): 2, (T0, ("u3",)): 1})])
    assert revised == closed(count(T0, "u1", 3), count(T0, "u3", 1))
    assert shard.progress[0] == T0 + 40
    # Once its log passes the window, the window is final and let go of.
    assert shard.apply([update(0, T0 + 61)]) == closed()
    assert shard.revisable == {}


def test_revision_emits_a_key_only_once_it_reaches_the_minimum() -> None:
    slices = (BY_USER_MIN2,)
    shard = WindowShard(slices, 60, BUCKETS)
    assert (
        shard.apply(
            [
                update(0, T0 + 1, {(T0, ("u1",)): 1}, progress=T0 + 100, slices=slices),
                update(1, T0 + 100, slices=slices),
            ]
        )
        == closed()
    )
    assert shard.apply([update(0, T0 + 2, {(T0, ("u1",)): 1}, slices=slices)]) == closed(
        count(T0, "u1", 2, BY_USER_MIN2)
    )


def test_a_rerun_of_a_bounded_run_revises_the_windows_it_flushed_and_nothing_else() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    flushed = shard.apply(
        [
            update(0, T0 + 30, {(T0, ("a",)): 1, (T0 + 60, ("b",)): 2}, finished=True),
            update(1, T0 + 20, {(T0, ("a",)): 1}, finished=True),
        ]
    )
    assert flushed == closed(count(T0, "a", 2), count(T0 + 60, "b", 2))
    restored = WindowShard([BY_USER], 60, BUCKETS, shard.snapshot())
    # The next run: partition 1 got more events for the window flushed at the end.
    rerun = restored.apply(
        [update(1, T0 + 50, {(T0, ("a",)): 3, (T0 + 120, ("c",)): 1}, finished=True), update(0, T0 + 30, finished=True)]
    )
    assert rerun == closed(count(T0, "a", 5), count(T0 + 120, "c", 1))
    again = WindowShard([BY_USER], 60, BUCKETS, restored.snapshot())
    assert again.apply([update(0, T0 + 30, finished=True), update(1, T0 + 50, finished=True)]) == closed()


def test_a_window_stays_revisable_however_far_progress_runs_ahead_of_the_log() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("a",)): 1}, progress=T0 + 70), update(1, T0 + 70)])
    far = T0 + 60 * 1000  # a bounded run's end, or an event years ahead on partition 1
    shard.apply([update(0, T0 + 10, progress=far), update(1, far)])
    # Partition 0's log is still at T0+10: its on-time counts for T0 merge.
    assert shard.apply([update(0, T0 + 20, {(T0, ("a",)): 1})]) == closed(count(T0, "a", 2))
    assert shard.uncounted == 0


def test_a_window_every_log_passed_takes_no_more_counts() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("a",)): 1}), update(1, T0 + 70)])
    shard.apply([update(0, T0 + 70)])
    assert shard.revisable == {}
    # Only a partition the topic gained later can still send one.
    out = shard.apply([update(2, T0 + 20, {(T0, ("a",)): 1}, partition_count=3)])
    assert out == closed(uncounted=(UncountedCount(T0, T0 + 60, BY_USER, ("a",), 1),))


def test_the_memory_bound_lets_the_oldest_windows_go_and_later_counts_for_them_out_whole() -> None:
    shard = WindowShard([BY_USER_MIN2], 60, BUCKETS, max_windows=2)
    counts = {(T0, ("a",)): 2, (T0 + 60, ("b",)): 1, (T0 + 120, ("c",)): 3}
    out = shard.apply([update(0, T0 + 130, counts, slices=(BY_USER_MIN2,))])
    # Three open windows, room for two: the oldest is emitted, then let go.
    assert out == ClosedCounts([count(T0, "a", 2, BY_USER_MIN2)], [], 1)
    assert sorted(shard.windows) == [T0 + 60, T0 + 120]
    late_for_it = shard.apply([update(1, T0 + 10, {(T0, ("a",)): 1}, slices=(BY_USER_MIN2,))])
    assert late_for_it == closed(uncounted=(UncountedCount(T0, T0 + 60, BY_USER_MIN2, ("a",), 1, WINDOW_LET_GO),))
    restored = WindowShard([BY_USER_MIN2], 60, BUCKETS, shard.snapshot(), max_windows=2)
    again = restored.apply([update(1, T0 + 10, {(T0, ("a",)): 4}, slices=(BY_USER_MIN2,))])
    assert again.uncounted == [UncountedCount(T0, T0 + 60, BY_USER_MIN2, ("a",), 4, WINDOW_LET_GO)]


def test_a_topic_with_fewer_partitions_than_the_state_stops_the_shard() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("a",)): 1}, partition_count=3)])
    with pytest.raises(FewerPartitionsError) as caught:
        shard.apply([update(0, T0 + 20, partition_count=2)])
    assert (caught.value.now, caught.value.stored) == (2, 3)


def test_a_snapshot_of_an_older_version_keeps_its_horizon_as_let_go() -> None:
    legacy = ShardSnapshot("user_id", 60, BUCKETS, 2, {0: T0 + 600, 1: T0 + 600}, T0 + 1200, {}, 2, {})
    shard = WindowShard([BY_USER], 60, BUCKETS, legacy)
    assert shard.let_go_through == T0 + 720
    assert shard.apply([update(0, T0 + 601, {(T0 + 600, ("a",)): 1})]).uncounted


def test_an_update_from_a_process_with_other_settings_stops_the_shard() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    with pytest.raises(ConfigMismatchError, match="^WINDOW_SECONDS: .*60.*300"):
        shard.apply([update(0, T0, {(T0, ("a",)): 1}, window=300)])
    with pytest.raises(ConfigMismatchError, match="^SLICES: "):
        shard.apply([update(0, T0, slices=(BY_USER_MIN2,))])
    other = ShardUpdate(0, 0, 2, T0, T0, {}, ConfigFingerprint("user_id:1", 60, BUCKETS + 1, ROUTING_VERSION))
    with pytest.raises(ConfigMismatchError, match="^SHARDS_PER_SLICE: "):
        shard.apply([other])
    older = ShardUpdate(0, 0, 2, T0, T0, {}, ConfigFingerprint("user_id:1", 60, BUCKETS, ROUTING_VERSION - 1))
    with pytest.raises(ConfigMismatchError, match="^ROUTING_SCHEME: "):
        shard.apply([older])


def test_counter_and_shard_of_one_configuration_agree_on_the_fingerprint() -> None:
    slices = (BY_USER, BY_APP_DEVICE)
    assert ShardCounter(slices, 60, 4).fingerprint == WindowShard(slices, 60, 4).fingerprint
    assert ShardCounter(slices, 60, 4).fingerprint != ShardCounter(slices[::-1], 60, 4).fingerprint


def test_window_ending_after_the_closed_watermark_still_accepts_counts() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    # The minimum watermark T0+65 closed [T0, T0+60) but not [T0+60, T0+120).
    shard.apply([update(0, T0 + 65), update(1, T0 + 65)])
    shard.apply([update(0, T0 + 70, {(T0 + 60, ("u1",)): 2})])
    assert shard.uncounted == 0
    assert shard.apply([update(0, T0 + 120), update(1, T0 + 120)]) == closed(count(T0 + 60, "u1", 2))


def test_empty_apply_emits_nothing() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    assert shard.apply([]) == closed()


# --- snapshot and restore ----------------------------------------------------


def _history() -> list[list[ShardUpdate]]:
    return [
        [update(0, T0 + 20, {(T0, ("a",)): 2, (T0 + 60, ("b",)): 1})],
        [update(1, T0 + 65, {(T0, ("b",)): 1})],
        [update(0, T0 + 130, {(T0 + 120, ("a",)): 3})],
        [update(1, T0 + 100, {(T0 + 60, ("a",)): 1, (T0 + 120, ("a",)): 1})],
        [update(1, T0 + 200, {(T0 + 180, ("c",)): 1}), update(0, T0 + 200)],
        [update(0, T0 + 250, finished=True), update(1, T0 + 250, finished=True)],
    ]


@pytest.mark.parametrize("split", range(6))
def test_restored_shard_continues_with_identical_output(split: int) -> None:
    history = _history()
    original = WindowShard([BY_USER], 60, BUCKETS)
    for updates in history[:split]:
        original.apply(updates)
    snapshot = original.snapshot()
    restored = WindowShard([BY_USER], 60, BUCKETS, snapshot)
    assert restored.snapshot() == snapshot
    for updates in history[split:]:
        assert restored.apply(updates) == original.apply(updates)
        assert restored.snapshot() == original.snapshot()


def test_uninterrupted_history_emits_every_count_once() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    emitted = [c for updates in _history() for c in shard.apply(updates).counts]
    assert emitted == [
        count(T0, "a", 2),
        count(T0, "b", 1),
        count(T0 + 60, "a", 1),
        count(T0 + 60, "b", 1),
        count(T0 + 120, "a", 4),
        count(T0 + 180, "c", 1),
    ]


def test_snapshot_contents() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 70, {(T0, ("a",)): 2, (T0 + 60, ("b",)): 1}, slice_index=0), update(1, T0 + 61)])
    assert shard.snapshot() == ShardSnapshot(
        "user_id",
        60,
        BUCKETS,
        2,
        {0: T0 + 70, 1: T0 + 61},
        T0 + 61,
        {T0 + 60: {("b",): 1}},
        ROUTING_VERSION,
        {},
        T0 + 61,
        -math.inf,
        (),
    )


def test_restoring_state_routed_by_an_older_scheme_is_refused() -> None:
    # A snapshot pickled before routing was versioned has no `routing` field.
    old = ShardSnapshot("user_id", 60, BUCKETS, 2, {0: T0 + 70, 1: T0 + 61}, T0 + 61, {T0 + 60: {("b",): 1}})
    assert old.routing == 1
    with pytest.raises(ValueError, match="SHARDS_PER_SLICE: .*scheme 1.*new recovery directory"):
        WindowShard([BY_USER], 60, BUCKETS, old)


def test_snapshot_is_independent_of_later_mutation() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("a",)): 1, (T0 + 60, ("a",)): 1}), update(1, T0 + 5)])
    snapshot = shard.snapshot()
    frozen = copy.deepcopy(snapshot)
    shard.apply([update(0, T0 + 30, {(T0, ("a",)): 5, (T0, ("new",)): 1, (T0 + 240, ("b",)): 1})])
    shard.apply([update(1, T0 + 61), update(2, T0 + 61, partition_count=3)])
    assert snapshot == frozen


def test_restored_shard_does_not_mutate_the_snapshot() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("a",)): 1}), update(1, T0 + 5)])
    snapshot = shard.snapshot()
    frozen = copy.deepcopy(snapshot)
    restored = WindowShard([BY_USER], 60, BUCKETS, snapshot)
    restored.apply([update(0, T0 + 30, {(T0, ("a",)): 5, (T0 + 60, ("b",)): 1}), update(1, T0 + 120)])
    assert snapshot == frozen


def test_restoring_with_another_window_length_is_refused() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("a",)): 1})])
    with pytest.raises(ValueError, match="WINDOW_SECONDS") as caught:
        WindowShard([BY_USER], 300, BUCKETS, shard.snapshot())
    assert "60" in str(caught.value) and "300" in str(caught.value)


def test_logic_reuses_the_snapshot_until_a_batch_changes_the_state() -> None:
    logic = WindowShardLogic([BY_USER], 60, BUCKETS, None, input_topic="user-login", max_windows=128, decisions=())
    first = logic.snapshot()
    assert logic.snapshot() is first
    emitted, retain = logic.on_batch([update(0, T0 + 10, {(T0, ("a",)): 1})])
    assert (emitted, retain) == ([], False)
    second = logic.snapshot()
    assert second is not first
    assert second != first
    assert logic.snapshot() is second
    assert logic.on_eof() == ([], False)
    assert logic.snapshot() is second


def test_logic_returns_the_resume_state_until_changed() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0 + 10, {(T0, ("a",)): 1})])
    resume = shard.snapshot()
    logic = WindowShardLogic([BY_USER], 60, BUCKETS, resume, input_topic="user-login", max_windows=128, decisions=())
    assert logic.snapshot() is resume
    assert logic.on_batch([update(0, T0 + 60), update(1, T0 + 60)]) == ([ClosedCounts([count(T0, "a", 1)], [])], False)
    assert logic.snapshot() is not resume
    assert logic.snapshot().windows == {}


def test_logic_on_eof_with_open_windows_warns_and_emits_nothing(caplog: pytest.LogCaptureFixture) -> None:
    logic = WindowShardLogic([BY_USER], 60, BUCKETS, None, input_topic="user-login", max_windows=128, decisions=())
    logic.on_batch([update(0, T0 + 10, {(T0, ("a",)): 1})])
    with caplog.at_level(logging.WARNING, logger="operators.count"):
        assert logic.on_eof() == ([], False)
    assert "open_windows=1" in caplog.text


# --- counter and shards together ---------------------------------------------


def test_counter_into_shards_matches_a_direct_count() -> None:
    slices = (BY_USER, BY_APP_DEVICE)
    counter = ShardCounter(slices, 60, 4)
    shards: dict[str, WindowShard] = {}
    emitted: list[WindowCount] = []
    batches = [
        batch(event(T0 + 1, user="a"), event(T0 + 2, user="b", app="1.0"), partition=0, watermark=T0 - 8),
        batch(event(T0 + 30, user="a"), partition=1, watermark=T0 + 20),
        batch(event(T0 + 61, user="c", device_type="ios"), partition=0, watermark=T0 + 51, finished=True),
        batch(event(T0 + 59, user="a"), partition=1, watermark=T0 + 49, finished=True),
    ]
    for b in batches:
        for key, shard_update in counter(b):
            emitted += shards.setdefault(key, WindowShard(slices, 60, BUCKETS)).apply([shard_update]).counts
    got = sorted((c.window_start, c.slice.name, c.values, c.count) for c in emitted)
    assert got == [
        (T0, "app_version+device_type", ("1.0", "android"), 1),
        (T0, "app_version+device_type", ("2.3.0", "android"), 3),
        (T0, "user_id", ("a",), 3),
        (T0, "user_id", ("b",), 1),
        (T0 + 60, "app_version+device_type", ("2.3.0", "ios"), 1),
        (T0 + 60, "user_id", ("c",), 1),
    ]
    assert sum(shard.uncounted for shard in shards.values()) == 0


def test_restoring_with_another_shard_count_is_refused() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0, {(T0, ("a",)): 1})])
    with pytest.raises(ValueError, match="SHARDS_PER_SLICE"):
        WindowShard([BY_USER], 60, BUCKETS + 1, shard.snapshot())


def test_restoring_a_slice_no_longer_configured_is_refused() -> None:
    shard = WindowShard([BY_USER], 60, BUCKETS)
    shard.apply([update(0, T0, {(T0, ("a",)): 1})])
    with pytest.raises(ValueError, match="SLICES"):
        WindowShard([BY_APP_DEVICE], 60, BUCKETS, shard.snapshot())


def test_restoring_finds_the_slice_by_name_when_slices_are_reordered() -> None:
    before, after = (BY_USER, BY_APP_DEVICE), (BY_APP_DEVICE, BY_USER)
    shard = WindowShard(before, 60, BUCKETS)
    shard.apply([update(0, T0, {(T0, ("a",)): 1}, slice_index=0, slices=before)])
    restored = WindowShard(after, 60, BUCKETS, shard.snapshot())
    emitted = restored.apply(
        [update(0, T0 + 70, slice_index=1, slices=after), update(1, T0 + 70, slice_index=1, slices=after)]
    )
    assert [(c.slice.name, c.values, c.count) for c in emitted.counts] == [("user_id", ("a",), 1)]
    assert emitted.uncounted == []


def test_an_update_crosses_processes_unchanged() -> None:
    original = update(1, T0 + 5.5, {(T0, ("a",)): 2, (T0 + 60, ("b",)): 1}, progress=math.inf, partition_count=3)
    copy_ = pickle.loads(pickle.dumps(original))
    assert copy_ == original
    assert type(copy_) is ShardUpdate and type(copy_.fingerprint) is ConfigFingerprint


def test_counter_gives_shards_the_settled_watermark_when_the_batch_has_one() -> None:
    counter = ShardCounter((BY_USER,), 60, 1)
    held = PartitionBatch(0, 2, [event(T0 + 1)], [], [], T0 + 50, False, True, T0 + 50, None, T0 + 10)
    ((_key, shard_update),) = counter(held)
    # Shards make windows final by it; closing still goes by the progress.
    assert (shard_update.watermark, shard_update.progress) == (T0 + 10, T0 + 50)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 400),
            st.sampled_from(["u1", "u2", "ü3", "u4", "u5", "u6"]),
            st.sampled_from(["1.0", "2.0"]),
            st.sampled_from(["ios", "android"]),
            st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        ),
        max_size=60,
    ),
    st.sampled_from([1, 2, 4, 7]),
    st.booleans(),
)
def test_counter_counts_and_routes_as_one_event_at_a_time(rows: list, buckets: int, with_starts: bool) -> None:
    # Events in any time order, with or without the tracker's window starts:
    # each count lands in `shard_of` its key, summed per window and key.
    slices = (BY_USER, SliceSpec(("user_id", "ip"), 1), BY_APP_DEVICE, SliceSpec(("ip", "device_type"), 1))
    events = [event(T0 + t, user=u, app=a, device_type=d, ip=ip) for t, u, a, d, ip in rows]
    made = batch(*events, watermark=T0, progressed=False)
    if with_starts:
        made = dataclasses.replace(made, starts=[int(e.event_time // 60) * 60 for e in events])
    expected: dict[str, dict[tuple[int, tuple[str, ...]], int]] = {}
    for index, spec in enumerate(slices):
        for one in events:
            values = key_getter(spec)(one)
            counts = expected.setdefault(f"{index}@{shard_of(spec, values, buckets)}", {})
            start = int(one.event_time // 60) * 60
            counts[(start, values)] = counts.get((start, values), 0) + 1
    got = {f"{u.slice_index}@{key}": flat(u.counts) for key, u in ShardCounter(slices, 60, buckets)(made)}
    assert got == expected
