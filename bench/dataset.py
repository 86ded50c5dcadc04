"""The benchmark input: generated events on a fresh topic, and the exact answer to them.

The input is produced with the project's generator (``python -m devkit.generator``)
and read back from the broker, so the batch answer (`devkit.reference`) is
computed over exactly the bytes every contender reads.

The log ends with a few *trailer* events per partition, stamped an hour after
the generated span. They are valid events under the input contract, counted
by everyone, and they stand for "the stream went on": contenders that can
only close a window when later event time arrives (Quix Streams) close the
generated windows on them. The trailer's own window is excluded from scoring
for every contender, since nothing after it would close it.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import orjson
from confluent_kafka import Producer

from bench.kafka_io import read_topic
from devkit.generator.events import DEFAULT_START
from devkit.records import values_by_partition
from devkit.reference import Expected, expected_output, iso
from operators.pure.slices import SliceSpec

REPO = Path(__file__).resolve().parent.parent
TRAILER_PER_PARTITION = 8
TRAILER_GAP_S = 3600
# Below this many messages a process per partition costs more than it saves.
PARALLEL_REFERENCE_MIN = 200_000


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate: the brief's realistic mix by default."""

    events: int
    partitions: int = 3
    users: int = 50_000
    bad_fraction: float = 0.01
    late_fraction: float = 0.005
    missing_device_type: float = 0.03
    span_s: float = 7200.0
    seed: int = 42

    def generator_args(self, brokers: str, topic: str) -> list[str]:
        """The generator command line for this spec."""
        return [
            sys.executable,
            "-m",
            "devkit.generator",
            "--create-topic",
            "--no-progress",
            "--log-level",
            "WARNING",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--partitions",
            str(self.partitions),
            "--count",
            str(self.events),
            "--users",
            str(self.users),
            "--bad-fraction",
            str(self.bad_fraction),
            "--late-fraction",
            str(self.late_fraction),
            "--missing-device-type",
            str(self.missing_device_type),
            "--span",
            str(self.span_s),
            "--seed",
            str(self.seed),
        ]


@dataclass
class Dataset:
    """An input topic as the broker holds it, with its exact answer."""

    spec: DatasetSpec
    topic: str
    partitions: dict[int, list[bytes | None]]
    expected: Expected
    # Windows starting at or after this are not scored (the trailer's window).
    scored_before: str
    generate_s: float
    reference_s: float

    @property
    def messages(self) -> int:
        """Every message in the topic, trailer included."""
        return sum(len(values) for values in self.partitions.values())

    def summary(self) -> dict[str, object]:
        """Machine-readable facts about the input, for the results file."""
        return {
            "topic": self.topic,
            "partitions": self.spec.partitions,
            "generated_events": self.spec.events,
            "messages": self.messages,
            "counted": self.expected.counted,
            "rejected": len(self.expected.rejects),
            "late": len(self.expected.late),
            "metric_records": len(self.expected.metrics),
            "spec": self.spec.__dict__,
            "generate_s": round(self.generate_s, 2),
            "reference_s": round(self.reference_s, 2),
        }


def trailer_time(spec: DatasetSpec) -> int:
    """Event time of the trailer: a whole window well after the generated span."""
    return int(DEFAULT_START + spec.span_s + TRAILER_GAP_S) // 60 * 60


def _produce_trailer(brokers: str, topic: str, spec: DatasetSpec) -> None:
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "log_level": 0})
    stamp = trailer_time(spec)
    for partition in range(spec.partitions):
        for index in range(TRAILER_PER_PARTITION):
            # Distinct values per event so the slice keys of the trailer hash to
            # every partition of a repartitioned stream (Quix's group_by).
            name = f"trailer-{partition}-{index}"
            value = {
                "user_id": name,
                "timestamp": stamp,
                "app_version": name,
                "device_type": name,
                "ip": name,
                "locale": name,
                "device_id": name,
            }
            producer.produce(topic, orjson.dumps(value), name.encode(), partition=partition)
    if producer.flush(60):
        msg = f"trailer events to {topic} not delivered"
        raise RuntimeError(msg)


def reference(
    partitions: Mapping[int, Sequence[bytes | None]], slices: Sequence[SliceSpec], window_s: int, lateness_s: float
) -> Expected:
    """`devkit.reference.expected_output`, one process per partition on large inputs.

    Partitions are independent until the counts are summed, so each is counted
    with every minimum at 1 and the real minimums are applied to the sums.
    Callers run under ``if __name__ == "__main__"``: the workers are spawned
    (the harness has librdkafka threads, which fork would copy half-alive).
    """
    if sum(map(len, partitions.values())) < PARALLEL_REFERENCE_MIN or len(partitions) < 2:
        return expected_output(partitions, window_s, lateness_s, [(s.fields, s.min_count) for s in slices])
    every_key = [(s.fields, 1) for s in slices]
    with ProcessPoolExecutor(len(partitions), mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(
            pool.map(
                expected_output,
                [{p: v} for p, v in partitions.items()],
                repeat(window_s),
                repeat(lateness_s),
                repeat(every_key),
            )
        )
    merged = Expected()
    counts: Counter[tuple[str, str, tuple[str, ...]]] = Counter()
    for part in parts:
        counts.update(part.metrics)
        merged.rejects.update(part.rejects)
        merged.late.update(part.late)
        merged.counted += part.counted
    minimum = {s.name: s.min_count for s in slices}
    merged.metrics = {key: n for key, n in counts.items() if n >= minimum[key[1]]}
    return merged


def build(
    brokers: str, topic: str, spec: DatasetSpec, slices: tuple[SliceSpec, ...], window_s: int, lateness_s: float
) -> Dataset:
    """Generate `spec` into a new `topic`, append the trailer, and compute the answer."""
    started = time.monotonic()
    result = subprocess.run(spec.generator_args(brokers, topic), cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"generator failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        raise RuntimeError(msg)
    print(f"bench: {result.stderr.strip().splitlines()[-1]}", file=sys.stderr, flush=True)
    _produce_trailer(brokers, topic, spec)
    partitions = values_by_partition(read_topic(brokers, topic))
    generated = time.monotonic() - started
    expected_total = spec.events + spec.partitions * TRAILER_PER_PARTITION
    got = sum(map(len, partitions.values()))
    if got != expected_total:
        msg = f"{topic} holds {got} messages, expected {expected_total}"
        raise RuntimeError(msg)

    started = time.monotonic()
    expected = reference(partitions, slices, window_s, lateness_s)
    reference_s = time.monotonic() - started
    scored_before = iso(trailer_time(spec) // window_s * window_s)
    return Dataset(spec, topic, partitions, expected, scored_before, generated, reference_s)
