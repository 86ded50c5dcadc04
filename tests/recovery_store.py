"""Real Bytewax recovery stores with a row a crashed run would have left (see operators/runtime/abandoned_epochs.py)."""

import pickle
import sqlite3
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.runtime.abandoned_epochs import read_progress, resume_epoch

COUNT_STEP = "probe.count.stateful_flat_map.stateful.stateful_batch"
LEFTOVER_COUNT = 100


def three_runs_of_input() -> TestingSource:
    """A fresh source each test: an abort triggers once per instance."""
    items = [("a", 1), ("b", 1), TestingSource.EOF(), ("b", 1), ("b", 1), TestingSource.ABORT(), ("a", 1), ("b", 1)]
    return TestingSource(items)


def count(state: int | None, _value: int) -> tuple[int, int]:
    total = (state or 0) + 1
    return total, total


def run_until_stopped(source: TestingSource, directory: Path) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    flow = Dataflow("probe")
    counted = op.stateful_map("count", op.input("in", flow, source), count)
    op.output("out", counted, TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(directory)))
    return out


def leave_a_row_for(directory: Path, key: str, epoch: int, state: int) -> None:
    """Write `key`'s state at `epoch` into the partition file that holds that key's rows."""
    for path in sorted(directory.glob("*.sqlite3")):
        connection = sqlite3.connect(path)
        with connection:
            holds_key = connection.execute(
                "SELECT 1 FROM snaps WHERE step_id = ? AND state_key = ?", (COUNT_STEP, key)
            ).fetchone()
            if holds_key:
                connection.execute(
                    "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
                    (COUNT_STEP, key, epoch, pickle.dumps(state, protocol=4)),
                )
        connection.close()
        if holds_key:
            return
    pytest.fail(f"no recovery partition holds {key!r}")


def store_with_a_leftover_row(directory: Path, partitions: int = 2) -> int:
    """A store one run stopped on, with a row at its resume epoch; returns that epoch."""
    directory.mkdir(exist_ok=True)
    init_db_dir(directory, partitions)
    run_until_stopped(three_runs_of_input(), directory)
    epoch = resume_epoch(read_progress(directory))
    assert epoch is not None
    leave_a_row_for(directory, "a", epoch, LEFTOVER_COUNT)
    return epoch


def leftover_rows(directory: Path, epoch: int) -> int:
    """The probe step's snapshot rows at or after `epoch`, over every partition file (loginflow writes none)."""
    total = 0
    for path in sorted(directory.glob("*.sqlite3")):
        connection = sqlite3.connect(path)
        try:
            sql = "SELECT COUNT(*) FROM snaps WHERE step_id = ? AND snap_epoch >= ?"
            total += connection.execute(sql, (COUNT_STEP, epoch)).fetchone()[0]
        finally:
            connection.close()
    return total
