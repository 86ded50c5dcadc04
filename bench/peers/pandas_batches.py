"""The take-home's approach: pandas DataFrames per processing-time batch, `groupby().size()` per slice.

A confluent-kafka consumer collects valid events (the same input contract,
`operators.events.parse_value`) for ``--batch-seconds`` of wall time, builds
one DataFrame, and for every slice emits ``groupby([window_start, *fields]).size()``
rows that reach the slice's minimum count. Each batch is emitted on its own:
nothing is carried between batches, so a (window, key) seen in several
batches is emitted several times with partial counts, the minimum count is
applied per batch, and there is no notion of lateness (late events count).
That is the approach being measured, faults included.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from bench.peers.common import (
    Stopwatch,
    assigned_consumer,
    check,
    input_ends,
    metric_record,
    output_producer,
    parse_args,
    produce,
    read_to_end,
    write_results,
)
from operators.pure.events import LoginEvent, parse_value
from operators.pure.slices import FIELDS


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-seconds", type=float, default=1.0, help="processing-time batch length")


def main() -> None:
    """Consume to the end in processing-time batches; emit each batch's counts."""
    args = parse_args(__doc__ or "", _options)
    batch_s: float = args.extra["batch_seconds"]
    ends = input_ends(args.brokers, args.input_topic)
    consumer = assigned_consumer(args.brokers, args.input_topic, sorted(ends))
    producer = output_producer(args.brokers)
    stopwatch = Stopwatch()
    columns = ["event_time", *FIELDS]
    pending: list[LoginEvent] = []
    consumed = rejected = emitted = batches = 0
    slice_totals = {spec.name: 0 for spec in args.slices}

    def emit(events: list[LoginEvent]) -> None:
        nonlocal emitted, batches
        if not events:
            return
        batches += 1
        frame = pd.DataFrame.from_records(events, columns=columns)
        frame["window_start"] = (frame["event_time"] // args.window_s * args.window_s).astype("int64")
        for spec in args.slices:
            sizes = frame.groupby(["window_start", *spec.fields], sort=False).size()
            slice_totals[spec.name] += int(sizes.sum())
            for index, count in sizes[sizes >= spec.min_count].items():
                window_start, *values = index
                key, value = metric_record(int(window_start), args.window_s, spec, tuple(values), int(count))
                produce(producer, args.output_topic, key, value)
                emitted += 1
        producer.poll(0)

    deadline = float("inf")
    for batch in read_to_end(consumer, args.input_topic, ends):
        if stopwatch.first_message is None:
            stopwatch.mark()
            deadline = time.monotonic() + batch_s
        consumed += len(batch)
        for message in batch:
            check(message)
            parsed = parse_value(message.value())
            if isinstance(parsed, str):
                rejected += 1
            else:
                pending.append(parsed)
        if time.monotonic() >= deadline:
            emit(pending)
            pending = []
            deadline = time.monotonic() + batch_s
    emit(pending)
    producer.flush(60)
    consumer.close()
    write_results(
        args.results,
        stopwatch,
        consumed=consumed,
        rejected=rejected,
        emitted=emitted,
        batches=batches,
        slice_totals=slice_totals,
    )


if __name__ == "__main__":
    main()
