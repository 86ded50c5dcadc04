"""The composite operators `dataflow.py` is built from, and the logic beneath them.

- `read_login_events` (`operators.read`): Kafka input, parsed and split into
  on-time events, rejects and late events.
- `count_slices_in_windows` (`operators.count`): event-time tumbling windows
  counted per slice key.
- `write_kafka` (`operators.write`): a stream of records onto a topic.

Beneath them, by role: `operators.pure` (no I/O, no clock: the input
contract, event-time tracking, shard counting, record encoding),
`operators.kafka` (everything that talks to the broker) and
`operators.runtime` (settings, logs, metrics, stopping, recovery store).
Nothing here reads the environment or touches Kafka at import time.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from operators.count import SliceCounts, count_slices_in_windows
    from operators.read import LoginStreams, read_login_events
    from operators.write import Sinks, kafka_sinks, write_kafka

# Loaded on first use, so that importing a pure module (`operators.pure.events`
# in the generator, say) does not pull in Bytewax, librdkafka and Prometheus.
_HOME = {
    "LoginStreams": "operators.read",
    "read_login_events": "operators.read",
    "SliceCounts": "operators.count",
    "count_slices_in_windows": "operators.count",
    "Sinks": "operators.write",
    "kafka_sinks": "operators.write",
    "write_kafka": "operators.write",
}

__all__ = [
    "LoginStreams",
    "SliceCounts",
    "Sinks",
    "count_slices_in_windows",
    "kafka_sinks",
    "read_login_events",
    "write_kafka",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        msg = f"module 'operators' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(import_module(_HOME[name]), name)
