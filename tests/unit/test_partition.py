"""Per-partition event time: watermark, lateness, idle advance, resume."""

import json
import math

import pytest

from operators.pure.events import RawMessage
from operators.pure.partition import LateEvent, PartitionBatch, PartitionState, PartitionTracker, Reject, window_start

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z, a window boundary for 60 s windows


def login(t: float | str, user: str = "u1") -> bytes:
    return json.dumps({"user_id": user, "timestamp": t}).encode()


def messages(*values: bytes | None, partition: int = 0, first_offset: int = 0) -> list[RawMessage]:
    return [RawMessage(b"k", value, partition, offset) for offset, value in enumerate(values, start=first_offset)]


def tracker(max_event_time: float = -math.inf, watermark: float = -math.inf) -> PartitionTracker:
    return PartitionTracker(0, 3, 60, 10.0, max_event_time, watermark)


def times(batch: PartitionBatch) -> list[float]:
    return [event.event_time for event in batch.events]


def test_fresh_tracker_has_no_progress() -> None:
    fresh = tracker()
    assert (fresh.max_event_time, fresh.watermark) == (-math.inf, -math.inf)
    batch = fresh.track([])
    assert batch == PartitionBatch(
        0, 3, [], [], [], -math.inf, finished=False, progressed=False, progress=-math.inf, starts=[]
    )


def test_batch_carries_partition_and_partition_count() -> None:
    batch = PartitionTracker(2, 5, 60, 10.0).track(messages(login(T0), partition=2))
    assert (batch.partition, batch.partition_count) == (2, 5)


def test_watermark_is_max_event_time_minus_lateness() -> None:
    t = tracker()
    batch = t.track(messages(login(T0 + 30), login(T0 + 45), login(T0 + 40)))
    assert times(batch) == [T0 + 30, T0 + 45, T0 + 40]
    assert t.max_event_time == T0 + 45
    assert t.watermark == batch.watermark == T0 + 35


def test_watermark_never_moves_back() -> None:
    t = tracker()
    watermarks = [t.track(messages(login(T0 + s))).watermark for s in (50, 20, 55, 41)]
    assert watermarks == [T0 + 40, T0 + 40, T0 + 45, T0 + 45]


def test_late_boundary_window_end_equal_to_watermark_is_late() -> None:
    t = tracker()
    # T0+70 puts the watermark at T0+60: window [T0, T0+60) ends exactly there.
    t.track(messages(login(T0 + 70)))
    assert t.watermark == T0 + 60
    late_message, on_time_message = messages(login(T0 + 59), login(T0 + 60), first_offset=1)
    batch = t.track([late_message, on_time_message])
    assert batch.late == [LateEvent(late_message, T0)]
    assert times(batch) == [T0 + 60]


def test_fractional_time_just_before_boundary_is_late() -> None:
    t = tracker()
    t.track(messages(login(T0 + 70)))
    batch = t.track(messages(login(T0 + 59.999)))
    assert [late.window_start for late in batch.late] == [T0]
    assert batch.events == []


def test_window_end_just_after_watermark_is_on_time() -> None:
    t = tracker()
    # T0+69.5 puts the watermark at T0+59.5, short of the first window's end.
    t.track(messages(login(T0 + 69.5)))
    batch = t.track(messages(login(T0)))
    assert times(batch) == [T0]
    assert batch.late == []


def test_late_event_does_not_advance_anything() -> None:
    t = tracker()
    t.track(messages(login(T0 + 130)))
    batch = t.track(messages(login(T0 + 5)))
    assert len(batch.late) == 1
    assert (t.max_event_time, t.watermark, batch.watermark) == (T0 + 130, T0 + 120, T0 + 120)


def test_late_event_in_same_batch_as_the_event_that_made_it_late() -> None:
    t = tracker()
    early, front, late = messages(login(T0 + 1), login(T0 + 75), login(T0 + 30))
    batch = t.track([early, front, late])
    assert times(batch) == [T0 + 1, T0 + 75]
    assert batch.late == [LateEvent(late, T0)]
    assert batch.watermark == T0 + 65


def test_out_of_order_within_lateness_counts() -> None:
    t = tracker()
    # T0+65 puts the watermark at T0+55: window [T0, T0+60) is still open.
    batch = t.track(messages(login(T0 + 1), login(T0 + 65), login(T0 + 30), login(T0 + 59.9)))
    assert times(batch) == [T0 + 1, T0 + 65, T0 + 30, T0 + 59.9]
    assert batch.late == []


def test_rejects_keep_message_and_reason_and_do_not_move_the_watermark() -> None:
    t = tracker()
    t.track(messages(login(T0 + 20)))
    bad = messages(b"{oops", None, json.dumps({"user_id": 5, "timestamp": T0 + 500}).encode(), b"", first_offset=1)
    batch = t.track(bad)
    assert batch.rejects == [
        Reject(bad[0], "invalid_json"),
        Reject(bad[1], "tombstone"),
        Reject(bad[2], "bad_type:user_id"),
        Reject(bad[3], "empty_value"),
    ]
    assert batch.events == [] and batch.late == []
    assert (t.max_event_time, t.watermark, batch.watermark) == (T0 + 20, T0 + 10, T0 + 10)


def test_out_of_range_reject_does_not_move_the_watermark() -> None:
    t = tracker()
    t.track(messages(login(T0 + 20)))
    far_future = messages(json.dumps({"user_id": "u", "timestamp": 5_000_000_000}).encode())
    batch = t.track(far_future)
    assert batch.rejects == [Reject(far_future[0], "timestamp_out_of_range")]
    assert (t.max_event_time, t.watermark) == (T0 + 20, T0 + 10)


def test_classification_keeps_log_order_within_each_list() -> None:
    t = tracker()
    t.track(messages(login(T0 + 200)))
    values = [login(T0 + 10, "a"), b"x", login(T0 + 190, "b"), login(T0 + 20, "c"), None, login(T0 + 195, "d")]
    batch = t.track(messages(*values, first_offset=1))
    assert [event.user_id for event in batch.events] == ["b", "d"]
    assert [late.message.offset for late in batch.late] == [1, 4]
    assert [reject.message.offset for reject in batch.rejects] == [2, 5]


def test_zero_lateness_watermark_is_the_front() -> None:
    t = PartitionTracker(0, 1, 60, 0.0)
    t.track(messages(login(T0 + 60)))
    batch = t.track(messages(login(T0 + 59.5), login(T0 + 60)))
    assert t.watermark == T0 + 60
    assert [late.window_start for late in batch.late] == [T0]
    assert times(batch) == [T0 + 60]


def test_idle_progress_moves_on_from_the_last_event_time_at_wall_clock_speed() -> None:
    t = tracker()
    t.track(messages(login(T0 + 20)))
    # The wall clock is far from event time: only the seconds spent idle count.
    wall = T0 + 5000
    assert t.advance_idle(wall) is False  # idle from now on: nothing has passed yet
    assert t.progress() == T0 + 10
    assert t.advance_idle(wall + 30) is True
    assert t.progress() == T0 + 20 + 30 - 10
    # Progress never decides lateness: the watermark is the log's.
    assert (t.watermark, t.max_event_time) == (T0 + 10, T0 + 20)


def test_idle_progress_never_falls_behind_the_watermark_and_only_moves_forward() -> None:
    t = tracker()
    t.track(messages(login(T0 + 100)))
    t.advance_idle(T0 + 500)
    assert t.advance_idle(T0 + 400) is False  # a clock step back changes nothing
    assert t.progress() == T0 + 90


def test_an_idle_partition_without_events_holds_nothing_back() -> None:
    t = tracker()
    assert t.progress() == -math.inf
    t.advance_idle(T0)
    assert t.progress() == math.inf
    assert t.track([]).progress == math.inf
    # Its first event brings it back to its own log.
    assert t.track(messages(login(T0 - 500))).progress == T0 - 510


def test_an_in_order_partition_is_never_late_however_long_it_pauses() -> None:
    t = tracker()
    late = []
    event_time, wall = T0, T0 + 10_000  # a producer 10,000 s behind our clock
    for _pause in range(20):
        for _ in range(5):
            event_time += 1
            late += t.track(messages(login(event_time))).late
        wall += 3600  # an hour of silence each time
        t.advance_idle(wall - 3600)
        t.advance_idle(wall)
        assert t.track([]).progress > t.watermark
    assert late == []


def test_reading_again_after_idle_returns_progress_to_the_watermark() -> None:
    t = tracker()
    t.track(messages(login(T0 + 20)))
    t.advance_idle(T0)
    t.advance_idle(T0 + 100)
    assert t.track([]).progress == T0 + 110
    batch = t.track(messages(login(T0 + 25)))
    assert (batch.progress, batch.progressed, batch.late) == (T0 + 15, True, [])


def test_finished_flag_is_carried_on_the_batch() -> None:
    t = tracker()
    assert t.track(messages(login(T0))).finished is False
    assert t.track(messages(login(T0 + 1)), finished=True).finished is True
    assert t.track([], finished=True).finished is True


def test_finished_does_not_change_the_watermark() -> None:
    t = tracker()
    batch = t.track(messages(login(T0 + 20)), finished=True)
    assert batch.watermark == T0 + 10


def test_first_event_progresses_and_an_unchanged_watermark_does_not() -> None:
    t = tracker()
    assert t.track([]).progressed is False
    assert t.track(messages(login(T0 + 20))).progressed is True
    assert t.track([]).progressed is False
    assert t.track(messages(login(T0 + 15))).progressed is False  # behind the front
    assert t.track(messages(login(T0 + 21))).progressed is True


def test_rejects_and_late_events_do_not_progress() -> None:
    t = tracker()
    t.track(messages(login(T0 + 200)))
    batch = t.track(messages(b"junk", None, login(T0 + 5)))
    assert (len(batch.rejects), len(batch.late), batch.progressed) == (2, 1, False)


def test_idle_advance_is_reported_by_the_next_batch_only() -> None:
    t = tracker()
    t.track(messages(login(T0 + 20)))
    t.advance_idle(T0 + 1000)
    t.advance_idle(T0 + 1080)
    assert t.track([]).progressed is True
    assert t.track([]).progressed is False
    t.advance_idle(T0 + 1050)  # behind the last confirmation: no change
    assert t.track([]).progressed is False


def test_finished_batch_always_progresses() -> None:
    t = tracker()
    t.track(messages(login(T0 + 20)))
    assert t.track([], finished=True).progressed is True


def test_restored_tracker_reports_its_watermark_on_the_first_batch() -> None:
    t = tracker(max_event_time=T0 + 130, watermark=T0 + 120)
    first = t.track([])
    assert (first.watermark, first.progressed) == (T0 + 120, True)
    assert t.track([]).progressed is False


def test_restored_tracker_starts_from_the_snapshot() -> None:
    t = tracker(max_event_time=T0 + 130, watermark=T0 + 120)
    batch = t.track(messages(login(T0 + 59), login(T0 + 125)))
    assert [late.window_start for late in batch.late] == [T0]
    assert times(batch) == [T0 + 125]
    assert (t.max_event_time, t.watermark) == (T0 + 130, T0 + 120)


@pytest.mark.parametrize("split", [0, 1, 3, 5, 8, 10])
def test_resuming_from_max_event_time_and_watermark_classifies_identically(split: int) -> None:
    seconds = [5, 75, 30, 140, 62, 58, 200, 131, 191, 189]
    values = [login(T0 + s, f"u{i}") for i, s in enumerate(seconds)]
    values.insert(4, b"not json")
    log = messages(*values)

    one = tracker()
    whole = one.track(log)

    first = tracker()
    head = first.track(log[:split])
    second = tracker(max_event_time=first.max_event_time, watermark=first.watermark)
    tail = second.track(log[split:])

    assert head.events + tail.events == whole.events
    assert head.late + tail.late == whole.late
    assert head.rejects + tail.rejects == whole.rejects
    assert tail.watermark == whole.watermark
    assert (second.max_event_time, second.watermark) == (one.max_event_time, one.watermark)


def test_one_message_batches_classify_like_one_big_batch() -> None:
    seconds = [5, 75, 30, 140, 62, 58, 200, 131, 191, 189]
    log = messages(*[login(T0 + s) for s in seconds])
    whole = tracker().track(log)
    stepwise = tracker()
    batches = [stepwise.track([message]) for message in log]
    assert [e for b in batches for e in b.events] == whole.events
    assert [late for b in batches for late in b.late] == whole.late
    assert batches[-1].watermark == whole.watermark == T0 + 190


@pytest.mark.parametrize(
    ("event_time", "window", "start"),
    [
        (T0, 60, T0),
        (T0 + 0.5, 60, T0),
        (T0 + 59.999, 60, T0),
        (T0 + 60, 60, T0 + 60),
        (T0 + 60.0001, 60, T0 + 60),
        (T0 - 0.001, 60, T0 - 60),
        (T0 + 119.5, 60, T0 + 60),
        (T0 + 3599.9, 3600, T0),
        (1.5, 1, 1),
        (0.0, 60, 0),
    ],
)
def test_window_start(event_time: float, window: int, start: int) -> None:
    assert window_start(event_time, window) == start
    assert type(window_start(event_time, window)) is int


def test_window_start_is_epoch_aligned_not_first_event_aligned() -> None:
    assert window_start(1_694_479_551.5, 60) == 1_694_479_500
    assert window_start(1_694_479_551.5, 300) == 1_694_479_500
    assert window_start(1_694_479_551.5, 7) == 1_694_479_551 // 7 * 7


def test_batch_carries_each_events_window_start() -> None:
    batch = tracker().track(messages(login(T0 + 61), login(T0 + 5), login(T0 + 130)))
    assert batch.starts == [window_start(event.event_time, 60) for event in batch.events] == [T0 + 60, T0, T0 + 120]


def test_tracked_window_start_matches_window_start() -> None:
    t = tracker()
    t.track(messages(login(T0 + 200)))
    batch = t.track(messages(login(T0 + 119.75)))
    assert [late.window_start for late in batch.late] == [window_start(T0 + 119.75, 60)] == [T0 + 60]


def test_a_long_digit_string_just_before_a_boundary_counts_in_its_own_window() -> None:
    # Its digits say T0+59.99999999999: window [T0, T0+60), not the next one.
    batch = tracker().track(messages(login(f"{T0 + 59}.99999999999")))
    assert batch.starts == [T0]
    late = PartitionTracker(0, 3, 60, 10.0, T0 + 200, T0 + 190).track(messages(login(f"{T0 + 59}.99999999999")))
    assert [event.window_start for event in late.late] == [T0]


def test_a_front_just_short_of_a_boundary_by_its_digits_makes_nothing_late_there() -> None:
    # The front T0+69.99999999999 puts the watermark short of T0+60, where
    # the first window ends: an event in that window is still on time.
    t = tracker()
    t.track(messages(login(f"{T0 + 69}.99999999999")))
    assert t.watermark < T0 + 60
    batch = t.track(messages(login(T0 + 59)))
    assert (batch.late, times(batch)) == ([], [T0 + 59])


def test_resume_from_state_round_trips_and_none_starts_fresh() -> None:
    tracker = PartitionTracker(3, 4, 60, 10.0)
    tracker.track([RawMessage(None, json.dumps({"user_id": "u", "timestamp": T0 + 70}).encode(), 3, 0)])
    state = tracker.state(next_offset=1)
    assert state == PartitionState(1, T0 + 70, T0 + 60)
    resumed = PartitionTracker.resume(3, 4, 60, 10.0, state)
    assert (resumed.max_event_time, resumed.watermark) == (T0 + 70, T0 + 60)
    fresh = PartitionTracker.resume(3, 4, 60, 10.0, None)
    assert (fresh.max_event_time, fresh.watermark) == (-math.inf, -math.inf)


def test_a_partition_reading_only_rejects_holds_nothing_back_for_long() -> None:
    t = tracker()
    t.track(messages(login(T0 + 20)))
    garbage = messages(b"{", b"[1]", first_offset=1)
    assert t.track(garbage, now=1000.0).progress == T0 + 10
    # Thirty monotonic seconds of nothing but rejects move it on like idle time.
    assert t.track(garbage, now=1030.0).progress == T0 + 20 + 30 - 10
    # An on-time event brings it back to its log.
    assert t.track(messages(login(T0 + 21)), now=1031.0).progress == T0 + 11


def test_a_partition_reading_only_late_events_holds_nothing_back_for_long() -> None:
    t = tracker()
    t.track(messages(login(T0 + 200)))
    stale = messages(login(T0), login(T0 + 1), first_offset=1)
    t.track(stale, now=50.0)
    batch = t.track(stale, now=80.0)
    assert len(batch.late) == 2
    assert batch.progress == T0 + 200 + 30 - 10


def test_a_partition_with_only_rejects_and_no_event_ever_holds_nothing_back_at_its_head() -> None:
    t = tracker()
    # Still reading: old valid events may follow the garbage.
    assert t.track(messages(b"nope"), now=5.0).progress == -math.inf
    t.advance_idle(6.0)
    assert t.track([]).progress == math.inf


def test_an_event_far_ahead_of_its_record_is_rejected_and_leaves_the_front_alone() -> None:
    t = PartitionTracker(0, 1, 60, 10.0, max_ahead=300.0)
    batch = t.track(
        messages(login(T0), login(T0 + 301), login(T0 + 300), login(4_102_444_000)),
        record_times=[T0, T0, T0, T0],
    )
    assert [reject.reason for reject in batch.rejects] == ["timestamp_ahead_of_record"] * 2
    assert [r.message.offset for r in batch.rejects] == [1, 3]
    assert t.max_event_time == T0 + 300


def test_a_record_without_a_timestamp_is_not_judged_by_it() -> None:
    t = PartitionTracker(0, 1, 60, 10.0, max_ahead=300.0)
    batch = t.track(messages(login(T0 + 10_000), login(T0)), record_times=[-1.0, 0.0])
    assert batch.rejects == []
    assert times(batch) == [T0 + 10_000]
    assert [late.window_start for late in batch.late] == [T0]


def test_a_snapshot_keeps_the_topic_id_and_older_ones_unpickle_without() -> None:
    state = tracker().state(7, "abc")
    assert state.topic_id == "abc"
    assert PartitionState(7, -math.inf, -math.inf).topic_id is None


def test_without_a_check_the_watermark_is_settled_as_it_is_reached() -> None:
    assert tracker().track(messages(login(T0 + 30))).settled is None


def test_a_held_tracker_reports_as_settled_only_what_a_partition_count_check_came_after() -> None:
    t = tracker()
    t.settle(-math.inf)  # a fresh partition in tail mode: the start's listing came before any event
    first = t.track(messages(login(T0 + 30)))
    assert (first.watermark, first.settled) == (T0 + 20, -math.inf)
    t.settle(T0 + 20)  # a check began after the watermark reached T0 + 20
    t.track(messages(login(T0 + 90)))
    idle = t.track([])
    assert (idle.watermark, idle.settled, idle.progressed) == (T0 + 80, T0 + 20, False)
    t.settle(T0 + 80)
    settled = t.track([])
    # A settled watermark that moved is progress every shard must hear of, even without events.
    assert (settled.settled, settled.progressed) == (T0 + 80, True)
    t.settle(T0 + 20)
    assert t.settled == T0 + 80, "what is settled never moves back"
