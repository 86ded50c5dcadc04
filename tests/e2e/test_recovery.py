"""Crashes and rescales with recovery on: the deduplicated output is still exact.

Output is at-least-once: after a resume, whatever was emitted since the last
snapshot is emitted again. Every copy must be byte-identical, so the
deduplicated (or compacted) topics equal the batch answer.

Each crash comes after the recovery store committed a snapshot, and each
resumed run must show (in its `reading partition` log lines) that it started
from that snapshot's offsets, not from the beginning of the input.
"""

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from devkit.broker import wait_until
from devkit.records import consume_all
from tests.dataflow_runner import RUN_SCRIPT, DataflowCluster, init_recovery, run_script_env
from tests.evidence import assert_resumed, committed_epoch, finish_resumed
from tests.outputs import assert_exact, collect, flow_env, output_topics, source_of
from tests.skewed_input import LATENESS, WINDOW

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

RUN_TIMEOUT_S = 300


def distinct_rejects(brokers: str, topic: str) -> int:
    return len({source_of(record) for record in consume_all(brokers, topic)})


def crash_when(
    cluster: DataflowCluster, brokers: str, dlq_topic: str, rejects: int, recovery_dir: Path, before: int
) -> None:
    """SIGKILL every process mid-run, once `rejects` distinct rejects were written and a snapshot newer than
    epoch `before` was committed.

    Without a snapshot committed during this run, a resume would rightly start
    where the previous one did, and could not show that it resumes.
    """

    def ready() -> bool:
        return cluster.any_exited() or (
            committed_epoch(recovery_dir) > before and distinct_rejects(brokers, dlq_topic) >= rejects
        )

    wait_until(ready, timeout=RUN_TIMEOUT_S, interval=0.1, retry_on=(sqlite3.OperationalError,))
    codes = [process.poll() for process in cluster.running]
    assert not cluster.any_exited(), f"the run ended before the planned crash, exit codes {codes}:\n{cluster.tail()}"
    cluster.stop(signal.SIGKILL)


def run_with_crashes(
    kafka_brokers: str, topic_factory, tmp_path: Path, skewed_input, layouts: list[tuple[int, int]]
) -> None:
    """Run each layout in turn on one recovery directory; all but the last are killed mid-run."""
    input_topic, inputs, expected = skewed_input
    topics = output_topics(topic_factory)
    # Small batches stretch the run over several snapshots, so each crash
    # can come after one was committed.
    env = flow_env(
        kafka_brokers,
        input_topic,
        topics,
        window=WINDOW,
        lateness=LATENESS,
        bounded=True,
        BATCH_SIZE="10",
        LOG_FORMAT="kv",
    )
    recovery_dir = tmp_path / "recovery"
    recovery_args = init_recovery(recovery_dir)
    total_rejects = len(expected.rejects)
    crash_points = [total_rejects * (index + 1) // (len(layouts) + 1) for index in range(len(layouts) - 1)]

    for index, ((processes, workers), crash_at) in enumerate(zip(layouts, crash_points, strict=False)):
        before = committed_epoch(recovery_dir)
        with DataflowCluster(env, tmp_path, processes, workers, recovery_args) as cluster:
            crash_when(cluster, kafka_brokers, topics["dlq"], crash_at, recovery_dir, before)
        if index > 0:
            assert_resumed(cluster, inputs)
        # Stay down longer than the allowed lateness: resumed event time must
        # not depend on how long the dataflow was away.
        time.sleep(LATENESS + 1)

    cluster = finish_resumed(env, tmp_path, layouts[-1], recovery_args, inputs, RUN_TIMEOUT_S)

    out = collect(kafka_brokers, topics)
    assert_exact(out, expected, inputs, allow_duplicates=True)


def test_crash_twice_and_resume_gives_the_exact_answer(
    kafka_brokers: str, topic_factory, tmp_path: Path, skewed_input
) -> None:
    run_with_crashes(kafka_brokers, topic_factory, tmp_path, skewed_input, [(2, 1), (2, 1), (2, 1)])


def test_rescale_from_two_processes_to_one_to_three_workers(
    kafka_brokers: str, topic_factory, tmp_path: Path, skewed_input
) -> None:
    run_with_crashes(kafka_brokers, topic_factory, tmp_path, skewed_input, [(2, 1), (1, 1), (1, 3)])


def test_run_script_inits_recovery_once_and_a_rerun_adds_nothing_new(
    kafka_brokers: str, topic_factory, tmp_path: Path, skewed_input
) -> None:
    input_topic, inputs, expected = skewed_input
    topics = output_topics(topic_factory)
    env = flow_env(
        kafka_brokers,
        input_topic,
        topics,
        window=WINDOW,
        lateness=LATENESS,
        bounded=True,
        LOG_FORMAT="kv",
        **run_script_env(tmp_path / "recovery", 3),
    )
    with DataflowCluster(env, tmp_path, processes=2, workers=1, command=RUN_SCRIPT) as cluster:
        results = cluster.wait(RUN_TIMEOUT_S)
    for finished in results:
        assert finished.returncode == 0, finished.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "recovery").glob("*.sqlite3")) == [f"part-{i}.sqlite3" for i in range(3)]
    first = collect(kafka_brokers, topics)
    # One run without failures: no repeats.
    assert_exact(first, expected, inputs)

    with DataflowCluster(env, tmp_path, processes=2, workers=1, command=RUN_SCRIPT) as cluster:
        results = cluster.wait(RUN_TIMEOUT_S)
    for finished in results:
        assert finished.returncode == 0, finished.stderr[-3000:]
    assert_resumed(cluster, inputs, nothing_left=True)
    # Read to the high watermarks again: the rerun wrote nothing to any topic.
    after = collect(kafka_brokers, topics)
    assert {name: len(records) for name, records in after.items()} == {
        name: len(records) for name, records in first.items()
    }
