"""What every peer shares: its command line, the end of the input, output records, results.

Peers import only this module, `operators.events` (the input contract) and
`operators.settings` (slice parsing); both need nothing beyond orjson, so the
Quix peer can import them from its own venv.

Each peer writes one JSON results file that the harness reads:
``first_message`` (wall clock when the first input message reached the
peer's code), ``last_output`` (after its producer flushed the last record),
and counters. The harness times the peer from ``first_message`` to the
broker's append time of its last output record.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from operators.pure.slices import FIELDS, SliceSpec
from operators.runtime.settings import DEFAULT_SLICES, parse_slices

# loginflow's producers linger this long (operators/kafka/client.py LINGER_MS); the peers too.
LINGER_MS = 50

KeyValues = tuple[str, ...]


@dataclass(frozen=True)
class PeerArgs:
    """The contract every peer is run with."""

    brokers: str
    input_topic: str
    output_topic: str
    results: Path
    window_s: int
    lateness_s: float
    slices: tuple[SliceSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counters:
    """What a peer saw, for its results file; each peer updates them from one thread."""

    consumed: int = 0
    rejected: int = 0
    late: int = 0
    emitted: int = 0
    slice_totals: dict[str, int] = field(default_factory=dict)


def parse_args(description: str, add: Callable[[argparse.ArgumentParser], None] | None = None) -> PeerArgs:
    """Parse the shared options, plus any a peer adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", default="")
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--window", type=int, default=60, help="tumbling window, seconds")
    parser.add_argument("--lateness", type=float, default=10.0, help="allowed lateness / grace, seconds")
    parser.add_argument("--slices", default=DEFAULT_SLICES)
    if add is not None:
        add(parser)
    ns = vars(parser.parse_args())
    return PeerArgs(
        brokers=ns.pop("brokers"),
        input_topic=ns.pop("input_topic"),
        output_topic=ns.pop("output_topic"),
        results=ns.pop("results"),
        window_s=ns.pop("window"),
        lateness_s=ns.pop("lateness"),
        slices=parse_slices(ns.pop("slices")),
        extra=ns,
    )


def field_indexes(spec: SliceSpec) -> tuple[int, ...]:
    """Positions of a slice's fields in a `LoginEvent` (event_time is index 0)."""
    return tuple(FIELDS.index(name) + 1 for name in spec.fields)


def input_ends(brokers: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of `topic` now: the bounded run's goal."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "bench-ends", "log_level": 0})
    try:
        meta = consumer.list_topics(topic=topic, timeout=30).topics[topic]
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in meta.partitions}
    finally:
        consumer.close()


def assigned_consumer(brokers: str, topic: str, partitions: list[int]) -> Consumer:
    """A consumer reading `partitions` from the beginning, without a consumer group."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "bench-assign-only",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "log_level": 0,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    return consumer


def read_to_end(consumer: Consumer, topic: str, ends: dict[int, int], batch: int = 5000) -> Iterator[list[Message]]:
    """Yield message batches until every partition reached its end offset.

    Callers check `Message.error()` in their own per-message loop; end
    detection asks the client for positions once per batch, not per message.
    """
    remaining = {p: end for p, end in ends.items() if end > 0}
    while remaining:
        messages = consumer.consume(batch, 0.1)
        if messages:
            yield messages
        positions = consumer.position([TopicPartition(topic, p) for p in remaining])
        for tp in positions:
            if tp.offset >= remaining[tp.partition]:
                del remaining[tp.partition]


def check(message: Message) -> None:
    """Raise on a consumer error delivered as a message."""
    error = message.error()
    if error is not None:
        msg = f"read error on partition {message.partition()}: {error.str()}"
        raise RuntimeError(msg)


def output_producer(brokers: str) -> Producer:
    """The producer settings loginflow's own sink uses, so output costs compare."""
    return Producer(
        {
            "bootstrap.servers": brokers,
            "enable.idempotence": True,
            "linger.ms": LINGER_MS,
            "compression.type": "lz4",
            "log_level": 0,
        }
    )


@lru_cache(maxsize=4096)
def isoformat_utc(epoch_seconds: int) -> str:
    """``2024-03-01T00:00:00Z`` for a whole epoch second."""
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_record(
    window_start: int, window_s: int, spec: SliceSpec, values: KeyValues, count: int
) -> tuple[bytes, bytes]:
    """(key, value) of one output record, shaped exactly like loginflow's login-metrics."""
    start = isoformat_utc(window_start)
    value = {
        "window_start": start,
        "window_end": isoformat_utc(window_start + window_s),
        "slice": spec.name,
        "key": dict(zip(spec.fields, values, strict=True)),
        "count": count,
    }
    return orjson.dumps([start, spec.name, *values]), orjson.dumps(value)


def produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    """Produce, serving delivery reports whenever the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


class Stopwatch:
    """The first-message instant, stamped by whichever code sees the first message."""

    def __init__(self) -> None:
        self.first_message: float | None = None

    def mark(self) -> None:
        """Stamp now if nothing was stamped yet."""
        if self.first_message is None:
            self.first_message = time.time()


def write_results(path: Path, stopwatch: Stopwatch, last_output: float | None = None, **counters: Any) -> None:
    """Write the results file the harness reads; `last_output` defaults to now."""
    payload = {"first_message": stopwatch.first_message, "last_output": last_output or time.time(), **counters}
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))


def write_counters(path: Path, stopwatch: Stopwatch, counters: Counters, *, with_slices: bool = False) -> None:
    """`write_results` for a peer that kept `Counters`."""
    extra: dict[str, Any] = {"slice_totals": counters.slice_totals} if with_slices else {}
    write_results(
        path,
        stopwatch,
        consumed=counters.consumed,
        rejected=counters.rejected,
        late_dropped=counters.late,
        emitted=counters.emitted,
        **extra,
    )
