"""A crash after an epoch's snapshots were written, but before its end was recorded, repeats no output.

Bytewax writes an epoch's snapshots first and each worker's frontier after
them. A SIGKILL between the two leaves that epoch's rows in the store while
the resume starts at that epoch again. This test makes that crash exactly,
rather than hoping a kill lands in the gap (the exactly-once crash tests hit
it about once in tens of runs): the first run is killed, then its recorded
frontier is moved back one epoch, so the store holds what it would hold had
the kill come just before that frontier was written. The backup interval
(`-b`) is long, so no older snapshot was garbage-collected and the rollback
leaves a store Bytewax can resume.

A second run resumes and is killed as soon as it finishes its first epoch,
which after a resume is one batch per partition: most sink partitions write
nothing in it, so without loginflow dropping the leftover rows they would
outlive the second run and the third would load them, resuming each
exactly-once writer past output the log then replays. The third run goes to
the end; a read_committed reading must hold every result exactly once.
"""

import signal
import sqlite3
from pathlib import Path

import pytest

from devkit.broker import wait_until
from devkit.records import READ_COMMITTED
from operators.runtime.resume import query_recovery_partitions
from tests.dataflow_runner import DataflowCluster, init_recovery
from tests.e2e.test_exactly_once import RUN_TIMEOUT_S, eos_env, eos_topics
from tests.eos_helpers import duplicate_counts, read_outputs, summary
from tests.evidence import error_lines, finish_resumed, log_texts
from tests.outputs import assert_exact

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

# Keep every snapshot for the whole test (backup interval in seconds, epochs of one second).
NO_GC_ARGS = ("-b", "600")
SINK_STEPS = "loginflow.write_%"


def store_rows(recovery_dir: Path, sql: str, *params: object) -> list[tuple]:
    """Run `sql` on every recovery partition (of a store no process has open), committed; all rows it returns."""
    rows: list[tuple] = []
    for path in sorted(recovery_dir.glob("*.sqlite3")):
        connection = sqlite3.connect(path)
        try:
            with connection:
                rows.extend(connection.execute(sql, params).fetchall())
        finally:
            connection.close()
    return rows


def frontier(recovery_dir: Path, ex_num: int) -> int:
    """The frontier execution `ex_num`'s only worker recorded last (0 before any), read from private copies."""
    sql = f"SELECT MAX(worker_frontier) FROM fronts WHERE ex_num = {int(ex_num)}"  # noqa: S608 - an int
    rows = query_recovery_partitions(recovery_dir, sql)
    return max((row[0] for row in rows if row is not None and row[0] is not None), default=0)


def sink_rows_at(recovery_dir: Path, epoch: int) -> int:
    return len(
        store_rows(
            recovery_dir, "SELECT state_key FROM snaps WHERE step_id LIKE ? AND snap_epoch = ?", SINK_STEPS, epoch
        )
    )


def test_rows_of_an_epoch_whose_end_was_never_recorded_do_not_repeat_output(
    kafka_brokers: str, topic_factory, tmp_path: Path, skewed_input
) -> None:
    input_topic, inputs, expected = skewed_input
    topics = eos_topics(topic_factory)
    env = eos_env(kafka_brokers, input_topic, topics, "exactly-once")
    recovery_dir = tmp_path / "recovery"
    args = [*init_recovery(recovery_dir)[:-2], *NO_GC_ARGS]

    # 1. Run until a few epochs are done, then kill.
    with DataflowCluster(env, tmp_path, 1, 1, args) as first:
        wait_until(
            lambda: first.any_exited() or frontier(recovery_dir, 0) >= 4,
            timeout=RUN_TIMEOUT_S,
            interval=0.05,
            retry_on=(sqlite3.OperationalError,),
        )
        assert not first.any_exited(), first.tail()
        first.stop(signal.SIGKILL)

    # 2. The crash a moment earlier: the last finished epoch's snapshots written, its end not recorded.
    reached = frontier(recovery_dir, 0)
    resume_at = reached - 1
    leftover_sink_rows = sink_rows_at(recovery_dir, resume_at)
    assert leftover_sink_rows > 0, f"the sinks wrote nothing in epoch {resume_at}; nothing to leave behind"
    store_rows(recovery_dir, "UPDATE fronts SET worker_frontier = ? WHERE ex_num = 0", resume_at)

    # 3. Resume, and crash again as soon as the first epoch is done.
    with DataflowCluster(env, tmp_path, 1, 1, args) as second:
        wait_until(
            lambda: second.any_exited() or frontier(recovery_dir, 1) > resume_at,
            timeout=RUN_TIMEOUT_S,
            interval=0.02,
            retry_on=(sqlite3.OperationalError,),
        )
        assert not second.any_exited(), second.tail()
        second.stop(signal.SIGKILL)
    [second_log] = log_texts(second.logs)
    # Bytewax resumed at the rolled-back epoch, and loginflow dropped what the first run left from it on.
    assert store_rows(recovery_dir, "SELECT resume_epoch FROM exs WHERE ex_num = 1") == [(resume_at,)]
    dropped = [line for line in second_log.splitlines() if "dropped snapshots of epochs" in line]
    assert dropped and f"resume_epoch={resume_at}" in dropped[0], second_log[-3000:]
    print(f"[abandoned] resumed at epoch {resume_at}, {leftover_sink_rows} sink rows left from it: {dropped[0]}")

    # 4. Finish.
    last = finish_resumed(env, tmp_path, (1, 1), args, inputs, RUN_TIMEOUT_S)
    assert not error_lines(log_texts(last.logs)), error_lines(log_texts(last.logs))
    committed = read_outputs(kafka_brokers, topics, READ_COMMITTED)
    print(f"[abandoned] read_committed: {summary(committed)}")
    assert duplicate_counts(committed) == {"metrics": 0, "dlq": 0, "late": 0}
    assert_exact(committed, expected, inputs, allow_duplicates=False)
