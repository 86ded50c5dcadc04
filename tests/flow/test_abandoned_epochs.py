"""Snapshots a stopped run left for epochs it never finished must not reach a later resume.

Real Bytewax recovery stores and runs (`bytewax.testing`), three executions
on one directory. The first counts key `a` once and stops. A row is then
added for `a` at the resume epoch, as a crash leaves one when it falls after
an epoch's snapshots were written but before the workers recorded finishing
it (tests/e2e/test_abandoned_epochs.py makes that crash with Kafka). The
second execution never sees `a` and is aborted (a crash: no end of input
that would snapshot every key), so it never overwrites that row; the third
counts `a` again. Without dropping the row first, Bytewax resumes `a` from
it.
"""

import sqlite3
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from operators.runtime.abandoned_epochs import drop_abandoned_snapshots, read_progress, resume_epoch
from tests.recovery_store import LEFTOVER_COUNT, leave_a_row_for, run_until_stopped, three_runs_of_input


def started_at(directory: Path, ex_num: int) -> int:
    """The resume epoch Bytewax itself recorded for execution `ex_num`."""
    progress = read_progress(directory)
    return progress.executions[ex_num][1]


@pytest.mark.parametrize("dropped", [True, False], ids=["dropped_before_each_start", "left_in_place"])
def test_a_leftover_snapshot_reaches_the_resume_after_next_unless_dropped(tmp_path: Path, dropped: bool) -> None:
    init_db_dir(tmp_path, 2)
    source = three_runs_of_input()

    assert run_until_stopped(source, tmp_path) == [("a", 1), ("b", 1)]
    first_resume = resume_epoch(read_progress(tmp_path))
    assert first_resume is not None
    leave_a_row_for(tmp_path, "a", first_resume, LEFTOVER_COUNT)

    if dropped:
        assert drop_abandoned_snapshots(tmp_path).dropped == 1
    assert run_until_stopped(source, tmp_path) == [("b", 2), ("b", 3)]
    # Bytewax resumed where this module computed it would.
    assert started_at(tmp_path, 1) == first_resume

    if dropped:
        # The aborted execution left its own unfinished epoch's input snapshot.
        assert drop_abandoned_snapshots(tmp_path).dropped >= 1
    third = run_until_stopped(source, tmp_path)
    if dropped:
        assert third == [("a", 2), ("b", 4)]
    else:
        # What the drop exists for: Bytewax loads the leftover as `a`'s state.
        assert third == [("a", LEFTOVER_COUNT + 1), ("b", 4)]


def test_a_store_no_run_started_on_is_left_alone(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 3)
    pruned = drop_abandoned_snapshots(tmp_path)
    assert (pruned.resume_epoch, pruned.dropped) == (None, 0)


def test_a_directory_missing_a_partition_is_not_pruned_from_a_guess(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    source = three_runs_of_input()
    run_until_stopped(source, tmp_path)
    epoch = resume_epoch(read_progress(tmp_path))
    assert epoch is not None
    leave_a_row_for(tmp_path, "a", epoch, LEFTOVER_COUNT)
    holder = next(
        path
        for path in sorted(tmp_path.glob("*.sqlite3"))
        if sqlite3.connect(path).execute("SELECT COUNT(*) FROM snaps").fetchone()[0] > 0
    )
    other = next(path for path in sorted(tmp_path.glob("*.sqlite3")) if path != holder)
    other.rename(tmp_path / "elsewhere.db")
    assert drop_abandoned_snapshots(tmp_path).dropped == 0
    other_back = tmp_path / other.name
    (tmp_path / "elsewhere.db").rename(other_back)
    assert drop_abandoned_snapshots(tmp_path).dropped == 1
