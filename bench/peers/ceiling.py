"""The consume ceiling: one raw confluent-kafka consumer reading every partition to its end.

``--parse none`` touches each value's length only; ``--parse orjson`` also
decodes it with `orjson.loads` (what any contender must at least do). Nothing
is counted or produced, so this bounds what a single Python process can read.
"""

from __future__ import annotations

import argparse
import time

import orjson

from bench.peers.common import Stopwatch, assigned_consumer, check, input_ends, parse_args, read_to_end, write_results


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parse", choices=("none", "orjson"), default="none")


def main() -> None:
    """Read the input once and report how long it took."""
    args = parse_args(__doc__ or "", _options)
    ends = input_ends(args.brokers, args.input_topic)
    consumer = assigned_consumer(args.brokers, args.input_topic, sorted(ends))
    stopwatch = Stopwatch()
    parse = args.extra["parse"] == "orjson"
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    consumed = value_bytes = invalid = 0
    for batch in read_to_end(consumer, args.input_topic, ends):
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
    consumer.close()
    write_results(args.results, stopwatch, finished, consumed=consumed, value_bytes=value_bytes, invalid=invalid)


if __name__ == "__main__":
    main()
