"""Telling a resumed run from a fresh one, from the recovery store every process shares."""

import sqlite3
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.kafka.source import TopicRecreatedError, check_partition_count
from operators.runtime.resume import INPUT_STEP, NOTHING_STORED, has_committed_epoch, stored_state


def test_a_fresh_recovery_directory_has_no_committed_epoch(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    assert has_committed_epoch(tmp_path) is False
    assert has_committed_epoch(tmp_path / "missing") is False


def test_a_directory_a_run_committed_to_has_a_committed_epoch(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    flow = Dataflow("probe")
    op.output("out", op.input("in", flow, TestingSource([1, 2, 3])), TestingSink([]))
    run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(tmp_path)))
    assert has_committed_epoch(tmp_path) is True


def test_the_input_partitions_a_directory_holds_offsets_for(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    assert stored_state(tmp_path).input_partitions == 0
    with sqlite3.connect(next(tmp_path.glob("*.sqlite3"))) as db:
        for key in ("0", "2"):
            db.execute(
                "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, 1, x'80')",
                (INPUT_STEP, key),
            )
    assert stored_state(tmp_path).input_partitions == 3
    assert stored_state(None) == NOTHING_STORED, "without recovery nothing is stored"


def test_a_topic_with_fewer_partitions_than_its_offsets_is_refused() -> None:
    check_partition_count("user-login", 3, 3)
    check_partition_count("user-login", 3, 0)
    with pytest.raises(TopicRecreatedError, match=r"^INPUT_TOPIC='user-login' has 2 partitions, .* for 3"):
        check_partition_count("user-login", 2, 3)
