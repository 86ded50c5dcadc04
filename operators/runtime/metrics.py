"""Prometheus metrics, served by Bytewax's own endpoint.

Bytewax's dataflow API (``BYTEWAX_DATAFLOW_API_ENABLED=true``, port
``BYTEWAX_DATAFLOW_API_PORT``, 3030 by default) renders the default
`prometheus_client` registry at ``/metrics``, so these appear next to
Bytewax's own. Every process serves its own share; sum over processes.
"""

import time

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_READ = Counter(
    "loginflow_messages_read_total",
    "Messages read from the input topic.",
    ["partition"],
)
REJECTS = Counter(
    "loginflow_rejects_total",
    "Messages sent to the dead-letter topic, by reason.",
    ["reason"],
)
LATE_EVENTS = Counter(
    "loginflow_late_events_total",
    "Valid events sent to the late topic instead of being counted.",
    ["partition"],
)
RECORDS_EMITTED = Counter(
    "loginflow_records_emitted_total",
    "login-metrics records emitted, by slice.",
    ["slice"],
)
WINDOWS_EMITTED = Counter(
    "loginflow_shard_windows_emitted_total",
    "Closed windows that emitted at least one record, counted per shard, by slice.",
    ["slice"],
)
COUNTS_FOR_CLOSED_WINDOWS = Counter(
    "loginflow_counts_for_closed_windows_total",
    "Counted events whose window its shard no longer kept; written to the DLQ as window_closed or window_let_go.",
    ["slice"],
)
WINDOWS_LET_GO = Counter(
    "loginflow_windows_let_go_total",
    "Windows a shard let go of to stay within MAX_WINDOWS_PER_SHARD, by slice.",
    ["slice"],
)
OPEN_WINDOWS = Gauge(
    "loginflow_open_windows",
    "Windows a shard holds that have not been emitted yet.",
    ["shard"],
)
REVISABLE_WINDOWS = Gauge(
    "loginflow_revisable_windows",
    "Emitted windows a shard still keeps because some partition's log has not passed them.",
    ["shard"],
)
SHARD_KEYS = Gauge(
    "loginflow_shard_keys",
    "Keys a shard holds over its open and revisable windows: its state size.",
    ["shard"],
)
OFFSETS_SKIPPED = Counter(
    "loginflow_offsets_skipped_total",
    "Input messages never read because a resume offset fell out of retention.",
    ["partition"],
)
PARTITION_WATERMARK = Gauge(
    "loginflow_partition_watermark_seconds",
    "Event-time watermark of each input partition read by this process.",
    ["partition"],
)
PARTITION_WATERMARK_LAG = Gauge(
    "loginflow_partition_watermark_lag_seconds",
    "Wall time minus each partition's watermark, at scrape time.",
    ["partition"],
)
CONSUMER_LAG = Gauge(
    "loginflow_consumer_lag_messages",
    "Messages in the input partition past the next offset to read.",
    ["partition"],
)
CLOSING_WATERMARK = Gauge(
    "loginflow_closing_watermark_seconds",
    "The highest closing watermark (minimum over input partitions) any shard in this process has seen.",
)
CLOSING_WATERMARK_LAG = Gauge(
    "loginflow_closing_watermark_lag_seconds",
    "Wall time minus the closing watermark, at scrape time: how far behind real time windows close.",
)
# No labels, so the series exist from the start (zero counts under
# at-least-once) and one commit costs one observe, no label lookup.
TRANSACTION_COMMIT_SECONDS = Histogram(
    "loginflow_transaction_commit_seconds",
    "Time one exactly-once writer's commit_transaction took (one per output partition and epoch).",
    # From a local broker's few milliseconds up to the writer's 60 s commit timeout.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


class PartitionGauges:
    """The watermark and lag gauges of one input partition."""

    def __init__(self, partition: int) -> None:
        """Bind the labels once; the hot path only sets values."""
        label = str(partition)
        self.read = MESSAGES_READ.labels(label)
        self.late = LATE_EVENTS.labels(label)
        self.watermark = PARTITION_WATERMARK.labels(label)
        self.consumer_lag = CONSUMER_LAG.labels(label)
        self._watermark_value = float("-inf")
        # Lag is computed when scraped, so an idle partition's lag keeps growing.
        PARTITION_WATERMARK_LAG.labels(label).set_function(self._lag)

    def _lag(self) -> float:
        if self._watermark_value == float("-inf"):
            return float("nan")
        return time.time() - self._watermark_value

    def observe(self, messages: int, late: int, watermark: float) -> None:
        """Record one batch."""
        if messages:
            self.read.inc(messages)
        if late:
            self.late.inc(late)
        if watermark != self._watermark_value and watermark != float("inf"):
            self._watermark_value = watermark
            if watermark != float("-inf"):
                self.watermark.set(watermark)


class ClosingWatermark:
    """The process-wide closing watermark; shards report, the highest wins."""

    value = float("-inf")

    @classmethod
    def observe(cls, watermark: float) -> None:
        """Record a shard's watermark if it is the highest finite one so far."""
        if cls.value < watermark < float("inf"):
            cls.value = watermark
            CLOSING_WATERMARK.set(watermark)

    @classmethod
    def lag(cls) -> float:
        """Seconds between now and the closing watermark (NaN before the first)."""
        return time.time() - cls.value if cls.value > float("-inf") else float("nan")


CLOSING_WATERMARK_LAG.set_function(ClosingWatermark.lag)
