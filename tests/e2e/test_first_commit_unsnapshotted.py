"""Issue 22 (2): a sink partition whose very first commit falls in an epoch whose snapshot is lost.

Bytewax snapshots a sink partition only in epochs in which it wrote. A DLQ
partition that first writes late in a run has no state until that epoch's
snapshot is durable; a crash right after the commit resumed it with no
state, so it read nothing back and wrote its committed records again. Here
the crash is made exactly as in `test_abandoned_epochs.py`: the run is
killed once the DLQ record is committed, and its recorded frontier is moved
back to the epoch before the reject was produced.
"""

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from devkit.broker import wait_until
from devkit.records import READ_COMMITTED, consume_all, produce
from tests.dataflow_runner import DataflowCluster, init_recovery
from tests.e2e.test_abandoned_epochs import NO_GC_ARGS, frontier, store_rows
from tests.hardening import varied_login
from tests.outputs import TopicFactory, flow_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

RUN_TIMEOUT_S = 90.0


def committed_rejects(brokers: str, topic: str) -> list[bytes | None]:
    return [record.value for record in consume_all(brokers, topic, config=READ_COMMITTED)]


def test_a_dlq_partition_first_written_in_a_lost_epoch_does_not_write_again(
    kafka_brokers: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    input_topic = topic_factory(partitions=1)
    topics = {"metrics": topic_factory(1), "dlq": topic_factory(1), "late": topic_factory(1)}
    env = flow_env(
        kafka_brokers,
        input_topic,
        topics,
        window=5,
        lateness=2,
        PROCESSING_GUARANTEE="exactly-once",
        TRANSACTIONAL_ID_PREFIX=f"first-commit-{time.monotonic_ns()}",
    )
    recovery_dir = tmp_path / "recovery"
    args = [*init_recovery(recovery_dir)[:-2], *NO_GC_ARGS]
    now = time.time()
    produce(kafka_brokers, input_topic, [(0, b"k", varied_login(now - 30 + i, i, "a")) for i in range(20)])

    with DataflowCluster(env, tmp_path, 1, 1, args) as first:
        wait_until(
            lambda: first.any_exited() or frontier(recovery_dir, 0) >= 3,
            timeout=RUN_TIMEOUT_S,
            interval=0.05,
            retry_on=(sqlite3.OperationalError,),
        )
        before_reject = frontier(recovery_dir, 0)
        produce(kafka_brokers, input_topic, [(0, b"k", b"{not json")])
        wait_until(
            lambda: first.any_exited() or committed_rejects(kafka_brokers, topics["dlq"]),
            timeout=RUN_TIMEOUT_S,
            interval=0.05,
        )
        assert not first.any_exited(), first.tail()
        first.stop(signal.SIGKILL)
    # The crash a moment earlier: the DLQ's commit made, the snapshots of its epoch never durable.
    store_rows(recovery_dir, "UPDATE fronts SET worker_frontier = ? WHERE ex_num = 0", before_reject)

    with DataflowCluster(env, tmp_path, 1, 1, args) as second:
        produce(kafka_brokers, input_topic, [(0, b"k", b"{marker")])
        wait_until(
            lambda: second.any_exited() or b"{marker" in committed_rejects(kafka_brokers, topics["dlq"]),
            timeout=RUN_TIMEOUT_S,
            interval=0.1,
        )
        assert not second.any_exited(), second.tail()
    assert committed_rejects(kafka_brokers, topics["dlq"]) == [b"{not json", b"{marker"]
