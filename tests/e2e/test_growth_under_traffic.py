"""Issue 22, item 1: a partition added to the input topic under live traffic, in tail mode.

A producer writes current events (the wall clock as event time) at about
400 a second, to two partitions, then to three once a third is added 10 s in,
for 30 s. The dataflow runs with recovery on (`-s 1 -b 0`, at-least-once, the
default guarantee) and is restarted within a second each time it exits, as a
supervisor would: it stops when it sees the topic grow, and the restart reads
the new partition from its beginning.

Owed: the exact batch answer over the final log (every message counted,
rejected or late), with no window-count record on the DLQ, and no revision of
a key on login-metrics lowering its count.

The run starts at a fixed point of the 10 s window cycle, so the partition is
added early in a window and just after a partition count check: the worst
case for a run that lets windows become final before it has looked again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Producer

from devkit.broker import wait_until
from devkit.records import Record
from tests.dataflow_runner import DataflowCluster, Finished, init_recovery
from tests.e2e.test_hardening_partition_growth import add_partitions
from tests.hardening import Log, accounted, expected_for_log, read_log, reading_lines, varied_login, wait_for_log
from tests.outputs import TopicFactory, collect, flow_env, output_topics

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 10
LATENESS = 2
RATE = 400  # events a second, over every partition
FEED_S = 30.0
GROW_AT_S = 10.5
# Where in the window cycle the dataflow is started; it reads about 1.5 s later.
START_PHASE_S = 4.0
TICK_S = 0.05
RESTART_WITHIN_S = 1.0
# After the input stops: the last window closes by idle progress within WINDOW + LATENESS
# (plus a head check); a restart and a loaded 2-core machine need the rest.
SETTLE_S = 60.0


class Supervisor:
    """Keeps one dataflow process running: each time it exits, another is started within a second."""

    def __init__(self, env: dict[str, str], log_dir: Path, recovery_args: list[str]) -> None:
        self.env = env
        self.log_dir = log_dir
        self.recovery_args = recovery_args
        self.exits: list[Finished] = []
        self.current: DataflowCluster | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                if self._stopped.is_set():
                    return
                self.current = DataflowCluster(self.env, self.log_dir, extra_args=self.recovery_args).start()
            while not self._stopped.is_set() and not self.current.any_exited():
                time.sleep(0.1)
            if self._stopped.is_set():
                return
            self.exits.extend(self.current.wait(5.0))
            time.sleep(RESTART_WITHIN_S / 2)

    def tail(self) -> str:
        return self.current.tail() if self.current is not None else "(not started)"

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            if self.current is not None:
                self.current.stop()
        self._thread.join(30)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def live_feed(brokers: str, topic: str) -> Iterator[list[int]]:
    """Produce current events for FEED_S seconds from a thread; grow the topic to 3 partitions GROW_AT_S in.

    Yields a one-item list that holds the count sent once the feed ends.
    """
    sent = [0]
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            producer = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True})
            began = time.monotonic()
            partitions, index = 2, 0
            while (elapsed := time.monotonic() - began) < FEED_S:
                if partitions == 2 and elapsed >= GROW_AT_S:
                    add_partitions(brokers, topic, 3)
                    # The producer places by its own metadata: refresh it before writing to the new partition.
                    wait_until(lambda: len(producer.list_topics(topic, timeout=5).topics[topic].partitions) == 3, 30)
                    partitions = 3
                for _ in range(int(RATE * TICK_S)):
                    value = varied_login(time.time(), index)
                    producer.produce(topic, value=value, key=b"k", partition=index % partitions)
                    index += 1
                producer.poll(0)
                time.sleep(TICK_S)
            assert producer.flush(30) == 0, "events stayed undelivered"
            sent[0] = index
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield sent
    thread.join(FEED_S + 60)
    assert not thread.is_alive(), "the feed did not end"
    assert not errors, errors


def lowered_counts(records: list[Record]) -> list[tuple[bytes | None, int, int]]:
    """Each (Kafka key, earlier count, later count) where a later record of a key, in offset order, is lower."""
    latest: dict[tuple[int, bytes | None], int] = {}
    lowered = []
    for record in records:
        count = json.loads(record.value or b"")["count"]
        earlier = latest.get((record.partition, record.key))
        if earlier is not None and count < earlier:
            lowered.append((record.key, earlier, count))
        latest[(record.partition, record.key)] = count
    return lowered


def test_a_partition_added_under_live_traffic_is_counted_exactly_and_no_count_falls(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS)
    recovery = init_recovery(tmp_path / "recovery")

    time.sleep((START_PHASE_S - time.time()) % WINDOW)
    with Supervisor(env, tmp_path, recovery) as supervisor:
        # The traffic starts once the dataflow reads, as it would against a running deployment.
        wait_until(lambda: supervisor.current is not None, 30)
        assert supervisor.current is not None
        wait_for_log(supervisor.current, lambda text: len(reading_lines(text)) >= 2, 60, "reading partition lines")
        with live_feed(kafka_brokers, input_topic) as sent:
            pass
        log = read_log(kafka_brokers, input_topic)
        assert sum(map(len, log.values())) == sent[0]
        assert set(log) == {0, 1, 2}
        wait_for_exact(kafka_brokers, topics, log, supervisor)
    grew = [f for f in supervisor.exits if f"INPUT_TOPIC='{input_topic}' grew from 2 to 3 partitions" in f.stderr]
    assert grew, f"no run stopped for the growth; exits {[f.returncode for f in supervisor.exits]}"


def summary(out: dict[str, list[Record]], expected_counted: int) -> str:
    """Events counted in the one slice every event reaches with a minimum of 1, against the reference."""
    latest: dict[bytes | None, int] = {}
    for record in out["metrics"]:
        value = json.loads(record.value or b"")
        if value["slice"] == "app_version+locale":
            latest[record.key] = value["count"]
    closed = [r for r in out["dlq"] if "source_offset" not in r.headers]
    return (
        f"counted {sum(latest.values())} of {expected_counted} events; "
        f"{len(closed)} window-count records on the DLQ; {len(out['late'])} late records; "
        f"{len(lowered_counts(out['metrics']))} lowered revisions"
    )


def wait_for_exact(brokers: str, topics: dict[str, str], log: Log, supervisor: Supervisor) -> dict[str, list[Record]]:
    """Poll until the outputs are the exact answer for `log`; fail with what they hold at the deadline."""
    expected = expected_for_log(log, WINDOW, LATENESS)
    deadline = time.monotonic() + SETTLE_S
    while True:
        out = collect(brokers, topics)
        # Window-count records name no source message: the accounting below would trip on them.
        sourced = {**out, "dlq": [r for r in out["dlq"] if "source_offset" in r.headers]}
        problem = accounted(sourced, log, WINDOW, LATENESS, revisions=True, allow_duplicates=True)
        if problem is None and len(sourced["dlq"]) == len(out["dlq"]) and not lowered_counts(out["metrics"]):
            return out
        if time.monotonic() >= deadline:
            raise AssertionError(f"{summary(out, expected.counted)}\n{problem}\n{supervisor.tail()}")
        time.sleep(1.0)
