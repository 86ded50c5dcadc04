"""Where loginflow's time goes, without Kafka: the real topology over in-memory partitions.

    python -m bench.profile_loginflow --events 200000 [--profiler cprofile|pyinstrument|none]

Builds `dataflow.build_flow` with `operators.memory_source.MemorySource`
(the same `PartitionTracker` the Kafka source runs) and `TestingSink`s, runs
it with `bytewax.testing.run_main` (one worker, in this process) and prints
the hottest functions. Without a profiler it prints the plain rate, the
in-process ceiling for the Python part of the dataflow; with ``--stage``
it also times each stage's pure function alone on the same data.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bytewax.testing import TestingSink, run_main

from devkit.generator.events import GeneratorConfig, generate
from devkit.memory_source import KeyValue, MemorySource
from operators.runtime.settings import Settings


def make_partitions(events: int, partitions: int) -> dict[int, list[KeyValue]]:
    """The benchmark's input mix, generated in memory."""
    config = GeneratorConfig(
        count=events,
        users=50_000,
        bad_fraction=0.01,
        late_fraction=0.005,
        missing_device_type=0.03,
        partitions=partitions,
        span=7200.0,
    )
    result: dict[int, list[KeyValue]] = defaultdict(list)
    for message in generate(config):
        result[message.partition].append((message.key, message.value))
    return dict(result)


def build(partitions: dict[int, list[KeyValue]], settings: Settings) -> tuple[Any, list[Any]]:
    """The production topology over memory, and the list its metrics land in."""
    import dataflow  # noqa: PLC0415 - importing builds the module-level flow from the environment

    metrics: list[Any] = []
    source = MemorySource(
        partitions, settings.window_seconds, settings.allowed_lateness_seconds, batch_size=settings.batch_size
    )
    sinks = dataflow.Sinks(metrics=TestingSink(metrics), dlq=TestingSink([]), late=TestingSink([]))
    return dataflow.build_flow(settings, source=source, sinks=sinks), metrics


def stage_timings(partitions: dict[int, list[KeyValue]], settings: Settings) -> dict[str, float]:
    """Seconds each pure stage takes alone over the whole input, outside Bytewax."""
    from operators.pure.encoding import encode_metrics  # noqa: PLC0415
    from operators.pure.events import RawMessage, parse_value  # noqa: PLC0415
    from operators.pure.partition import PartitionTracker  # noqa: PLC0415
    from operators.pure.shards import ShardCounter  # noqa: PLC0415
    from operators.pure.window_shard import WindowShard  # noqa: PLC0415

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        started = time.perf_counter()
        value = fn()
        return time.perf_counter() - started, value

    values = [value for messages in partitions.values() for _key, value in messages]
    timings: dict[str, float] = {}
    timings["parse_value"], _ = timed(lambda: [parse_value(v) for v in values])
    batch_size = settings.batch_size

    def track_all() -> list[Any]:
        batches = []
        for partition, messages in partitions.items():
            tracker = PartitionTracker(
                partition, len(partitions), settings.window_seconds, settings.allowed_lateness_seconds
            )
            for start in range(0, len(messages), batch_size):
                chunk = messages[start : start + batch_size]
                raws = [RawMessage(k, v, partition, start + i) for i, (k, v) in enumerate(chunk)]
                batches.append(tracker.track(raws, finished=start + batch_size >= len(messages)))
        return batches

    timings["track (parse + lateness)"], batches = timed(track_all)
    counter = ShardCounter(settings.slices, settings.window_seconds, settings.shards_per_slice)
    timings["ShardCounter (pre-aggregate)"], updates = timed(lambda: [u for b in batches for u in counter(b)])
    shards: dict[str, WindowShard] = {}

    def apply_all() -> list[Any]:
        out = []
        for key, update in updates:
            shard = shards.get(key)
            if shard is None:
                shard = shards[key] = WindowShard(settings.slices, settings.window_seconds, settings.shards_per_slice)
            closed = shard.apply([update])
            if closed.counts:
                out.append((key, closed))
        return out

    timings["WindowShard.apply (close)"], counts = timed(apply_all)
    timings["encode_metrics"], _ = timed(lambda: [encode_metrics(item) for item in counts])
    return timings


def main() -> None:
    """Generate, run (optionally under a profiler), report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--profiler", choices=("none", "cprofile", "pyinstrument"), default="cprofile")
    parser.add_argument("--stages", action="store_true", help="also time each pure stage alone")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    settings = Settings()
    partitions = make_partitions(args.events, args.partitions)
    total = sum(map(len, partitions.values()))
    flow, metrics = build(partitions, settings)

    started = time.perf_counter()
    if args.profiler == "cprofile":
        profile = cProfile.Profile()
        profile.runcall(run_main, flow)
        elapsed = time.perf_counter() - started
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
    elif args.profiler == "pyinstrument":
        from pyinstrument import Profiler  # noqa: PLC0415 - only in the bench venv

        profiler = Profiler(interval=0.0005)
        profiler.start()
        run_main(flow)
        profiler.stop()
        elapsed = time.perf_counter() - started
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    else:
        run_main(flow)
        elapsed = time.perf_counter() - started
    print(
        f"{total:,} messages in {elapsed:.2f}s = {total / elapsed:,.0f} msg/s in-process "
        f"({args.profiler}), {len(metrics):,} metric records"
    )
    if args.stages:
        for name, seconds in stage_timings(partitions, settings).items():
            print(f"  {name:32s} {seconds:7.3f}s  {seconds / total * 1e6:6.2f} µs/message")


if __name__ == "__main__":
    main()
