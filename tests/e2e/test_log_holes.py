"""Issue 21: holes in "every message is accounted for", each shown end to end on a real broker.

Each test is one situation in which the starting code lost, misrouted or held
back messages, or silently ignored a changed input topic:

1. a bounded run over a transactional input that keeps growing while it reads;
2. a partition receiving only rejects in tail mode, next to a live one;
3. one event stamped years ahead of its Kafka record time;
4. a pause of the input long in wall time, then on-time events for the window it paused in;
5. the input topic deleted and recreated under a recovery directory;
6. a backfilled partition hundreds of windows behind the other, bounded state.

Every test fails on the starting code and states the behaviour the fix owes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from devkit.broker import free_port, wait_until
from devkit.records import OutMessage, Record, consume_all, create_topic, produce
from devkit.reference import DEFAULT_SLICES, MetricKey
from tests.dataflow_runner import RUN_SCRIPT, DataflowCluster, run_script_env
from tests.e2e.test_metrics import scrape
from tests.hardening import (
    Log,
    check_accounted,
    expected_for_log,
    read_log,
    reading_lines,
    source_in,
    varied_login,
    wait_accounted,
    wait_for_log,
)
from tests.outputs import (
    TopicFactory,
    by_source,
    collect,
    flow_env,
    json_of,
    latest_metrics,
    output_topics,
    source_of,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
LATENESS = 2
# A bounded run over a few hundred messages ends in seconds; "forever" is what is ruled out.
BOUNDED_RUN_TIMEOUT_S = 45.0


Batch = list[tuple[int, bytes]]
"""(partition, value) messages sent together: one transaction, or one flush."""


class Feed:
    """A background producer: `batch(i)` every `interval` seconds, `count` times or until stopped.

    One producer for the whole feed: a new one per message would take longer
    than the interval.
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        batch: Callable[[int], Batch],
        interval: float,
        count: int | None = None,
        transactional: bool = False,
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self.batch = batch
        self.interval = interval
        self.count = count
        self.transactional = transactional
        self.sent = 0
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _producer(self) -> Producer:
        config: dict[str, object] = {"bootstrap.servers": self.brokers, "acks": "all", "enable.idempotence": True}
        if not self.transactional:
            return Producer(config)
        producer = Producer({**config, "transactional.id": f"log-holes-{uuid.uuid4().hex}", "linger.ms": 1})
        producer.init_transactions(30)
        return producer

    def _run(self) -> None:
        try:
            producer = self._producer()
            index = 0
            while not self.stopped.is_set() and (self.count is None or index < self.count):
                rows = self.batch(index)
                if self.transactional:
                    producer.begin_transaction()
                for partition, value in rows:
                    producer.produce(self.topic, value=value, key=b"k", partition=partition)
                if self.transactional:
                    producer.commit_transaction(30)
                else:
                    assert producer.flush(30) == 0, "a message stayed undelivered"
                self.sent += len(rows)
                index += 1
                self.stopped.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.errors.append(exc)

    def __enter__(self) -> Feed:
        self._thread.start()
        return self

    def join(self, timeout: float = 60.0) -> None:
        """Wait for a counted feed to finish (or a stopped one to notice)."""
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), "the feed did not finish"
        assert not self.errors, self.errors

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join()


# --- 1. a bounded run over a transactional input that keeps growing ---------------------------------


def one_per_partition(index: int) -> Batch:
    """A current event on each of partitions 0 and 1."""
    now = time.time()
    return [(0, varied_login(now, 2 * index)), (1, varied_login(now, 2 * index + 1))]


def test_bounded_run_over_a_growing_transactional_input_ends_and_the_next_run_reads_the_rest(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = {
        **flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True),
        **run_script_env(tmp_path / "recovery", 2, 1),
    }
    # A small transaction every ~50 ms: commit markers and open transactions are always just
    # ahead of the reader, so the end offset fixed at the start falls inside one or on a marker.
    with Feed(kafka_brokers, input_topic, one_per_partition, 0.05, transactional=True) as feed:
        time.sleep(2.0)  # something to read before the run starts, and much more while it reads
        with DataflowCluster(env, tmp_path, command=RUN_SCRIPT) as cluster:
            [first] = cluster.wait(BOUNDED_RUN_TIMEOUT_S)
    assert first.returncode == 0, first.stderr[-3000:]

    # What was appended during the first run is the second run's to read.
    with DataflowCluster(env, tmp_path, command=RUN_SCRIPT) as cluster:
        [second] = cluster.wait(BOUNDED_RUN_TIMEOUT_S)
    assert second.returncode == 0, second.stderr[-3000:]

    log = read_log(kafka_brokers, input_topic)
    assert sum(len(rows) for rows in log.values()) == feed.sent
    # The union of both runs: every committed event counted exactly once.
    check_accounted(collect(kafka_brokers, topics), log, WINDOW, LATENESS, revisions=True)


# --- 2. a partition receiving only rejects, next to a live partition ----------------------------------


def garbage_on_1(index: int) -> Batch:
    return [(1, f"not json {index}".encode())]


def current_on_0(index: int) -> Batch:
    return [(0, varied_login(time.time(), index))]


def metrics_on(brokers: str, topic: str) -> dict[MetricKey, int]:
    """The latest count per metric key on `topic`, as a compacted topic keeps it."""
    return latest_metrics(record.value for record in consume_all(brokers, topic))


# From the moment the windows close (the last event + window + lateness); the contract says nothing
# closer, and a loaded 2-core machine needs room.
CLOSE_WITHIN_S = 30.0


def test_a_partition_receiving_only_rejects_does_not_hold_back_the_live_partition(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS)
    with DataflowCluster(env, tmp_path, workers=2) as cluster:
        wait_for_log(cluster, lambda text: len(reading_lines(text)) >= 2, 60, "reading partition lines")
        # Partition 1 has an event-time front, then receives nothing valid, ever again in this test.
        produce(kafka_brokers, input_topic, [(1, b"k", varied_login(time.time(), 0, "one"))])
        with Feed(kafka_brokers, input_topic, garbage_on_1, 0.1):
            with Feed(kafka_brokers, input_topic, current_on_0, 0.1, count=60) as live:
                live.join()
            closed = time.time() + WINDOW + LATENESS
            # Counts do not depend on rejects: the metrics the valid events owe are known now.
            owed = expected_for_log(read_log(kafka_brokers, input_topic), WINDOW, LATENESS).metrics
            wait_until(
                lambda: metrics_on(kafka_brokers, topics["metrics"]) == owed or cluster.any_exited(),
                timeout=max(1.0, closed + CLOSE_WITHIN_S - time.time()),
                interval=1.0,
                message=f"windows not emitted within {CLOSE_WITHIN_S:.0f}s of closing while partition 1 "
                "received only rejects",
            )
            assert not cluster.any_exited(), cluster.tail()
        # The rejects stopped; everything, garbage included, is accounted for.
        log = read_log(kafka_brokers, input_topic)
        wait_accounted(kafka_brokers, topics, log, WINDOW, LATENESS, CLOSE_WITHIN_S, cluster, revisions=True)


# --- 3. one event stamped years ahead of its record ---------------------------------------------------

BASE = 1709251200  # a window boundary in 2024; the records themselves are stamped now
AHEAD_2030 = 1893456000.0  # 2030-01-01T00:00:00Z


def bounded_run(env: dict[str, str], tmp_path: Path) -> None:
    with DataflowCluster(env, tmp_path, command=RUN_SCRIPT) as cluster:
        [finished] = cluster.wait(BOUNDED_RUN_TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr[-3000:]


def without_message(log: Log, source: tuple[int, int]) -> Log:
    """`log` without one message, as the offsets of the others stay."""
    return {p: {o: v for o, v in rows.items() if (p, o) != source} for p, rows in log.items()}


def check_accounted_but_ahead(out: dict[str, list[Record]], log: Log, ahead: tuple[int, int]) -> None:
    """The ahead event is on the DLQ as `timestamp_ahead_of_record`; the rest is the batch answer without it.

    Written against the log without that one message, so the check needs no
    model of record times in the reference.
    """
    closed = [r.value for r in out["dlq"] if r.headers.get("error") == b"window_closed"]
    assert not closed, f"on-time counts dropped as window_closed: {closed[:3]}"
    reasons = [(r.headers.get("error") or b"").decode() for r in out["dlq"] if source_of(r) == ahead]
    assert reasons == ["timestamp_ahead_of_record"], f"the 2030 event at {ahead}: DLQ reasons {reasons}"
    rest = {**out, "dlq": [r for r in out["dlq"] if source_of(r) != ahead]}
    check_accounted(rest, without_message(log, ahead), WINDOW, LATENESS, revisions=True)


def test_an_event_far_ahead_of_its_record_time_is_rejected_and_moves_no_window(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = {
        **flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True),
        **run_script_env(tmp_path / "recovery", 2, 1),
    }
    # Partition 0 runs 20 windows ahead of partition 1; partition 1 has the 2030 event in the middle
    # of in-order events, which must count: trusted, it would make them all late.
    first = [(0, b"k", varied_login(BASE + i * 2.5, i)) for i in range(40)]
    first += [(1, b"k", varied_login(BASE + i * 0.5, i)) for i in range(20)]
    first += [(1, b"k", varied_login(AHEAD_2030, 7, "ahead"))]
    first += [(1, b"k", varied_login(BASE + 10 + i * 0.5, i)) for i in range(6)]
    produce(kafka_brokers, input_topic, first)
    log = read_log(kafka_brokers, input_topic)
    ahead = source_in(log, varied_login(AHEAD_2030, 7, "ahead"))
    bounded_run(env, tmp_path)
    check_accounted_but_ahead(collect(kafka_brokers, topics), log, ahead)

    # On time on both logs, for windows the first run closed at its end: partition 1's far
    # behind the last one (the whole run's end), partition 0's in it. Revisions, not window_closed.
    second = [(1, b"k", varied_login(BASE + 15 + i * 0.5, i)) for i in range(10)]
    second += [(0, b"k", varied_login(BASE + 96 + i * 0.5, i)) for i in range(4)]
    produce(kafka_brokers, input_topic, second)
    bounded_run(env, tmp_path)
    check_accounted_but_ahead(collect(kafka_brokers, topics), read_log(kafka_brokers, input_topic), ahead)


# --- 5. the input topic deleted and recreated under a recovery directory -----------------------------


def recreate_topic(brokers: str, topic: str, partitions: int) -> None:
    """Delete `topic`, wait until the broker no longer lists it, and create it again with `partitions`."""
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=30)
    # All topics, not this one: a metadata request naming a missing topic may auto-create it.
    wait_until(
        lambda: topic not in admin.list_topics(timeout=5).topics,
        timeout=30,
        message=f"{topic} still listed after its deletion",
        retry_on=(KafkaException,),
    )
    # The broker may still be removing its log directories for a moment.
    wait_until(
        lambda: create_topic(brokers, partitions, name=topic),
        timeout=30,
        message=f"{topic} could not be created again",
        retry_on=(KafkaException,),
    )


@pytest.mark.parametrize(
    ("partitions", "notice"),
    [
        pytest.param(2, "recreated", id="same-partition-count"),
        pytest.param(1, "has 1 partitions", id="fewer-partitions"),
    ],
)
def test_a_recreated_input_topic_stops_a_resumed_run(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path, partitions: int, notice: str
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = {
        **flow_env(kafka_brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True),
        **run_script_env(tmp_path / "recovery", 2, 1),
    }
    produce(kafka_brokers, input_topic, [(i % 2, b"k", varied_login(BASE + i, i)) for i in range(30)])
    bounded_run(env, tmp_path)

    # Fewer messages than the stored offsets: resumed, they would all be skipped without a word.
    recreate_topic(kafka_brokers, input_topic, partitions)
    produce(kafka_brokers, input_topic, [(i % partitions, b"k", varied_login(BASE + 60 + i, i)) for i in range(6)])
    with DataflowCluster(env, tmp_path, command=RUN_SCRIPT) as cluster:
        [finished] = cluster.wait(BOUNDED_RUN_TIMEOUT_S)
    prefix = f"loginflow: INPUT_TOPIC='{input_topic}'"
    told = [line for line in finished.stderr.splitlines() if line.startswith(prefix)]
    assert finished.returncode != 0, f"a resumed run on the recreated topic exited 0:\n{finished.stderr[-3000:]}"
    assert len(told) == 1, f"want one line starting {prefix!r}, got {told}:\n{finished.stderr[-3000:]}"
    assert notice in told[0], told[0]


# --- 6. a backfilled partition hundreds of windows behind, with bounded shard state -------------------

LET_GO_WINDOW = 2
LET_GO_LATENESS = 1
MAX_WINDOWS = 16
BEHIND_WINDOWS = 300
EVERY_SLICE_AT_ONE = tuple((fields, 1) for fields, _ in DEFAULT_SLICES)
MIN_COUNT = {"+".join(fields): low for fields, low in DEFAULT_SLICES}


def spread(partition: int, first_start: float, windows: int, per_window: int, prefix: str) -> list[OutMessage]:
    """`per_window` events in each of `windows` consecutive windows, in order; keys vary so every shard gets many."""
    return [
        (partition, b"k", varied_login(first_start + w * LET_GO_WINDOW + 0.3 + 0.4 * j, per_window * w + j, prefix))
        for w in range(windows)
        for j in range(per_window)
    ]


def metric_key(record: Record) -> MetricKey:
    value = json_of(record.value)
    return value["window_start"], value["slice"], tuple(value["key"].values())


def below_minimum(key: MetricKey, got: int, counted: int) -> bool:
    return got == 0 and counted < MIN_COUNT[key[1]]


def check_accounted_with_let_go(out: dict[str, list[Record]], log: Log) -> None:
    """Every message counted, on the DLQ or late, exactly once; counts of windows let go of are on the DLQ.

    The reference has no memory bound, so it cannot say which windows a
    shard let go of: this checks what holds whichever it were. Rejects and
    late events match the reference by source offset. Every key's count is
    its latest login-metrics record plus its `window_let_go` DLQ records,
    and equals the count of events the reference counted for it.
    """
    expected = expected_for_log(log, LET_GO_WINDOW, LET_GO_LATENESS)
    counted = expected_for_log(log, LET_GO_WINDOW, LET_GO_LATENESS, slices=EVERY_SLICE_AT_ONE).metrics
    reasons = Counter((r.headers.get("error") or b"").decode() for r in out["dlq"])
    assert reasons["window_closed"] == 0, f"DLQ reasons {reasons}"
    from_input = [r for r in out["dlq"] if r.headers.get("source_partition") is not None]
    assert by_source(from_input, "error", log) == expected.rejects
    assert by_source(out["late"], "window_start", log) == expected.late
    got = Counter(latest_metrics(record.value for record in out["metrics"]))
    for record in out["dlq"]:
        if record.headers.get("error") == b"window_let_go":
            got[metric_key(record)] += json_of(record.value)["count"]
    # Zero is allowed only below the slice's minimum: such a key is never emitted.
    wrong = {key: (got[key], n) for key, n in counted.items() if got[key] != n and not below_minimum(key, got[key], n)}
    assert not wrong, f"{len(wrong)} keys (got, counted), e.g. {list(wrong.items())[:5]}"
    assert not set(got) - set(counted), f"counts for keys nothing counted: {list(set(got) - set(counted))[:5]}"
    # The offsets: every one of them counted, rejected or late.
    one_slice = sum(n for key, n in got.items() if key[1] == "app_version+device_type")
    assert one_slice + len(expected.rejects) + len(expected.late) == sum(len(rows) for rows in log.values())


def test_a_partition_far_behind_stays_within_the_window_bound_and_everything_is_accounted(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    port = free_port()
    env = flow_env(
        kafka_brokers,
        input_topic,
        topics,
        window=LET_GO_WINDOW,
        lateness=LET_GO_LATENESS,
        MAX_WINDOWS_PER_SHARD=str(MAX_WINDOWS),
        BYTEWAX_DATAFLOW_API_ENABLED="true",
        BYTEWAX_DATAFLOW_API_PORT=str(port),
        BYTEWAX_DATAFLOW_API_CACHE_PATH=str(tmp_path),
    )
    current = (time.time() // LET_GO_WINDOW) * LET_GO_WINDOW - 40 * LET_GO_WINDOW
    behind = current - BEHIND_WINDOWS * LET_GO_WINDOW
    with DataflowCluster(env, tmp_path, workers=2) as cluster:
        wait_for_log(cluster, lambda text: len(reading_lines(text)) >= 2, 60, "reading partition lines")
        # Partition 1's front is 300 windows back: nothing partition 0 has can close.
        produce(kafka_brokers, input_topic, spread(1, behind, 1, 1, "back"))
        produce(kafka_brokers, input_topic, [*spread(0, current, 40, 3, "now"), (0, b"k", b"[]")])
        wait_for_log(cluster, lambda text: "let go" in text, 30, "WARNING line saying windows were let go")
        # The backfill goes on, then catches up with partition 0: counts for windows let go of.
        produce(kafka_brokers, input_topic, spread(1, behind + LET_GO_WINDOW, 20, 1, "back"))
        produce(kafka_brokers, input_topic, [*spread(1, current, 40, 2, "up"), (1, b"k", varied_login(current, 1))])
        log = read_log(kafka_brokers, input_topic)

        def accounted() -> bool:
            assert not cluster.any_exited(), cluster.tail()
            check_accounted_with_let_go(collect(kafka_brokers, topics), log)
            return True

        wait_until(accounted, timeout=45, interval=1.0, message="not accounted for", retry_on=(AssertionError,))
        samples = scrape(port)
        assert not cluster.any_exited(), cluster.tail()
        out = collect(kafka_brokers, topics)

    # The backfill's and the catch-up's counts for windows let go of: else the bound was never tested.
    assert any(record.headers.get("error") == b"window_let_go" for record in out["dlq"])

    let_go = sum(value for (name, _labels), value in samples.items() if name == "loginflow_windows_let_go_total")
    assert let_go > 0, "loginflow_windows_let_go_total is 0"
    exported = {name for name, _labels in samples}
    assert {"loginflow_open_windows", "loginflow_revisable_windows"} <= exported, sorted(exported)


# --- 4. how long the partitions were idle, in wall time ---------------------------------------------

PAUSE_WINDOW = 2
PAUSE_LATENESS = 1
# Twelve windows of idleness, which the starting code's revision horizon (8 windows) did not survive.
PAUSE_S = 12 * PAUSE_WINDOW


def in_window(start: float, offsets: list[float], prefix: str) -> list[OutMessage]:
    """Events on both partitions at `start + offset` seconds, in order."""
    return [(p, b"k", varied_login(start + t, i, f"{prefix}{p}")) for i, t in enumerate(offsets) for p in (0, 1)]


def test_whether_a_count_is_dropped_does_not_depend_on_how_long_the_partitions_were_idle(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """A paused producer resumes in the window it paused in: a revision, never `window_closed`.

    Idle time closes the window ahead of both logs; the counts that follow are
    on time by both logs, so the window stays revisable however long the pause
    lasted. (libfaketime was tried to step the process's clock instead; with
    FAKETIME_DONT_FAKE_MONOTONIC it makes Python's time.sleep fail with EINVAL
    and stalls the dataflow after a step, so that test would prove nothing.)
    """
    input_topic = topic_factory(partitions=2)
    topics = output_topics(topic_factory)
    env = flow_env(kafka_brokers, input_topic, topics, window=PAUSE_WINDOW, lateness=PAUSE_LATENESS)
    # Event times need not be near the wall clock: ten minutes back, one window.
    start = (time.time() // PAUSE_WINDOW) * PAUSE_WINDOW - 600
    with DataflowCluster(env, tmp_path, workers=2) as cluster:
        wait_for_log(cluster, lambda text: len(reading_lines(text)) >= 2, 60, "reading partition lines")
        produce(kafka_brokers, input_topic, in_window(start, [0.1, 0.3, 0.5], "a"))
        time.sleep(PAUSE_S)
        # Later in the same window on both logs: on time.
        produce(kafka_brokers, input_topic, in_window(start, [0.7, 0.9, 1.1], "b"))
        produced = time.time()
        log = read_log(kafka_brokers, input_topic)
        owed = expected_for_log(log, PAUSE_WINDOW, PAUSE_LATENESS).metrics

        def window_closed() -> list[Record]:
            return [r for r in consume_all(kafka_brokers, topics["dlq"]) if r.headers.get("error") == b"window_closed"]

        wait_until(
            lambda: metrics_on(kafka_brokers, topics["metrics"]) == owed or window_closed(),
            timeout=max(1.0, produced + PAUSE_WINDOW + PAUSE_LATENESS + CLOSE_WITHIN_S - time.time()),
            interval=1.0,
            message="the revised window was not emitted",
        )
        dropped = window_closed()
        assert not dropped, f"on-time counts dropped as window_closed after a {PAUSE_S}s pause: {dropped[:2]}"
        assert not cluster.any_exited(), cluster.tail()
    check_accounted(collect(kafka_brokers, topics), log, PAUSE_WINDOW, PAUSE_LATENESS, revisions=True)
