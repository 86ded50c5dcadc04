"""The benchmark's Kafka Streams peer against the real broker: exact however far apart its partitions are read.

Behind the peer's repartition, a task's stream time is the largest event time
of any input partition. Here partition 0 is short, so its trailer, an hour
after the generated span, is read while partitions 1 and 2 are still near
their start: Kafka Streams' own window closing (stream time minus a grace)
would then expire windows those partitions still add to.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import orjson
import pytest

from bench import setup_jvm
from bench.contenders import RunSpec, kstreams, launch
from bench.score import decode_metrics, score
from devkit.generator.events import GeneratorConfig, generate
from devkit.records import consume_all, produce
from devkit.reference import expected_output, iso
from operators.runtime.settings import DEFAULT_SLICES, parse_slices
from tests.outputs import TopicFactory, read_partitions

# Needs the JVM peers built with Maven (minutes on a fresh machine): `make bench-check`, not `make test`.
pytestmark = [pytest.mark.kafka, pytest.mark.bench_peer]

WINDOW = 60
LATENESS = 10.0
CONFIG = GeneratorConfig(
    count=30_000,
    users=2000,
    partitions=3,
    skew=(1.0, 25.0, 25.0),
    span=7200.0,
    bad_fraction=0.01,
    late_fraction=0.005,
    seed=11,
)
TRAILER_AT = int(CONFIG.start + CONFIG.span + 3600) // WINDOW * WINDOW


def trailer(partition: int) -> list[tuple[int, bytes, bytes]]:
    """A few events an hour after the span, closing every generated window (as bench.dataset appends)."""
    messages = []
    for index in range(4):
        name = f"trailer-{partition}-{index}"
        fields = dict.fromkeys(("user_id", "app_version", "device_type", "ip", "locale", "device_id"), name)
        messages.append((partition, name.encode(), orjson.dumps({**fields, "timestamp": TRAILER_AT})))
    return messages


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kstreams_peer_counts_every_window_exactly_when_one_partition_is_read_far_ahead(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path, threads: int
) -> None:
    assert setup_jvm.ensure(), "the Kafka Streams peer needs Java 17+ and Maven: python3 -m bench.setup_jvm"
    source = topic_factory(partitions=CONFIG.partitions)
    sink = topic_factory(partitions=CONFIG.partitions)
    generated = [(m.partition, m.key, m.value) for m in generate(CONFIG)]
    produce(kafka_brokers, source, generated + [m for p in range(CONFIG.partitions) for m in trailer(p)])
    inputs = read_partitions(kafka_brokers, source)
    assert len(inputs[0]) * 10 < len(inputs[1]), "partition 0 must end (with its trailer) long before the others"
    slices = parse_slices(DEFAULT_SLICES)
    expected = expected_output(inputs, WINDOW, LATENESS, [(s.fields, s.min_count) for s in slices])

    spec = RunSpec(kafka_brokers, source, {"metrics": sink}, tmp_path, WINDOW, LATENESS, DEFAULT_SLICES, 5.0, 10.0)
    plan = launch(kstreams(threads), spec)
    done = subprocess.run(plan.commands[0], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    assert plan.results is not None
    counters = json.loads(plan.results.read_text())
    assert counters["window_dropped"] == 0, counters
    verdict = score(
        decode_metrics(r.value for r in consume_all(kafka_brokers, sink)), expected.metrics, iso(TRAILER_AT)
    )
    assert verdict.exact, verdict.to_dict()
    assert verdict.matching_records == len([k for k in expected.metrics if k[0] < iso(TRAILER_AT)])
