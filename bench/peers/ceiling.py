"""The consume ceiling: raw confluent-kafka consumers reading every partition to its end.

``--parse none`` touches each value's length only; ``--parse orjson`` also
decodes it with `orjson.loads` (what any contender must at least do). Nothing
is counted or produced, so this bounds what a single Python process can read.

``--consumer default`` is one consumer for all partitions with librdkafka's
defaults. ``--consumer loginflow`` reads as loginflow's source does: its
reader settings (`operators.kafka.client.reader_config`: a 16 MiB prefetch
queue per partition, a 10 ms fetch backoff, 100 ms fetch wait) and one
consumer per partition, each asked in turn for up to a batch without waiting,
so the yardstick has every advantage loginflow's reader has.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from bench.peers.common import Stopwatch, assigned_consumer, check, input_ends, parse_args, read_to_end, write_results
from operators.kafka.client import reader_config
from operators.runtime.settings import Settings, kafka_props_from_env

BATCH = 5000
# A round in which no partition had a message ready: wait this long rather than spin.
IDLE_WAIT_S = 0.001


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parse", choices=("none", "orjson"), default="none")
    parser.add_argument("--consumer", choices=("default", "loginflow"), default="default")


def loginflow_consumer_config(brokers: str, env: dict[str, str]) -> dict[str, Any]:
    """loginflow's input consumer settings for `brokers`, KAFKA_PROP_* included, without its log callbacks."""
    settings = Settings(brokers=brokers, kafka_props=kafka_props_from_env(env))
    config = reader_config(settings, on_error=lambda _error: None)
    for callback in ("error_cb", "logger"):
        config.pop(callback, None)
    return {**config, "log_level": 0}


def _without_eof(messages: list[Message]) -> list[Message]:
    # loginflow's reader asks for partition EOF events; they carry no message.
    if not any(map(Message.error, messages)):
        return messages
    return [m for m in messages if not _is_eof(m.error())]


def _is_eof(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError._PARTITION_EOF  # noqa: SLF001


def per_partition_batches(
    consumers: dict[int, Consumer], ends: dict[int, int], batch: int = BATCH
) -> Iterator[list[Message]]:
    """Ask each partition's consumer in turn for what it has, until each reached its end offset."""
    remaining = {p: consumers[p] for p, end in ends.items() if end > 0}
    while remaining:
        got = False
        for partition, consumer in list(remaining.items()):
            messages = _without_eof(consumer.consume(batch, 0))
            if not messages:
                continue
            got = True
            yield messages
            offset = messages[-1].offset()
            if offset is not None and offset + 1 >= ends[partition]:
                del remaining[partition]
        if not got:
            time.sleep(IDLE_WAIT_S)


def main() -> None:
    """Read the input once and report how long it took."""
    args = parse_args(__doc__ or "", _options)
    ends = input_ends(args.brokers, args.input_topic)
    consumers: list[Consumer]
    if args.extra["consumer"] == "loginflow":
        config = loginflow_consumer_config(args.brokers, dict(os.environ))
        by_partition = {p: Consumer(config) for p in sorted(ends)}
        for p, consumer in by_partition.items():
            consumer.assign([TopicPartition(args.input_topic, p, 0)])
        consumers = list(by_partition.values())
        batches = per_partition_batches(by_partition, ends)
    else:
        consumer = assigned_consumer(args.brokers, args.input_topic, sorted(ends))
        consumers = [consumer]
        batches = read_to_end(consumer, args.input_topic, ends)
    stopwatch = Stopwatch()
    parse = args.extra["parse"] == "orjson"
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    consumed = value_bytes = invalid = 0
    for batch in batches:
        stopwatch.mark()
        consumed += len(batch)
        for message in batch:
            check(message)
            value = message.value()
            if value is None:
                invalid += 1
                continue
            value_bytes += len(value)
            if parse:
                try:
                    loads(value)
                except decode_error:
                    invalid += 1
    finished = time.time()
    for consumer in consumers:
        consumer.close()
    write_results(args.results, stopwatch, finished, consumed=consumed, value_bytes=value_bytes, invalid=invalid)


if __name__ == "__main__":
    main()
