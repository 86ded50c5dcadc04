"""Transactional ids (issue 22): dataflows sharing an output topic, and a writer whose id is taken over.

Two dataflows that read different input topics but write the same output
topics are different dataflows: with exactly-once and default settings they
must not share transactional ids, or each one's writers fence the other's
and, under a supervisor that always restarts, they take turns killing each
other. A writer whose id another producer really takes over must stop with
one line that names TRANSACTIONAL_ID_PREFIX and the id, and a non-zero exit.
"""

import dataclasses
import os
import signal
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from devkit.broker import wait_until
from devkit.generator.events import DEFAULT_START, generate
from devkit.records import READ_COMMITTED, Record, produce
from devkit.reference import Expected, expected_output
from tests.dataflow_runner import DataflowCluster, init_recovery
from tests.eos_helpers import TopicWatcher, duplicate_counts, read_outputs
from tests.evidence import committed_epoch, error_lines, log_texts
from tests.outputs import Inputs, TopicFactory, assert_exact, flow_env, json_of, read_partitions
from tests.skewed_input import CONFIG, LATENESS, WINDOW

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

RUN_TIMEOUT_S = 170
OUTPUT_PARTITIONS = 3
# The second dataflow's events start this much later, so its windows never meet the first one's.
SECOND_INPUT_SHIFT_S = 10 * 86_400
READY = " transactional writer ready "


def signal_group(cluster: DataflowCluster, sig: int) -> None:
    for process in cluster.running:
        os.killpg(process.pid, sig)


def make_input(brokers: str, topic_factory: TopicFactory, start: float, seed: int) -> tuple[str, Inputs, Expected]:
    """A fresh input topic with the skewed input shifted to `start`, and its reference answer."""
    config = dataclasses.replace(CONFIG, count=60_000, start=start, seed=seed)
    topic = topic_factory(partitions=config.partitions)
    produce(brokers, topic, [(m.partition, m.key, m.value) for m in generate(config)])
    inputs = read_partitions(brokers, topic)
    return topic, inputs, expected_output(inputs, WINDOW, LATENESS)


def exactly_once_env(brokers: str, input_topic: str, topics: dict[str, str]) -> dict[str, str]:
    """Exactly-once with the default TRANSACTIONAL_ID_PREFIX (it is not set)."""
    env = flow_env(
        brokers,
        input_topic,
        topics,
        window=WINDOW,
        lateness=LATENESS,
        bounded=True,
        BATCH_SIZE="100",
        LOG_FORMAT="kv",
        PROCESSING_GUARANTEE="exactly-once",
    )
    assert "TRANSACTIONAL_ID_PREFIX" not in env
    return env


def transactional_ids(cluster: DataflowCluster) -> list[str]:
    """The ids the run's writers logged when they were ready."""
    return [
        line.split("transactional_id=", 1)[1].split()[0]
        for text in log_texts(cluster.logs)
        for line in text.splitlines()
        if READY in line
    ]


def of_input(
    out: dict[str, list[Record]], input_topic: str, its_window: Callable[[str], bool]
) -> dict[str, list[Record]]:
    """The records one dataflow wrote: its DLQ and late records name its input, its metrics are of its windows."""
    return {
        "metrics": [r for r in out["metrics"] if its_window(json_of(r.value)["window_start"])],
        "dlq": [r for r in out["dlq"] if r.headers["source_topic"] == input_topic.encode()],
        "late": [r for r in out["late"] if r.headers["source_topic"] == input_topic.encode()],
    }


def test_two_dataflows_writing_one_topic_with_default_prefixes_do_not_fence_each_other(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    first_topic, first_inputs, first_expected = make_input(kafka_brokers, topic_factory, DEFAULT_START, seed=31)
    second_start = DEFAULT_START + SECOND_INPUT_SHIFT_S
    second_topic, second_inputs, second_expected = make_input(kafka_brokers, topic_factory, second_start, seed=37)
    topics = {name: topic_factory(partitions=OUTPUT_PARTITIONS) for name in ("metrics", "dlq", "late")}
    writers = 3 * OUTPUT_PARTITIONS
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()

    with (
        TopicWatcher(kafka_brokers, topics["metrics"]) as watcher,
        DataflowCluster(
            exactly_once_env(kafka_brokers, first_topic, topics),
            first_dir,
            extra_args=init_recovery(first_dir / "recovery"),
        ) as first,
    ):

        def first_is_writing() -> bool:
            return first.any_exited() or (
                len(transactional_ids(first)) == writers
                and watcher.count() > 0
                and committed_epoch(first_dir / "recovery") > 0
            )

        wait_until(first_is_writing, timeout=RUN_TIMEOUT_S, interval=0.05, retry_on=(sqlite3.OperationalError,))
        assert not first.any_exited(), f"the first dataflow ended before the second started:\n{first.tail()}"
        # Held still while the second one's writers start, so the first has output left to write once they
        # have: with a shared id, its next write or commit is refused. Far shorter than the transaction timeout.
        signal_group(first, signal.SIGSTOP)
        try:
            with DataflowCluster(
                exactly_once_env(kafka_brokers, second_topic, topics),
                second_dir,
                extra_args=init_recovery(second_dir / "recovery"),
            ) as second:
                wait_until(lambda: second.any_exited() or len(transactional_ids(second)) == writers, RUN_TIMEOUT_S)
                signal_group(first, signal.SIGCONT)
                [first_done] = first.wait(RUN_TIMEOUT_S)
                [second_done] = second.wait(RUN_TIMEOUT_S)
        finally:
            if not first.any_exited():
                signal_group(first, signal.SIGCONT)

    assert first_done.returncode == 0, first_done.stderr[-3000:]
    assert second_done.returncode == 0, second_done.stderr[-3000:]
    assert not set(transactional_ids(first)) & set(transactional_ids(second))
    assert not error_lines(log_texts(first.logs) + log_texts(second.logs))

    committed = read_outputs(kafka_brokers, topics, READ_COMMITTED)
    # window_start is an ISO 8601 UTC string of one fixed format, so strings compare as times do.
    boundary = datetime.fromtimestamp(DEFAULT_START + SECOND_INPUT_SHIFT_S / 2, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    first_out = of_input(committed, first_topic, lambda start: start < boundary)
    second_out = of_input(committed, second_topic, lambda start: start >= boundary)
    assert sum(map(len, first_out.values())) + sum(map(len, second_out.values())) == sum(map(len, committed.values()))
    for out, expected, inputs in (
        (first_out, first_expected, first_inputs),
        (second_out, second_expected, second_inputs),
    ):
        assert duplicate_counts(out) == {"metrics": 0, "dlq": 0, "late": 0}
        assert_exact(out, expected, inputs)


def test_a_writer_whose_transactional_id_is_taken_over_stops_with_one_line_naming_the_prefix(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """Another producer calls init_transactions with the writers' ids mid-run; the dataflow must stop, saying why."""
    input_topic, _inputs, _expected = make_input(kafka_brokers, topic_factory, DEFAULT_START, seed=41)
    topics = {name: topic_factory(partitions=OUTPUT_PARTITIONS) for name in ("metrics", "dlq", "late")}
    recovery_args = init_recovery(tmp_path / "recovery")
    thieves: list[Producer] = []

    with (
        TopicWatcher(kafka_brokers, topics["metrics"]) as watcher,
        DataflowCluster(
            exactly_once_env(kafka_brokers, input_topic, topics), tmp_path, extra_args=recovery_args
        ) as run,
    ):
        writers = 3 * OUTPUT_PARTITIONS

        def writing() -> bool:
            return run.any_exited() or (len(transactional_ids(run)) == writers and watcher.count() > 0)

        wait_until(writing, timeout=RUN_TIMEOUT_S, interval=0.05)
        assert not run.any_exited(), f"the dataflow ended before its ids were taken over:\n{run.tail()}"
        ids = transactional_ids(run)
        for txn_id in ids:
            thief = Producer({"bootstrap.servers": kafka_brokers, "transactional.id": txn_id})
            thief.init_transactions(30)
            thieves.append(thief)
        [done] = run.wait(RUN_TIMEOUT_S)

    last_line = done.stderr.strip().splitlines()[-1]
    print(f"[taken over] exit code {done.returncode}, last line: {last_line}")
    assert done.returncode != 0, done.stderr[-3000:]
    assert last_line.startswith("loginflow: TRANSACTIONAL_ID_PREFIX"), done.stderr[-3000:]
    assert any(f"transactional id {txn_id!r} was taken over by another producer" in last_line for txn_id in ids)
    assert "give each dataflow its own prefix" in last_line
