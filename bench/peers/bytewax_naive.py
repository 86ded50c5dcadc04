"""The naive Bytewax baseline: built-in Kafka connectors and a per-key `fold_window`.

Same contract as loginflow (its `parse_value`, the same slices, 60 s
epoch-aligned tumbling windows, 10 s allowed lateness), written the way the
Bytewax docs suggest: every valid event becomes one ``(slice|key, event_time)``
item per slice, and `fold_window` with an `EventClock` counts them per key.
The clock's watermark is per key and advances with system time, so on-time
events can be dropped as late when partitions are read at different speeds
(the reason loginflow keeps its own state); the benchmark measures that.

Runs in-process with one worker (`bytewax.run.cli_main`), so it can write its
results file after the flow ends (the input is read with ``tail=False``, and
the event clock closes every window at end of input).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.connectors.kafka import KafkaError, KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from confluent_kafka import OFFSET_BEGINNING

from bench.peers.common import Counters, PeerArgs, Stopwatch, field_indexes, metric_record, parse_args, write_counters
from operators.pure.events import LoginEvent, parse_value

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SEP = "\x1f"
PRODUCER_CONFIG = {"enable.idempotence": "true", "linger.ms": "50", "compression.type": "lz4"}


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=5000, help="KafkaSource batch size (loginflow's default)")


def build_flow(args: PeerArgs, stopwatch: Stopwatch, counters: Counters) -> Dataflow:
    """The naive topology."""
    slices = args.slices
    indexes = [field_indexes(spec) for spec in slices]

    def parse(message: KafkaSourceMessage[Any, Any] | KafkaError[Any, Any]) -> LoginEvent | None:
        if isinstance(message, KafkaError):
            # Not reached with raise_on_errors=True (the default), which fails the run instead.
            msg = f"read error: {message.err}"
            raise RuntimeError(msg)
        stopwatch.mark()
        counters.consumed += 1
        parsed = parse_value(message.value)
        if isinstance(parsed, str):
            counters.rejected += 1
            return None
        return parsed

    def explode(event: LoginEvent) -> list[tuple[str, float]]:
        # Every field after event_time is a str.
        keys = [f"{i}{SEP}" + SEP.join([event[j] for j in idx]) for i, idx in enumerate(indexes)]  # type: ignore[misc]
        return [(key, event.event_time) for key in keys]

    def encode(item: tuple[str, tuple[int, int]]) -> KafkaSinkMessage[bytes, bytes] | None:
        slice_key, (window_id, count) = item
        index, *values = slice_key.split(SEP)
        spec = slices[int(index)]
        if count < spec.min_count:
            return None
        counters.emitted += 1
        # TumblingWindower aligned to the epoch: window n opens at n * length.
        key, value = metric_record(window_id * args.window_s, args.window_s, spec, tuple(values), count)
        return KafkaSinkMessage(key, value)

    def count_late(_item: object) -> None:
        counters.late += 1

    flow = Dataflow("bytewax_naive")
    source = KafkaSource(
        [args.brokers],
        [args.input_topic],
        tail=False,
        starting_offset=OFFSET_BEGINNING,
        batch_size=args.extra["batch_size"],
    )
    events = op.filter_map("parse", op.input("read", flow, source), parse)
    keyed = op.flat_map("explode", events, explode)
    clock: EventClock[float] = EventClock(
        lambda event_time: datetime.fromtimestamp(event_time, tz=timezone.utc),
        wait_for_system_duration=timedelta(seconds=args.lateness_s),
    )
    windower = TumblingWindower(length=timedelta(seconds=args.window_s), align_to=EPOCH)
    # ordered=False: a count does not depend on order, so items need not wait in
    # per-key buffers for the watermark (the default, ordered=True, is much slower).
    counted = fold_window(
        "count", keyed, clock, windower, lambda: 0, lambda n, _t: n + 1, lambda a, b: a + b, ordered=False
    )
    op.inspect("late", counted.late, lambda _step, item: count_late(item))
    records = op.filter_map("encode", counted.down, encode)
    op.output("write", records, KafkaSink([args.brokers], args.output_topic, add_config=PRODUCER_CONFIG))
    return flow


def main() -> None:
    """Run the flow to the end of the input, then report."""
    args = parse_args(__doc__ or "", _options)
    stopwatch, counters = Stopwatch(), Counters()
    cli_main(build_flow(args, stopwatch, counters), workers_per_process=1)
    write_counters(args.results, stopwatch, counters)


if __name__ == "__main__":
    main()
