"""Before a resume, drop the snapshots a stopped run wrote for epochs it never finished.

Bytewax resumes from the oldest epoch that not every worker finished (the
resume epoch R) and loads, for each state key, its newest snapshot from an
epoch before R. Snapshots from R on, written by the run that stopped, stay in
the store: the resumed run overwrites those it writes again, but a key it
does not touch in such an epoch keeps the stopped run's row. The *next*
resume then loads that row as if the resumed run had written it.

A sink partition is snapshotted only in epochs it wrote, and the first epoch
after a resume is often a single batch (its interval ran out while the
writers started), so the leftover is likely: a crash after epoch R's
snapshots were written but before the workers recorded finishing it leaves
epoch-R rows; a second crash soon after the resume makes them the newest
before the new resume epoch. The exactly-once sink then resumes past the
output of an epoch the log will replay, and writes it again (duplicates in a
read_committed reading), and a window shard resumes with counts that do not
match its input's offsets.

So every process drops those rows while it starts, before Bytewax opens the
store: `bytewax.run` imports the flow first, and no process of a cluster
opens the store before every process has connected, that is, finished its
import. Only a real `bytewax.run` start does (`operators.runtime.run_args`;
any other import of the flow deletes nothing), and only on a directory no
other host can mount (`operators.runtime.recovery_start`). All processes
compute the same R from the same rows, so the deletes agree. The resume
epoch is computed exactly as Bytewax does, which needs every partition of
the store; a directory that holds only some of them (each host keeping its
own) is left alone, with a warning, rather than pruned from a guess.
"""

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from operators.runtime.logs import kv

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0


class RecoveryStoreError(RuntimeError):
    """The recovery store could not be read or pruned."""


@dataclass(frozen=True)
class Progress:
    """What the store says about the runs so far, from every partition file."""

    part_count: int | None
    part_indexes: frozenset[int]
    executions: dict[int, tuple[int, int]]
    """ex_num -> (worker_count, resume_epoch)."""
    frontiers: dict[tuple[int, int], int]
    """(ex_num, worker_index) -> the frontier that worker recorded last."""


@contextmanager
def _partition(path: Path, doing: str) -> Iterator[sqlite3.Connection]:
    """One partition file's connection; any SQLite error becomes a `RecoveryStoreError` saying what failed."""
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        try:
            yield connection
        finally:
            connection.close()
    except sqlite3.Error as exc:
        msg = f"cannot {doing} recovery partition {path}: {exc}"
        raise RecoveryStoreError(msg) from exc


def read_progress(directory: Path) -> Progress:
    """Read the partition, execution and frontier rows of every partition file in `directory`."""
    part_counts: set[int] = set()
    indexes: set[int] = set()
    executions: dict[int, tuple[int, int]] = {}
    frontiers: dict[tuple[int, int], int] = {}
    for path in sorted(directory.glob("*.sqlite3")):
        with _partition(path, "read") as connection:
            for index, count in connection.execute("SELECT part_index, part_count FROM parts"):
                indexes.add(index)
                part_counts.add(count)
            for ex_num, workers, resume in connection.execute("SELECT ex_num, worker_count, resume_epoch FROM exs"):
                executions[ex_num] = (workers, resume)
            for ex_num, worker, frontier in connection.execute(
                "SELECT ex_num, worker_index, worker_frontier FROM fronts"
            ):
                frontiers[ex_num, worker] = max(frontier, frontiers.get((ex_num, worker), frontier))
    if len(part_counts) > 1:
        msg = f"recovery partitions in {directory} disagree on their count: {sorted(part_counts)}"
        raise RecoveryStoreError(msg)
    return Progress(next(iter(part_counts), None), frozenset(indexes), executions, frontiers)


def resume_epoch(progress: Progress) -> int | None:
    """The epoch Bytewax will resume from, or None for a store no run has started on.

    The latest execution's workers each finished the epochs before their
    last recorded frontier (a worker with none recorded, the epoch its
    execution resumed from); the slowest worker decides.
    """
    if not progress.executions:
        return None
    latest = max(progress.executions)
    workers, started_at = progress.executions[latest]
    return min(max(started_at, progress.frontiers.get((latest, worker), started_at)) for worker in range(workers))


@dataclass(frozen=True)
class Pruned:
    """What `drop_abandoned_snapshots` did."""

    resume_epoch: int | None
    dropped: int


def drop_abandoned_snapshots(directory: Path) -> Pruned:
    """Delete every snapshot from the resume epoch on, one transaction per partition file.

    Must run while no process has the store open (see the module docstring).
    """
    progress = read_progress(directory)
    epoch = resume_epoch(progress)
    if epoch is None:
        return Pruned(None, 0)
    expected = set(range(progress.part_count or 0))
    if not expected or progress.part_indexes != expected:
        logger.warning(
            "recovery partitions missing here; snapshots of unfinished epochs are left as they are %s",
            kv(directory=directory, found=sorted(progress.part_indexes), expected=progress.part_count),
        )
        return Pruned(epoch, 0)
    dropped = 0
    for path in sorted(directory.glob("*.sqlite3")):
        with _partition(path, "drop snapshots of unfinished epochs from") as connection, connection:
            dropped += connection.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (epoch,)).rowcount
    if dropped:
        logger.info(
            "dropped snapshots of epochs the stopped run did not finish %s",
            kv(directory=directory, resume_epoch=epoch, snapshots=dropped),
        )
    return Pruned(epoch, dropped)
