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
Nothing here reads the environment or touches Kafka at import time, and
importing a pure module loads neither Bytewax nor librdkafka.
"""
