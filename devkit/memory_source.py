"""An in-memory stand-in for the Kafka source, for flow tests and replays.

It runs the same `PartitionTracker` as the Kafka source over fixed lists of
messages and finishes every partition like a bounded (STOP_AT_END) read.
"""

from collections.abc import Mapping, Sequence

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from operators.pure.events import DEFAULT_MAX_FIELD_BYTES, RawMessage
from operators.pure.partition import PartitionBatch, PartitionState, PartitionTracker

KeyValue = tuple[bytes | None, bytes | None]


class MemorySource(FixedPartitionedSource[PartitionBatch, PartitionState]):
    """Partitions given as lists of ``(key, value)`` pairs, in offset order."""

    def __init__(
        self,
        partitions: Mapping[int, Sequence[KeyValue]],
        window_seconds: int,
        allowed_lateness: float,
        batch_size: int = 2,
        max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
    ) -> None:
        """Small default batches so tests cross many batch boundaries."""
        self.max_field_bytes = max_field_bytes
        self.partitions = partitions
        self.window_seconds = window_seconds
        self.allowed_lateness = allowed_lateness
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        """Every partition id."""
        return [str(partition) for partition in sorted(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: PartitionState | None) -> "_MemoryPartition":
        """Start at the resume offset, or at the beginning."""
        partition = int(for_part)
        tracker = PartitionTracker.resume(
            partition,
            len(self.partitions),
            self.window_seconds,
            self.allowed_lateness,
            resume_state,
            self.max_field_bytes,
        )
        offset = 0 if resume_state is None else resume_state.next_offset
        return _MemoryPartition(self.partitions[partition], tracker, offset, self.batch_size)


class _MemoryPartition(StatefulSourcePartition[PartitionBatch, PartitionState]):
    def __init__(self, messages: Sequence[KeyValue], tracker: PartitionTracker, offset: int, batch_size: int) -> None:
        self.messages = messages
        self.tracker = tracker
        self.offset = offset
        self.batch_size = batch_size
        self.finished = False

    def next_batch(self) -> list[PartitionBatch]:
        if self.finished:
            raise StopIteration
        first, end = self.offset, min(self.offset + self.batch_size, len(self.messages))
        values = [value for _key, value in self.messages[first:end]]

        def message_at(index: int) -> RawMessage:
            key, value = self.messages[first + index]
            return RawMessage(key, value, self.tracker.partition, first + index)

        self.offset = end
        self.finished = end == len(self.messages)
        return [self.tracker.track_values(values, message_at, finished=self.finished)]

    def snapshot(self) -> PartitionState:
        return self.tracker.state(self.offset)
