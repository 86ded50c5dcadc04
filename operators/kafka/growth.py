"""Partitions added to the input topic: noticed, and never raced by a window made final.

Bytewax fixes a source's partitions when the run starts, so a partition
added later is read only after a restart, from its beginning. Until the run
notices, its shards know of the old partitions only. A window every known
partition's log has passed would be final to them, while the new partition,
already being written, may still have on-time events for it: the restart
would find the window let go, and its counts would be `window_closed`.

So a partition's watermark makes windows final only once a partition count
check that *began after* the watermark was reached has found no new
partition (`PartitionTracker.settle`). A partition added before that check
is found by it, and the process stops before anything it could count in was
let go. One check per process and second keeps the partition count request
cheap and a window at most about two seconds longer revisable.
"""

import logging
import math
import threading
import time

from confluent_kafka import Consumer, KafkaException

from operators.kafka.topics import SourceError
from operators.runtime.logs import kv

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
"""How often a process asks whether the input topic gained partitions."""
CHECK_TIMEOUT_S = 1.0


class TopicGrewError(SourceError):
    """The input topic gained partitions, which Bytewax can only pick up at a restart."""


class PartitionCountWatch:
    """The input topic's partition count as this process last confirmed it, shared by its readers."""

    def __init__(self, topic: str, count: int) -> None:
        """Watch `topic`, which had `count` partitions when the run listed them."""
        self.topic = topic
        self.count = count
        # Monotonic time at which the latest check that found no new partition began.
        self.confirmed_from = -math.inf
        self._last_started = time.monotonic()
        self._lock = threading.Lock()

    def poll(self, consumer: Consumer) -> None:
        """Check the count if a check is due; raise `TopicGrewError` if the topic has more partitions."""
        with self._lock:
            started = time.monotonic()
            if started - self._last_started < CHECK_INTERVAL_S:
                return
            self._last_started = started
        try:
            metadata = consumer.list_topics(self.topic, timeout=CHECK_TIMEOUT_S)
        except KafkaException as exc:
            logger.warning("cannot check the partition count %s", kv(topic=self.topic, reason=exc))
            return
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None:
            return
        count = len(found.partitions)
        if count > self.count:
            msg = (
                f"INPUT_TOPIC={self.topic!r} grew from {self.count} to {count} partitions; "
                "stopping so that a restart (same recovery directory) reads the new partitions from their start"
            )
            raise TopicGrewError(msg)
        with self._lock:
            self.confirmed_from = max(self.confirmed_from, started)


class Settling:
    """One reader's side of the watch: which of its watermarks a check has come after."""

    def __init__(self) -> None:
        """Nothing marked yet."""
        self._marked_at: float | None = None
        self._marked: float = -math.inf

    def settled(self, watch: PartitionCountWatch, watermark: float) -> float | None:
        """A watermark newly settled by a check begun after it was reached, or None."""
        if self._marked_at is not None and watch.confirmed_from >= self._marked_at:
            settled, self._marked_at = self._marked, None
            return settled
        if self._marked_at is None:
            self._marked_at, self._marked = time.monotonic(), watermark
        return None
