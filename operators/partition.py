"""Per-partition event-time progress, decided where the offsets live.

Each input partition keeps its own event-time front: the largest event time
read from it. Its watermark trails that front by the allowed lateness. An
event is late when its window ends at or before its partition's watermark.

Deciding lateness per partition, in log order, makes the answer a pure
function of the log: it does not depend on how fast each partition happens to
be read, on the worker count, or on restarts. The window-closing side takes
the minimum over partitions, so it never closes a window that an on-time
event of any partition could still land in (see `operators.windowing`).

The tracker state is snapshotted with the partition's offset, so a resume
replays exactly the same decisions.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from operators.events import LoginEvent, RawMessage, parse_value


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
    # Whether `watermark` or `finished` changed since this partition's previous batch.
    progressed: bool = False


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
    ) -> None:
        """Start fresh, or from a snapshot's `max_event_time` and `watermark`."""
        self.partition = partition
        self.partition_count = partition_count
        self.window_seconds = window_seconds
        self.allowed_lateness = allowed_lateness
        self.max_event_time = max_event_time
        self.watermark = watermark
        self._reported_watermark = -math.inf

    @classmethod
    def resume(
        cls,
        partition: int,
        partition_count: int,
        window_seconds: int,
        allowed_lateness: float,
        state: PartitionState | None,
    ) -> "PartitionTracker":
        """A tracker continuing from a source snapshot, or a fresh one without."""
        if state is None:
            return cls(partition, partition_count, window_seconds, allowed_lateness)
        return cls(
            partition, partition_count, window_seconds, allowed_lateness, state.max_event_time, state.watermark
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
        rejects: list[Reject] = []
        late: list[LateEvent] = []
        window = self.window_seconds
        watermark = self.watermark
        max_event_time = self.max_event_time
        for index, parsed in enumerate(map(parse_value, values)):
            if isinstance(parsed, str):
                rejects.append(Reject(message_at(index), parsed))
                continue
            event_time = parsed.event_time
            start = int(event_time // window) * window
            if start + window <= watermark:
                late.append(LateEvent(message_at(index), start))
                continue
            events.append(parsed)
            if event_time > max_event_time:
                max_event_time = event_time
                watermark = max(watermark, event_time - self.allowed_lateness)
        self.watermark = watermark
        self.max_event_time = max_event_time
        progressed = finished or watermark != self._reported_watermark
        self._reported_watermark = watermark
        return PartitionBatch(
            self.partition,
            self.partition_count,
            events,
            rejects,
            late,
            watermark,
            finished,
            progressed,
        )

    def advance_idle(self, now: float) -> bool:
        """Let wall time carry a caught-up partition's watermark forward.

        A partition with nothing more to read must not hold the others back:
        its front becomes the wall clock, so events that arrive later than
        the allowed lateness behind real time are late. Returns whether the
        watermark moved.
        """
        candidate = now - self.allowed_lateness
        if candidate > self.watermark:
            self.watermark = candidate
            return True
        return False
