"""Quix Streams 3: a tumbling event-time window count per slice key.

Runs from its own venv (quixstreams pins confluent-kafka<2.13). The pipeline
is what the Quix docs suggest for "count per something that is not the
message key":

1. a value deserializer applies the input contract (`operators.events.parse_value`);
   rejects are ignored (`IgnoreMessage`), the event time becomes the row timestamp;
2. ``apply(expand=True)`` turns each event into one row per slice, valued by
   its slice key;
3. ``group_by`` re-keys rows by slice key (through Quix's internal
   repartition topic, with as many partitions as the input);
4. ``tumbling_window(60 s, grace=10 s).count().final(closing_strategy="partition")``:
   "partition" closes windows on the partition's event time; the default
   "key" would only close a key's window when that same key appears again,
   leaving most user keys' last windows open forever;
5. counts below the slice minimum are dropped; the rest go to the output
   topic in loginflow's record shape.

Changelog topics are off, as loginflow runs without recovery here. The run is
bounded with Quix's own stop condition: ``app.run(timeout=IDLE)`` stops once
no message arrived for ``--idle-timeout`` seconds; the harness times the peer
to the broker's append time of its last output, so the idle wait is not counted.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from quixstreams import Application
from quixstreams.models import Deserializer, IgnoreMessage, Serializer, TimestampType

from bench.peers.common import Counters, PeerArgs, Stopwatch, field_indexes, metric_record, parse_args, write_counters
from operators.pure.events import LoginEvent, parse_value

SEP = "\x1f"


class LoginDeserializer(Deserializer):
    """Input contract as a Quix deserializer: a `LoginEvent`, or the message is ignored."""

    def __init__(self, stopwatch: Stopwatch, counters: Counters) -> None:
        super().__init__()
        self.stopwatch = stopwatch
        self.counters = counters

    def __call__(self, value: bytes, ctx: Any) -> LoginEvent:
        self.stopwatch.mark()
        self.counters.consumed += 1
        parsed = parse_value(value)
        if isinstance(parsed, str):
            self.counters.rejected += 1
            raise IgnoreMessage(parsed)
        return parsed


class RecordValue(Serializer):
    """Serializes the ``(key, value)`` pair built by the encode step to its value bytes."""

    def __call__(self, value: tuple[bytes, bytes], ctx: Any) -> bytes:
        return value[1]


def event_timestamp(value: Any, _headers: Any, timestamp_ms: int, _kind: TimestampType) -> int:
    """The event time in milliseconds; tombstones (None) keep the broker timestamp and are filtered out."""
    if isinstance(value, tuple):
        return int(value[0] * 1000)
    return timestamp_ms


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", required=True, help="RocksDB state directory (fresh per run)")
    parser.add_argument("--idle-timeout", type=float, default=5.0, help="stop after this many idle seconds")


def build(args: PeerArgs, stopwatch: Stopwatch, counters: Counters) -> Application:
    """The Quix application and its dataframe pipeline."""
    slices = args.slices
    indexes = [field_indexes(spec) for spec in slices]
    counters.slice_totals = {spec.name: 0 for spec in slices}

    def count_tombstone(value: Any) -> bool:
        if value is None:
            counters.consumed += 1
            counters.rejected += 1
            return False
        return True

    def on_late(*_args: Any) -> bool:
        counters.late += 1
        return False  # counted here; don't log a warning per late row

    def explode(event: LoginEvent) -> list[str]:
        # Every field after event_time is a str.
        return [f"{i}{SEP}" + SEP.join([event[j] for j in idx]) for i, idx in enumerate(indexes)]  # type: ignore[misc]

    def encode(window: dict[str, Any], key: str, _timestamp: int, _headers: Any) -> tuple[bytes, bytes] | None:
        index, *values = key.split(SEP)
        spec = slices[int(index)]
        count = int(window["value"])
        counters.slice_totals[spec.name] += count
        if count < spec.min_count:
            return None
        counters.emitted += 1
        return metric_record(window["start"] // 1000, args.window_s, spec, tuple(values), count)

    app = Application(
        broker_address=args.brokers,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:12]}",
        auto_offset_reset="earliest",
        state_dir=args.extra["state_dir"],
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(
        args.input_topic, value_deserializer=LoginDeserializer(stopwatch, counters), timestamp_extractor=event_timestamp
    )
    sink = app.topic(args.output_topic, key_serializer="bytes", value_serializer=RecordValue())
    sdf = app.dataframe(source)
    sdf = sdf.filter(count_tombstone)
    sdf = sdf.apply(explode, expand=True)
    sdf = sdf.group_by(lambda slice_key: slice_key, name="slice_key")
    sdf = (
        sdf.tumbling_window(duration_ms=args.window_s * 1000, grace_ms=int(args.lateness_s * 1000), on_late=on_late)
        .count()
        .final(closing_strategy="partition")
    )
    sdf = sdf.apply(encode, metadata=True)
    sdf = sdf.filter(lambda record: record is not None)
    sdf.to_topic(sink, key=lambda record: record[0])
    return app


def main() -> None:
    """Run until idle, then report."""
    args = parse_args(__doc__ or "", _options)
    stopwatch, counters = Stopwatch(), Counters()
    app = build(args, stopwatch, counters)
    app.run(timeout=args.extra["idle_timeout"], collect=False)
    write_counters(args.results, stopwatch, counters, with_slices=True)


if __name__ == "__main__":
    main()
