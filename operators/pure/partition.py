"""Per-partition event-time progress, decided where the offsets live.

Each input partition keeps its own event-time front: the largest event time
read from it. Its watermark trails that front by the allowed lateness. An
event is late when its window ends at or before its partition's watermark.

Deciding lateness per partition, in log order, from the log alone makes the
answer a pure function of the log: it does not depend on how fast each
partition happens to be read, on the worker count, on restarts, or on any
clock. The tracker state is snapshotted with the partition's offset, so a
resume replays exactly the same decisions.

An event stamped far ahead of its own Kafka record's timestamp (the record's
CreateTime or LogAppendTime, which is in the log too) is rejected as
``timestamp_ahead_of_record``: one event stamped 2030 would otherwise move
its partition's front to 2030 and make every later in-order event late.

Closing windows needs one more input: a partition with no on-time events to
deliver must not hold the others back. So a batch also carries the
partition's *progress*, which the window side closes by. It equals the
watermark while the partition delivers on-time events. While it delivers
none (idle at the head of its log, or reading only rejects and late events),
its front moves on from its last event time at the speed of a monotonic
clock: a producer whose clock lags ours keeps its events on time, and the
last window still closes about WINDOW_SECONDS + ALLOWED_LATENESS_SECONDS
after the input stops. Progress never decides lateness; a window that
progress closed before the log did is revised when on-time counts for it
arrive (see `operators.pure.window_shard`).
"""

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple

from operators.pure.events import DEFAULT_MAX_FIELD_BYTES, LoginEvent, RawMessage, make_parser

DEFAULT_MAX_AHEAD_OF_RECORD_SECONDS = 300.0
"""How far an event time may run ahead of its record's timestamp (MAX_AHEAD_OF_RECORD_SECONDS)."""

AHEAD_OF_RECORD = "timestamp_ahead_of_record"


class Reject(NamedTuple):
    """A message that broke the input contract, and why."""

    message: RawMessage
    reason: str


class LateEvent(NamedTuple):
    """A valid event that arrived after its window could have been emitted."""

    message: RawMessage
    window_start: int


class PartitionState(NamedTuple):
    """What a partition needs to resume: the next offset and its event-time front."""

    next_offset: int
    max_event_time: float
    watermark: float
    # The input topic's id when the offset was taken; None in older snapshots.
    # Offsets of a deleted and recreated topic name other messages.
    topic_id: str | None = None


@dataclass(frozen=True)
class PartitionBatch:
    """Everything one read step learned from one input partition."""

    partition: int
    partition_count: int
    events: list[LoginEvent] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)
    # The partition's watermark after this batch; -inf until it has seen an event.
    watermark: float = -math.inf
    # True on the last batch of a bounded read: the partition holds nothing back.
    finished: bool = False
    # Whether `progress` changed since this partition's previous batch.
    progressed: bool = False
    # How far windows may close as far as this partition knows: the watermark,
    # moved on by idle time at the head of the log; +inf once finished, or
    # while idle without ever having had an event.
    progress: float = -math.inf
    # The window start of each event, as the late decision computed it (None: not given).
    starts: list[int] | None = None
    # The watermark the partition had when the topic was last seen to have no
    # more than `partition_count` partitions; None: the watermark itself. Only
    # this may make windows final (`operators.pure.window_shard`).
    settled: float | None = None


def window_start(event_time: float, window_seconds: int) -> int:
    """Start of the epoch-aligned tumbling window holding `event_time`."""
    return int(event_time // window_seconds) * window_seconds


class PartitionTracker:
    """Parses one partition's messages in log order and keeps its watermark."""

    def __init__(
        self,
        partition: int,
        partition_count: int,
        window_seconds: int,
        allowed_lateness: float,
        max_event_time: float = -math.inf,
        watermark: float = -math.inf,
        *,
        max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
        max_ahead: float = DEFAULT_MAX_AHEAD_OF_RECORD_SECONDS,
    ) -> None:
        """Start fresh, or from a snapshot's `max_event_time` and `watermark`."""
        self._parse = make_parser(max_field_bytes)
        self.max_ahead = max_ahead
        self.partition = partition
        self.partition_count = partition_count
        self.window_seconds = window_seconds
        self.allowed_lateness = allowed_lateness
        self.max_event_time = max_event_time
        self.watermark = watermark
        self._reported_progress = -math.inf
        # None: every watermark reached is settled at once (bounded runs, tests).
        self.settled: float | None = None
        self._reported_settled: float | None = None
        # Monotonic times at which the partition was first, and last, known to
        # have no on-time events to deliver; None while it delivers them.
        self._idle_since: float | None = None
        self._idle_until = -math.inf

    @classmethod
    def resume(
        cls,
        partition: int,
        partition_count: int,
        window_seconds: int,
        allowed_lateness: float,
        state: PartitionState | None,
        max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
        max_ahead: float = DEFAULT_MAX_AHEAD_OF_RECORD_SECONDS,
    ) -> "PartitionTracker":
        """A tracker continuing from a source snapshot, or a fresh one without."""
        front = (-math.inf, -math.inf) if state is None else (state.max_event_time, state.watermark)
        return cls(
            partition,
            partition_count,
            window_seconds,
            allowed_lateness,
            *front,
            max_field_bytes=max_field_bytes,
            max_ahead=max_ahead,
        )

    def state(self, next_offset: int, topic_id: str | None = None) -> PartitionState:
        """The snapshot of a partition whose next read is `next_offset`."""
        return PartitionState(next_offset, self.max_event_time, self.watermark, topic_id)

    def track(
        self,
        messages: Sequence[RawMessage],
        *,
        finished: bool = False,
        record_times: Sequence[float] | None = None,
        now: float | None = None,
    ) -> PartitionBatch:
        """Classify `messages` (in offset order) as events, rejects or late events."""
        return self.track_values(
            [message.value for message in messages],
            messages.__getitem__,
            finished=finished,
            record_times=record_times,
            now=now,
        )

    def track_values(
        self,
        values: Sequence[bytes | None],
        message_at: Callable[[int], RawMessage],
        *,
        finished: bool = False,
        record_times: Sequence[float] | None = None,
        now: float | None = None,
    ) -> PartitionBatch:
        """`track` for message values; `message_at(i)` builds the i-th whole message.

        Only rejects and late events keep their message, so a source need not
        build one per message. `record_times[i]` is the i-th record's Kafka
        timestamp in seconds (0 or less: it has none); `now`, a monotonic
        time, lets a batch without on-time events move the progress on.
        """
        events: list[LoginEvent] = []
        starts: list[int] = []
        rejects: list[Reject] = []
        late: list[LateEvent] = []
        add_event, add_start = events.append, starts.append
        window = self.window_seconds
        watermark = self.watermark
        max_event_time = self.max_event_time
        max_ahead = self.max_ahead
        lateness = self.allowed_lateness
        # Without record times every record counts as having none (`repeat` is endless).
        times: Iterable[float] = repeat(0.0) if record_times is None else record_times
        for index, (parsed, record_time) in enumerate(zip(map(self._parse, values), times, strict=False)):
            if isinstance(parsed, str):
                rejects.append(Reject(message_at(index), parsed))
                continue
            event_time = parsed[0]
            if record_time > 0 and event_time - record_time > max_ahead:
                rejects.append(Reject(message_at(index), AHEAD_OF_RECORD))
                continue
            start = int(event_time // window) * window
            if start + window <= watermark:
                late.append(LateEvent(message_at(index), start))
                continue
            add_event(parsed)
            add_start(start)
            if event_time > max_event_time:
                max_event_time = event_time
                watermark = max(watermark, event_time - lateness)
        self.watermark = watermark
        self.max_event_time = max_event_time
        if events:
            self._idle_since = None
        elif values and now is not None and max_event_time > -math.inf:
            # Rejects and late events alone never keep a partition busy. One
            # that never had an event waits for its head instead: valid old
            # events may still follow the garbage.
            self.advance_idle(now)
        progress = math.inf if finished else self.progress()
        settled = None if self.settled is None else min(self.settled, watermark)
        progressed = progress != self._reported_progress or settled != self._reported_settled
        self._reported_progress = progress
        self._reported_settled = settled
        return PartitionBatch(
            self.partition,
            self.partition_count,
            events,
            rejects,
            late,
            watermark,
            finished,
            progressed,
            progress,
            starts,
            settled,
        )

    def settle(self, through: float) -> None:
        """Note that the topic had no more partitions than known after the watermark reached `through`.

        From then on a batch reports `through` as settled, not the watermark:
        a window the log passed but no partition count check came after may
        still get counts from a partition added meanwhile.
        """
        self.settled = through if self.settled is None else max(self.settled, through)

    def progress(self) -> float:
        """The partition's closing progress (see the module docstring)."""
        if self._idle_since is None:
            return self.watermark
        if self.max_event_time == -math.inf:
            # Nothing read yet, so no event time to move on from: it holds
            # nothing back until it has events.
            return math.inf
        moved_on = self.max_event_time + (self._idle_until - self._idle_since) - self.allowed_lateness
        return max(self.watermark, moved_on)

    def advance_idle(self, now: float) -> bool:
        """Note that, at monotonic time `now`, the partition had no on-time event to deliver.

        Either the broker confirmed nothing more to read, or a read held only
        rejects and late events.

        Moves the closing progress, never the watermark: lateness stays a
        function of the log. Returns whether the progress moved.
        """
        before = self.progress()
        if self._idle_since is None:
            self._idle_since = now
        self._idle_until = max(self._idle_until, now)
        return self.progress() != before
