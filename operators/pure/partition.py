"""Per-partition event-time progress, decided where the offsets live.

Each input partition keeps its own event-time front: the largest event time
read from it. Its watermark trails that front by the allowed lateness. An
event is late when its window ends at or before its partition's watermark.

Deciding lateness per partition, in log order, from the log alone makes the
answer a pure function of the log: it does not depend on how fast each
partition happens to be read, on the worker count, on restarts, or on any
clock. The tracker state is snapshotted with the partition's offset, so a
resume replays exactly the same decisions.

Closing windows needs one more input: a partition with nothing to read must
not hold the others back. So a batch also carries the partition's *progress*,
which the window side closes by. It equals the watermark while the partition
is being read. While the partition is idle at the head of its log, its front
moves on with the wall clock from its last event time, at wall-clock speed:
a producer whose clock lags ours keeps its events on time, and the last
window still closes about WINDOW_SECONDS + ALLOWED_LATENESS_SECONDS after the
input stops. Progress never decides lateness; a window that progress closed
before the log did may be revised when on-time counts for it arrive (see
`operators.pure.window_shard`).
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from operators.pure.events import DEFAULT_MAX_FIELD_BYTES, LoginEvent, RawMessage, make_parser


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
    ) -> None:
        """Start fresh, or from a snapshot's `max_event_time` and `watermark`."""
        self._parse = make_parser(max_field_bytes)
        self.partition = partition
        self.partition_count = partition_count
        self.window_seconds = window_seconds
        self.allowed_lateness = allowed_lateness
        self.max_event_time = max_event_time
        self.watermark = watermark
        self._reported_progress = -math.inf
        # Wall times at which the partition was first, and last, confirmed idle
        # at the head of its log; None while it is being read.
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
    ) -> "PartitionTracker":
        """A tracker continuing from a source snapshot, or a fresh one without."""
        if state is None:
            return cls(partition, partition_count, window_seconds, allowed_lateness, max_field_bytes=max_field_bytes)
        return cls(
            partition,
            partition_count,
            window_seconds,
            allowed_lateness,
            state.max_event_time,
            state.watermark,
            max_field_bytes=max_field_bytes,
        )

    def state(self, next_offset: int) -> PartitionState:
        """The snapshot of a partition whose next read is `next_offset`."""
        return PartitionState(next_offset, self.max_event_time, self.watermark)

    def track(self, messages: Sequence[RawMessage], *, finished: bool = False) -> PartitionBatch:
        """Classify `messages` (in offset order) as events, rejects or late events."""
        return self.track_values([message.value for message in messages], messages.__getitem__, finished=finished)

    def track_values(
        self,
        values: Sequence[bytes | None],
        message_at: Callable[[int], RawMessage],
        *,
        finished: bool = False,
    ) -> PartitionBatch:
        """`track` for message values; `message_at(i)` builds the i-th whole message.

        Only rejects and late events keep their message, so a source need not
        build one per message.
        """
        events: list[LoginEvent] = []
        starts: list[int] = []
        rejects: list[Reject] = []
        late: list[LateEvent] = []
        window = self.window_seconds
        watermark = self.watermark
        max_event_time = self.max_event_time
        for index, parsed in enumerate(map(self._parse, values)):
            if isinstance(parsed, str):
                rejects.append(Reject(message_at(index), parsed))
                continue
            event_time = parsed.event_time
            start = int(event_time // window) * window
            if start + window <= watermark:
                late.append(LateEvent(message_at(index), start))
                continue
            events.append(parsed)
            starts.append(start)
            if event_time > max_event_time:
                max_event_time = event_time
                watermark = max(watermark, event_time - self.allowed_lateness)
        self.watermark = watermark
        self.max_event_time = max_event_time
        if values:
            self._idle_since = None
        progress = math.inf if finished else self.progress()
        progressed = progress != self._reported_progress
        self._reported_progress = progress
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
        )

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
        """Note that the broker confirmed, at wall time `now`, nothing more to read.

        Moves the closing progress, never the watermark: lateness stays a
        function of the log. Returns whether the progress moved.
        """
        before = self.progress()
        if self._idle_since is None:
            self._idle_since = now
        self._idle_until = max(self._idle_until, now)
        return self.progress() != before
